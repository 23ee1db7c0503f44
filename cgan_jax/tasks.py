"""What the trainer trains: a config's model resolved into data, state, step and sample grid.

Every kind of model is one class of the registry cgan_jax/kinds/ (the `Task` interface below:
training, whether generate.py can draw from it, and its eval.py table); all kinds share one
trainer, one checkpoint format and one logging path:
  GanTask          noise -> image GANs (cgan_jax.models.FAMILIES; steps.train_step)
  Pix2pixTask      paired image -> image (translation_steps.pix2pix_step)
  CycleGanTask     unpaired image <-> image (translation_steps.cyclegan_step)
The trainer, eval.py, generate.py and the benchmarks only use `build`, `kind`, `kinds.of` and
the members of `Task`; choosing between kinds is the registry lookup, not a branch elsewhere.

A forked train step: a module of your own named by your config file, `config.train_step =
'my_fork'` (or `'my_steps:train_step'`), with its own config fields and state arrays; nothing
shared is edited (cgan_jax/forks.py, docs/forking.md, examples/).
"""

from typing import Any, Callable, Optional, Protocol

import jax
import ml_collections
import numpy as np

from cgan_jax import kinds, steps
from cgan_jax.kinds.cyclegan import CycleGanTask
from cgan_jax.kinds.gan import SAMPLES_PER_CLASS, GanTask
from cgan_jax.kinds.pix2pix import Pix2pixTask
from cgan_jax.kinds.translation import TRANSLATION_SAMPLES, TranslationTask

__all__ = ['Task', 'build', 'kind', 'GanTask', 'TranslationTask', 'Pix2pixTask', 'CycleGanTask',
           'SAMPLES_PER_CLASS', 'TRANSLATION_SAMPLES']
Row = dict[str, Any]


class Task(Protocol):
  """What the trainer, eval.py and generate.py ask of a kind of model."""

  kind: str  # 'gan' (noise -> image) or 'translation' (image -> image)
  micro_steps: int  # minibatches one train step consumes (n_critic for WGANs)
  train_step: Callable[[Any, dict[str, jax.Array]], tuple[Any, dict[str, jax.Array]]]
  table: str  # eval.py's table of this kind's runs (the key in evaluator.evaluate's answer)
  table_rank: int  # eval.py prints tables by rank, then by their first run
  schema: Any  # tables.Schema of the table, None for tables.render's own columns
  plotted: tuple[tuple[str, str], ...]  # (column, panel title) of eval.py --plot

  def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's arrays as the step's batches take them (train: cut to
    num_train_examples)."""

  def init_state(self, rng: jax.Array) -> Any:
    """A fresh training state (a pytree the checkpointer saves whole)."""

  def abstract_state(self, sharding: jax.sharding.Sharding) -> Any:
    """init_state's shapes and dtypes with `sharding`: the restore target."""

  def sample_grid(self, state: Any) -> np.ndarray:
    """A uint8 image grid of the current model, for samples/ and TensorBoard."""

  def periodic_fid(self) -> Callable[[Any], dict[str, float]]:
    """state -> {'fid': ...} for config.eval_every_steps (UserError where unsupported)."""

  @staticmethod
  def check_drawable(workdir: str, config: ml_collections.ConfigDict) -> None:
    """UserError when generate.py cannot draw from this kind's runs, saying why."""

  @staticmethod
  def caption(options: Any) -> str:
    """eval.py's caption of the table (options: evaluator.Options)."""

  @staticmethod
  def evaluate(targets: list[tuple[str, Optional[int], ml_collections.ConfigDict]],
               options: Any, reference: bool) -> list[Row]:
    """The rows of the table of these (workdir, step, config) checkpoints."""


def kind(config: ml_collections.ConfigDict) -> str:
  """'gan' or 'translation': the kind of Task config.model builds (UserError if unknown)."""
  return kinds.of(config).kind


def build(config: ml_collections.ConfigDict, axis_name: Optional[str] = steps.AXIS,
          steps_per_epoch: int = 1) -> Task:
  """The task of config.model; steps_per_epoch sizes schedules over the whole training."""
  return kinds.of(config)(config, axis_name, steps_per_epoch)
