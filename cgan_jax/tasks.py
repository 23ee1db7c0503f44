"""What the trainer trains: a config's model resolved into data, state, step and sample grid.

Every kind of model is a `Task` (the typed interface below); two kinds share one trainer, one
checkpoint format and one logging path:
  GanTask          noise -> image GANs (cgan_jax.models.FAMILIES; steps.train_step)
  TranslationTask  image -> image GANs (TRANSLATORS below; translation_steps)
The trainer, eval.py, generate.py and the benchmarks only use `build`, `kind` and the
methods of `Task`; choosing between kinds is this registry lookup, not a branch elsewhere.

A forked train step: a module of your own named by your config file, `config.train_step =
'my_fork'` (or `'my_steps:train_step'`), with its own config fields and state arrays; nothing
shared is edited (cgan_jax/forks.py, docs/forking.md, examples/).
"""

import functools
from typing import Any, Callable, Optional, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cgan_jax import forks, input_pipeline, losses, models, steps, translation_data, visualize
from cgan_jax import state as state_lib
from cgan_jax import translation_steps as ts
from cgan_jax.errors import UserError
from cgan_jax.models import cyclegan, pix2pix

SAMPLES_PER_CLASS = 10  # noise-to-image grids: one row per class, this many columns
TRANSLATION_SAMPLES = 10  # image-to-image grids: this many columns


def _load(config: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
  info = input_pipeline.DATASETS[input_pipeline.canonical_name(config.dataset)]
  return input_pipeline.load_split(info.name, split, config.data_dir or None,
                                   allow_download=config.allow_download)


def _first(config: ml_collections.ConfigDict, arrays: tuple[np.ndarray, np.ndarray]):
  """The train split cut to config.num_train_examples (0: all of it)."""
  n = config.num_train_examples
  return tuple(a[:n] for a in arrays) if n else arrays


def _abstract(init: Callable[[jax.Array], Any], sharding: jax.sharding.Sharding) -> Any:
  """Shapes, dtypes and `sharding` of init(key), without running the random init."""
  shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      shapes)


class Task(Protocol):
  """What the trainer, eval.py and generate.py ask of a kind of model."""

  kind: str  # 'gan' (noise -> image) or 'translation' (image -> image)
  micro_steps: int  # minibatches one train step consumes (n_critic for WGANs)
  train_step: Callable[[Any, dict[str, jax.Array]], tuple[Any, dict[str, jax.Array]]]

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


class GanTask:
  """A noise-to-image GAN of the model registry, trained by steps.train_step (or the
  config's forked step)."""

  kind = 'gan'

  def __init__(self, config: ml_collections.ConfigDict, axis_name: Optional[str] = steps.AXIS,
               steps_per_epoch: int = 1):
    del steps_per_epoch  # these recipes have no schedule over training
    self.config = config
    self.info = input_pipeline.DATASETS[input_pipeline.canonical_name(config.dataset)]
    self.gan = state_lib.build_gan(config, self.info.num_classes, axis_name,
                                   self.info.image_shape)
    self.micro_steps = self.gan.d_steps  # minibatches per step: one per critic update

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
    arrays = _load(self.config, split)
    return _first(self.config, arrays) if split == 'train' else arrays

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


def _linear_decay(learning_rate: float, decay_from: float, total_steps: int) -> optax.Schedule:
  """Constant, then linear to 0 over the last (1 - decay_from) of training (CycleGAN's)."""
  start = int(round(decay_from * total_steps))
  return optax.join_schedules(
      [optax.constant_schedule(learning_rate),
       optax.linear_schedule(learning_rate, 0.0, max(total_steps - start, 1))], [start])


def _pix2pix_nets(config, channels, axis_name):
  t = config.translation
  return (pix2pix.UNet(channels, t.g_base, t.norm, t.dropout, axis_name=axis_name),
          pix2pix.PatchDiscriminator(t.d_base, t.d_layers, t.norm, axis_name=axis_name))


def _cyclegan_nets(config, channels, axis_name):
  t = config.translation
  return (cyclegan.ResnetGenerator(channels, t.g_base, t.res_blocks),
          pix2pix.PatchDiscriminator(t.d_base, t.d_layers, 'instance'))


# model name -> (builder of (G, D), two_way)
TRANSLATORS: dict[str, tuple[Callable, bool]] = {
    'pix2pix': (_pix2pix_nets, False),
    'cyclegan': (_cyclegan_nets, True),
}


class TranslationTask:
  """An image-to-image GAN (pix2pix, CycleGAN) on a translation_data task."""

  kind = 'translation'
  micro_steps = 1

  def __init__(self, config: ml_collections.ConfigDict, axis_name: Optional[str] = steps.AXIS,
               steps_per_epoch: int = 1):
    self.config = config
    t = config.translation
    builder, two_way = TRANSLATORS[config.model.name]
    if config.get('train_step'):
      raise UserError('train_step (a forked step) is implemented for the noise-to-image GANs '
                      f'only; {config.model.name} trains with translation_steps.Translator')
    if config.get('dtype', 'float32') != 'float32':
      raise UserError(f'dtype={config.dtype} is implemented for the noise-to-image GANs only; '
                      f'{config.model.name} trains in float32 (--config.dtype=float32)')
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
    self.channels = translation_data.channels(config)
    g, d = builder(config, self.channels, axis_name)
    total = max(config.num_epochs * steps_per_epoch, 1)
    # Every optimizer gets the schedule (constant when lr_decay_from = 1), so the optimizer
    # state has one structure whatever the length of training.
    tx = lambda cfg: state_lib.make_optimizer(
        cfg, learning_rate=_linear_decay(cfg.learning_rate, t.lr_decay_from, total))
    self.spec = ts.Translator(
        g, d, losses.LOSSES[config.loss], tx(config.g_optimizer), tx(config.d_optimizer),
        channels=self.channels, image_size=t.image_size, two_way=two_way,
        l1_weight=float(t.l1_weight), cycle_weight=float(t.cycle_weight),
        identity_weight=float(t.identity_weight), pool_size=int(t.pool_size))
    self.train_step = self.spec.train_step

  def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = translation_data.build_split(self.config, split)
    return _first(self.config, arrays) if split == 'train' else arrays

  def init_state(self, rng: jax.Array) -> ts.TranslationState:
    return ts.init_state(self.spec, rng)

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
  def _translate(self) -> Callable:
    return jax.jit(functools.partial(ts.translate, self.spec))

  def sample_grid(self, state: ts.TranslationState) -> np.ndarray:
    """pix2pix rows: A | G(A) | B.  CycleGAN rows: A | G(A) | F(G(A)) | B | F(B) | G(F(B))."""
    a, b = jnp.split(self._fixed_inputs, 2, axis=-1)
    run = lambda name, x: self._translate(
        state.g_params[name] if name else state.g_params,
        state.g_stats[name] if name else state.g_stats, x)
    if self.spec.two_way:
      fake_b, fake_a = run('ab', a), run('ba', b)
      rows = [a, fake_b, run('ba', fake_b), b, fake_a, run('ab', fake_a)]
    else:
      rows = [a, run(None, a), b]
    images = jax.device_get(jnp.concatenate(rows))
    return visualize.grid(images, rows=len(rows), pixel_range=ts.PIXEL_RANGE)

  def periodic_fid(self):
    raise UserError('eval_every_steps (periodic FID) is for noise-to-image GANs; score '
                    'pix2pix/CycleGAN runs with eval.py')


def kind(config: ml_collections.ConfigDict) -> str:
  """'gan' or 'translation': the kind of Task config.model builds (UserError if unknown)."""
  name = models.family(config)  # an invalid model group: UserError naming what is wrong
  return TranslationTask.kind if name in TRANSLATORS else GanTask.kind


def build(config: ml_collections.ConfigDict, axis_name: Optional[str] = steps.AXIS,
          steps_per_epoch: int = 1) -> Task:
  """The task of config.model; steps_per_epoch sizes schedules over the whole training."""
  if kind(config) == TranslationTask.kind:
    if 'translation' not in config:
      raise UserError(f'model {config.model.name!r} needs a translation config: start from '
                      f'configs/{config.model.name}.py')
    return TranslationTask(config, axis_name, steps_per_epoch)
  return GanTask(config, axis_name, steps_per_epoch)
