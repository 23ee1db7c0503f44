"""The noise-to-image kind: every GAN family of the model registry (cgan_jax.models)."""

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cgan_jax import forks, input_pipeline, steps, visualize
from cgan_jax import state as state_lib

SAMPLES_PER_CLASS = 10  # grids: one row per class, this many columns
Row = dict[str, Any]
Target = tuple[str, Optional[int], ml_collections.ConfigDict]  # (workdir, step, config)


def first(config: ml_collections.ConfigDict, arrays: tuple[np.ndarray, ...]
          ) -> tuple[np.ndarray, ...]:
  """The train split cut to config.num_train_examples (0: all of it)."""
  n = config.num_train_examples
  return tuple(a[:n] for a in arrays) if n else arrays


class GanTask:
  """A noise-to-image GAN of the model registry, trained by steps.train_step (or the
  config's forked step), drawn by generate.py, scored by evaluation/evaluator.py."""

  kind = 'gan'  # tasks.kind's answer
  table = 'gan'  # eval.py's table of these runs
  table_rank = 1  # tables print by rank: this one has always come after the others
  schema = None  # tables.render's own noise-to-image columns
  # (column, panel title) of eval.py --plot; an arrow says which way is better.
  plotted = (('fid', 'FID ↓'), ('kid', 'KID ↓'), ('is', 'Inception score ↑'),
             ('precision', 'precision ↑'), ('recall', 'recall ↑'), ('intra_fid', 'intra-FID ↓'),
             ('cond_acc', 'conditional accuracy ↑'),
             # results.py's rows: the standard FID and KID beside the classifier's
             ('inception_fid', 'Inception FID ↓'), ('inception_kid', 'Inception KID ↓'))

  def __init__(self, config: ml_collections.ConfigDict, axis_name: Optional[str] = steps.AXIS,
               steps_per_epoch: int = 1):
    del steps_per_epoch  # these recipes have no schedule over training
    self.config = config
    self.info = input_pipeline.DATASETS[input_pipeline.canonical_name(config.dataset)]
    self.gan = state_lib.build_gan(config, self.info.num_classes, axis_name,
                                   self.info.image_shape)
    self.micro_steps = self.gan.d_steps  # minibatches per step: one per critic update

  # ------------------------------------------------------------------------------ training

  @functools.cached_property
  def fork(self) -> forks.Fork | None:
    """The config's forked step (imported and its fields checked on first use: training
    only; readers of a run never import it), or None for the shared step."""
    spec = self.config.get('train_step', '')
    return forks.load(spec, self.config.get('fork')) if spec else None

  @functools.cached_property
  def train_step(self) -> forks.Step:
    return steps.train_step if self.fork is None else self.fork.train_step(self.gan)

  def _init_extra(self):
    return None if self.fork is None else self.fork.init_extra

  def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = input_pipeline.load_split(self.info.name, split, self.config.data_dir or None,
                                       allow_download=self.config.allow_download)
    return first(self.config, arrays) if split == 'train' else arrays

  def init_state(self, rng: jax.Array) -> state_lib.GANState:
    return state_lib.init_state(self.gan, rng, self.info.image_shape, self._init_extra())

  def abstract_state(self, sharding: jax.sharding.Sharding) -> state_lib.GANState:
    return state_lib.abstract_state(self.gan, self.info.image_shape, sharding,
                                    self._init_extra())

  @functools.cached_property
  def _fixed_inputs(self) -> tuple[jax.Array, jax.Array]:
    """Fixed noise for the grids: one row per class, SAMPLES_PER_CLASS columns."""
    gan = self.gan
    n = gan.num_classes * SAMPLES_PER_CLASS
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(self.config.seed),
                                               0x5A3B1E), n)
    z_NZ = jax.vmap(lambda k: gan.latent(k, gan.z_dim))(keys)
    y_N = jnp.repeat(jnp.arange(gan.num_classes, dtype=jnp.int32), SAMPLES_PER_CLASS)
    return z_NZ, y_N

  @functools.cached_property
  def _generate(self) -> Callable:
    return jax.jit(functools.partial(state_lib.generate, self.gan))

  def sample_grid(self, state: state_lib.GANState) -> np.ndarray:
    """G (its EMA when the run has one) on the fixed noise: a uint8 grid, one row per class
    (conditional or not)."""
    g_params, g_stats = state_lib.sampling_generator(state)
    images = jax.device_get(self._generate(g_params, g_stats, *self._fixed_inputs))
    return visualize.grid(images, rows=self.gan.num_classes, pixel_range=self.gan.pixel_range)

  def periodic_fid(self) -> Callable[[state_lib.GANState], dict[str, float]]:
    from cgan_jax import evaluation  # classifier asset + cached real features: only when asked
    fid = evaluation.make_periodic_fid(self.info.name, self.config.eval_num_samples,
                                       self.config.seed, data_dir=self.config.data_dir or None)
    return functools.partial(fid, self.gan)

  # ------------------------------------------------------------------- sampling, evaluation

  @staticmethod
  def check_drawable(workdir: str, config: ml_collections.ConfigDict) -> None:
    """generate.py draws from every run of this kind."""
    del workdir, config

  @staticmethod
  def caption(options: Any) -> str:
    """eval.py's caption of the table (options: evaluator.Options)."""
    seeds = (f'seed {options.seed}' if options.draws == 1 else
             f'seeds {options.seed} to {options.seed + options.draws - 1}, one per draw')
    return (f'{seeds}. FID, KID, intra-FID: lower is better; IS, precision, '
            'recall, cond. acc: higher is better. The real row scores the test split against '
            'the train split: the best a model can do.')

  @staticmethod
  def evaluate(targets: list[Target], options: Any, reference: bool) -> list[Row]:
    """The table's rows: per dataset and feature space a real-data row, then the runs."""
    from cgan_jax.evaluation import evaluator
    return evaluator.score_gans(targets, options, reference)
