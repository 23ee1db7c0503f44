"""The defaults every recipe overrides: cgan_jax/config_defaults.py (each field with its
default and a comment), re-exported here so that recipes read `from configs import default`.
"""

from cgan_jax.config_defaults import RUNTIME_FIELDS, get_config, model, optimizer, upgrade

__all__ = ['RUNTIME_FIELDS', 'get_config', 'model', 'optimizer', 'upgrade']
