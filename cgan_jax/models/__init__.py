"""Model registry: a config's `model` name -> generator, discriminator and latent prior.

Adding a GAN family means adding a file here and one entry in `MODELS`; nothing else
in the trainer changes.
"""

from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import ml_collections

from cgan_jax.errors import UserError
from cgan_jax.models import infogan


class ModelParts(NamedTuple):
  generator: nn.Module
  discriminator: nn.Module
  latent: Callable[[jax.Array, int], jax.Array]  # (key, z_dim) -> one z
  conditional: bool
  pixel_range: tuple[float, float]  # G's output range; real images are scaled to it


def _infogan(config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None,
             conditional: bool) -> ModelParts:
  kw = dict(num_classes=num_classes, conditional=conditional, axis_name=axis_name)
  return ModelParts(infogan.Generator(**kw), infogan.Discriminator(**kw),
                    infogan.uniform_latent, conditional, (0.0, 1.0))


MODELS: dict[str, Callable[..., ModelParts]] = {
    'infogan_cgan': lambda c, k, a: _infogan(c, k, a, conditional=True),
    'infogan_gan': lambda c, k, a: _infogan(c, k, a, conditional=False),
}


def build(config: ml_collections.ConfigDict, num_classes: int,
          axis_name: str | None) -> ModelParts:
  """Instantiates the model named by `config.model`."""
  if config.model not in MODELS:
    raise UserError(f'unknown model {config.model!r}; known models: {", ".join(sorted(MODELS))}')
  return MODELS[config.model](config, num_classes, axis_name)
