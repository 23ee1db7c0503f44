"""What the image -> image kinds (pix2pix.py, cyclegan.py) share: config checks, optimizers,
data, state, the sample grid's inputs and the loop over runs of their eval.py tables."""

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cgan_jax import losses, steps, translation_data, visualize
from cgan_jax import state as state_lib
from cgan_jax import translation_steps as ts
from cgan_jax.errors import UserError
from cgan_jax.evaluation import tables
from cgan_jax.kinds.gan import Row, Target, first

TRANSLATION_SAMPLES = 10  # grids: this many columns
# eval.py's leading columns of every image -> image table: (key, markdown header, formatter)
HEAD: tables.Schema = (('run', 'run', tables.text), ('model', 'model', tables.text),
                       ('task', 'task', tables.text), ('step', 'step', tables.text),
                       ('samples', 'samples', tables.text))
Nets = tuple[Any, Any]  # (G, D) flax modules


def _linear_decay(learning_rate: float, decay_from: float, total_steps: int) -> optax.Schedule:
  """Constant, then linear to 0 over the last (1 - decay_from) of training (CycleGAN's)."""
  start = int(round(decay_from * total_steps))
  return optax.join_schedules(
      [optax.constant_schedule(learning_rate),
       optax.linear_schedule(learning_rate, 0.0, max(total_steps - start, 1))], [start])


def _abstract(init: Callable[[jax.Array], Any], sharding: jax.sharding.Sharding) -> Any:
  """Shapes, dtypes and `sharding` of init(key), without running the random init."""
  shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      shapes)


def _check(config: ml_collections.ConfigDict) -> None:
  """UserError for what the image -> image kinds cannot train."""
  name, t = config.model.name, config.translation
  if config.get('train_step'):
    raise UserError('train_step (a forked step) is implemented for the noise-to-image GANs '
                    f'only; {name} trains with translation_steps.Translator')
  if config.get('dtype', 'float32') != 'float32':
    raise UserError(f'dtype={config.dtype} is implemented for the noise-to-image GANs only; '
                    f'{name} trains in float32 (--config.dtype=float32)')
  if config.loss not in losses.LOSSES:
    raise UserError(f'unknown loss {config.loss!r}; known: {", ".join(sorted(losses.LOSSES))}')
  if t.image_size < 8 or t.image_size & (t.image_size - 1):
    raise UserError(f'translation.image_size must be a power of two >= 8, got {t.image_size}')
  for field in ('l1_weight', 'cycle_weight', 'identity_weight', 'pool_size'):
    if t[field] < 0:
      raise UserError(f'translation.{field} must be >= 0, got {t[field]}')
  if not 0.0 <= t.lr_decay_from <= 1.0:
    raise UserError(f'translation.lr_decay_from must be in [0, 1], got {t.lr_decay_from}')
  translation_data.class_pair(config)  # a bad class name fails here, before any work


class TranslationTask:
  """An image-to-image GAN on a translation_data task. A subclass (one kind) gives its nets,
  train step, state init, grid rows and eval.py table (schema, caption, plotted, score)."""

  kind = 'translation'  # tasks.kind's answer
  table = ''  # eval.py's table of these runs: the subclass's model family
  table_rank = 0
  schema: tables.Schema = HEAD
  plotted: tuple[tuple[str, str], ...] = ()
  micro_steps = 1
  train_step: Callable = None  # staticmethod(the kind's step) in each subclass
  init_nets: Callable = None  # staticmethod: (Translator, key) -> TranslationState

  def __init__(self, config: ml_collections.ConfigDict, axis_name: Optional[str] = steps.AXIS,
               steps_per_epoch: int = 1):
    if 'translation' not in config:
      raise UserError(f'model {config.model.name!r} needs a translation config: start from '
                      f'configs/{config.model.name}.py')
    _check(config)
    self.config = config
    t = config.translation
    self.channels = translation_data.channels(config)
    g, d = self.nets(config, self.channels, axis_name)
    total = max(config.num_epochs * steps_per_epoch, 1)
    # Every optimizer gets the schedule (constant when lr_decay_from = 1), so the optimizer
    # state has one structure whatever the length of training.
    tx = lambda cfg: state_lib.make_optimizer(
        cfg, learning_rate=_linear_decay(cfg.learning_rate, t.lr_decay_from, total))
    self.spec = ts.Translator(
        g, d, losses.LOSSES[config.loss], tx(config.g_optimizer), tx(config.d_optimizer),
        channels=self.channels, image_size=t.image_size,
        l1_weight=float(t.l1_weight), cycle_weight=float(t.cycle_weight),
        identity_weight=float(t.identity_weight), pool_size=int(t.pool_size))

  @staticmethod
  def nets(config: ml_collections.ConfigDict, channels: int, axis_name: Optional[str]) -> Nets:
    """(G, D) of config.translation."""
    raise NotImplementedError

  # ------------------------------------------------------------------------------ training

  def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = translation_data.build_split(self.config, split)
    return first(self.config, arrays) if split == 'train' else arrays

  def init_state(self, rng: jax.Array) -> ts.TranslationState:
    return self.init_nets(self.spec, rng)

  def abstract_state(self, sharding: jax.sharding.Sharding) -> ts.TranslationState:
    return _abstract(self.init_state, sharding)

  @functools.cached_property
  def _fixed_inputs(self) -> jax.Array:
    """[A ‖ B] of the first TRANSLATION_SAMPLES held-out pairs (train pairs without a test
    split), in [-1, 1]."""
    try:
      pairs, _ = self.load('test')
    except UserError:
      pairs, _ = self.load('train')
    return ts.to_pixel_range(jnp.asarray(pairs[:TRANSLATION_SAMPLES]))

  @functools.cached_property
  def translate(self) -> Callable:
    """(g_params, g_stats, x in [-1, 1]) -> G(x), jitted."""
    return jax.jit(functools.partial(ts.translate, self.spec))

  def grid_rows(self, state: ts.TranslationState, a: jax.Array, b: jax.Array
                ) -> list[jax.Array]:
    """The sample grid's rows from the fixed inputs A and B."""
    raise NotImplementedError

  def sample_grid(self, state: ts.TranslationState) -> np.ndarray:
    a, b = jnp.split(self._fixed_inputs, 2, axis=-1)
    rows = self.grid_rows(state, a, b)
    images = jax.device_get(jnp.concatenate(rows))
    return visualize.grid(images, rows=len(rows), pixel_range=ts.PIXEL_RANGE)

  def periodic_fid(self):
    raise UserError('eval_every_steps (periodic FID) is for noise-to-image GANs; score '
                    'pix2pix/CycleGAN runs with eval.py')

  # ------------------------------------------------------------------- sampling, evaluation

  @staticmethod
  def check_drawable(workdir: str, config: ml_collections.ConfigDict) -> None:
    """UserError: generate.py draws from noise, these models translate images."""
    raise UserError(f'{workdir} holds a {config.model.name} run, which translates images '
                    'rather than drawing them from noise: see its samples/ grids, and score it '
                    'with eval.py')

  @staticmethod
  def caption(options: Any) -> str:
    """eval.py's caption of the table (options: evaluator.Options)."""
    raise NotImplementedError

  @staticmethod
  def evaluate(targets: list[Target], options: Any, reference: bool) -> list[Row]:
    """The table's rows: the baselines (with `reference`), then one row per target."""
    from cgan_jax.evaluation import translation
    scorer, rows = translation.TranslationEvaluator(options), []
    for workdir, step, _ in targets:
      rows += scorer.rows(workdir, step, reference=reference and not rows)
    return rows

  def score(self, scorer: Any, workdir: str, state: ts.TranslationState,
            reference: bool) -> list[Row]:
    """eval.py's rows of one checkpoint (scorer: a translation.TranslationEvaluator)."""
    raise NotImplementedError
