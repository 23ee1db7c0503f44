"""The registry of model kinds: one class per kind, owning all that differs between kinds.

A kind class trains (what `tasks.build` returns: data, state, step, sample grid), says whether
generate.py can draw from its runs, and scores its runs for eval.py (table, columns, caption,
plotted metrics). The trainer, eval.py, generate.py and the evaluation package ask it; none of
them names a kind. A new kind is a module of this package plus one entry in KINDS.

  gan       noise -> image GANs: every family of cgan_jax.models.FAMILIES
  pix2pix   paired image -> image (translation.py holds what it shares with CycleGAN)
  cyclegan  unpaired image <-> image
"""

import importlib
from typing import Any

# Model family -> 'module:Class' of its kind, for the families that models.FAMILIES does not
# build; every family it builds is NOISE_TO_IMAGE's. Imported on first use: models reads the
# family names without importing the kinds (which import models).
NOISE_TO_IMAGE = 'cgan_jax.kinds.gan:GanTask'
KINDS: dict[str, str] = {
    'pix2pix': 'cgan_jax.kinds.pix2pix:Pix2pixTask',
    'cyclegan': 'cgan_jax.kinds.cyclegan:CycleGanTask',
}


def _load(ref: str) -> type:
  module, name = ref.split(':')
  return getattr(importlib.import_module(module), name)


def registered() -> list[type]:
  """Every kind class, the noise-to-image one first."""
  return [_load(ref) for ref in dict.fromkeys((NOISE_TO_IMAGE, *KINDS.values()))]


def of(config: Any) -> type:
  """The kind class of config.model (UserError if config.model is not a valid group)."""
  from cgan_jax import models
  return _load(KINDS.get(models.family(config), NOISE_TO_IMAGE))


def by_table(table: str) -> type | None:
  """The kind whose eval.py table is `table` (a key of evaluator.evaluate's answer)."""
  return next((kind for kind in registered() if kind.table == table), None)
