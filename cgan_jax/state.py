"""The GAN training state: one pytree of arrays plus a static description of the GAN."""

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cgan_jax import augment, losses, models, schedules
from cgan_jax.errors import UserError

PyTree = Any

# Optimizer names in configs -> optax constructors; the other config fields are kwargs.
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    'adam': optax.adam,
    'rmsprop': optax.rmsprop,
    'sgd': optax.sgd,
}


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class GAN:
  """Everything static about a GAN: networks, latent prior, objective and optimizers."""
  generator: nn.Module
  discriminator: nn.Module
  latent: Callable[[jax.Array, int], jax.Array]
  z_dim: int
  num_classes: int
  conditional: bool
  pixel_range: tuple[float, float]
  loss: losses.LossPair
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  # The update schedule (steps.py reads these; configs set them):
  d_steps: int = 1  # critic updates per generator update, each on its own minibatch (n_critic)
  g_steps: int = 1  # generator updates per step (the DCGAN seed's tip: 2)
  gp_weight: float = 0.0  # λ of the WGAN-GP gradient penalty (0: off)
  d_constraint: Callable[[PyTree], PyTree] = lambda params: params  # after each D update
  aux: losses.AuxLoss = losses.NO_AUX  # the model's auxiliary-classifier terms
  # Which inputs the fakes take and how D and G step (defaults: the classic alternating step
  # on one batch, G reusing the last D update's noise and labels):
  sample_fake_labels: bool = False  # fakes' labels ~ U{0..K-1}, not the real batch's (Keras ACGAN)
  fresh_g_inputs: bool = False  # each G update draws its own z (and uniform labels) (cDCGAN code)
  split_d_step: bool = False  # two D optimiser steps per minibatch: real, then fakes (Keras)
  simultaneous: bool = False  # G's gradient through D before its update: one forward, both step
  critic_warmup: schedules.CriticWarmup | None = None  # WGAN's 100 critic iterations (None: off)
  image_size: int | None = None  # side G/D work at when it differs from the data's
  # Steps of the update any GAN can switch on (steps.py):
  ema_decay: float = 0.0  # G's weights averaged into GANState.g_ema (0: no EMA; BigGAN 0.9999)
  ema_start: int = 0  # steps before it the EMA copies G (BigGAN/StudioGAN: 1000)
  augment: tuple[str, ...] = ()  # DiffAugment policy of D's inputs (cgan_jax/augment.py)
  # Mixed precision (config.dtype): G and D compute in this dtype in training (steps.py);
  # parameters, optimizer state, BatchNorm statistics and losses stay float32.
  compute_dtype: Any = jnp.float32


@flax.struct.dataclass
class GANState:
  """All arrays that change during training; `gan` rides along as static data."""
  step: jax.Array
  rng: jax.Array
  g_params: PyTree
  g_stats: PyTree  # BatchNorm running statistics ({} when the net has none)
  g_opt: PyTree
  d_params: PyTree
  d_stats: PyTree
  d_opt: PyTree
  # {'params': ..., 'stats': ...}: the exponential moving average of G's parameters and
  # BatchNorm statistics when the GAN has one (gan.ema_decay > 0); {} otherwise.
  g_ema: PyTree
  # A forked step's own arrays (cgan_jax/forks.py: its init_extra), saved and restored with
  # the rest; {} for the shared step.
  extra: PyTree
  gan: GAN = flax.struct.field(pytree_node=False)


def make_optimizer(cfg: ml_collections.ConfigDict,
                   learning_rate: float | optax.Schedule | None = None
                   ) -> optax.GradientTransformation:
  """Builds an optax optimizer from a config such as {name: adam, learning_rate: 2e-4, b1: 0.5}
  (`learning_rate`, e.g. a schedule, replaces the config's)."""
  kwargs = cfg.to_dict()
  name = kwargs.pop('name')
  if learning_rate is not None:
    kwargs['learning_rate'] = learning_rate
  if name not in OPTIMIZERS:
    raise UserError(f'unknown optimizer {name!r}; known: {", ".join(sorted(OPTIMIZERS))}')
  try:
    return OPTIMIZERS[name](**kwargs)
  except TypeError as e:
    raise UserError(f'optimizer {name!r} does not take {sorted(kwargs)}: {e}') from e


def clip_weights(c: float) -> Callable[[PyTree], PyTree]:
  """WGAN's constraint: every parameter projected onto [-c, c] (identity when c == 0)."""
  if c < 0:
    raise UserError(f'clip_critic must be >= 0, got {c}')
  if not c:
    return lambda params: params
  # optax.projections.projection_box documents scalar bounds, but its tree.map rejects them
  # (optax 0.2.8), so the one-line projection is written here.
  return lambda params: jax.tree.map(lambda p: jnp.clip(p, -c, c), params)


@functools.cache
def _defaults() -> dict[str, Any]:
  from cgan_jax import config_defaults
  return config_defaults.get_config().to_dict()


def schedule_field(config: ml_collections.ConfigDict, name: str):
  """config.<name>, or its default (config_defaults.py) in a config built without it."""
  return config[name] if name in config else _defaults()[name]


def _optimizer(cfg: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
               updates_per_step: int) -> optax.GradientTransformation:
  """The optimizer of `cfg`, its learning rate decayed stepwise if the recipe asks."""
  rate = float(schedule_field(config, 'lr_decay_rate'))
  if rate == 1.0:
    return make_optimizer(cfg)
  return make_optimizer(cfg, schedules.lr_schedule(
      cfg.learning_rate, rate, schedule_field(config, 'lr_decay_every_steps'), updates_per_step))


def build_gan(config: ml_collections.ConfigDict, num_classes: int,
              axis_name: str | None, image_shape: tuple[int, int, int] = (28, 28, 1)) -> GAN:
  """Resolves the config's model (for the dataset's `image_shape`), loss, optimizers and
  update schedule into a `GAN`."""
  parts = models.build(config, num_classes, axis_name, image_shape)
  if config.loss not in losses.LOSSES:
    raise UserError(f'unknown loss {config.loss!r}; known: {", ".join(sorted(losses.LOSSES))}')
  for field in ('n_critic', 'g_steps'):
    if config[field] < 1:
      raise UserError(f'{field} must be >= 1, got {config[field]}')
  if config.gradient_penalty < 0:
    raise UserError(f'gradient_penalty must be >= 0, got {config.gradient_penalty}')
  loss = losses.LOSSES[config.loss]
  split = bool(schedule_field(config, 'split_d_step'))
  if split and (loss.d_real is None or config.gradient_penalty):
    raise UserError('split_d_step needs a loss with separable real/fake halves and no '
                    'gradient penalty (the penalty reads real and fake images together)')
  warmup = None
  if schedule_field(config, 'critic_warmup_iters'):
    warmup = schedules.CriticWarmup(schedule_field(config, 'critic_warmup_iters'),
                                    schedule_field(config, 'critic_warmup_first'),
                                    schedule_field(config, 'critic_warmup_every'))
    schedules.check_warmup(warmup, config.n_critic)
  d_updates_per_step = config.n_critic * (2 if split else 1)
  ema_decay = float(schedule_field(config, 'ema_decay'))
  if not 0.0 <= ema_decay < 1.0:
    raise UserError(f'ema_decay must be in [0, 1), got {ema_decay}')
  try:
    policy = augment.parse_policy(schedule_field(config, 'diffaugment'))
  except ValueError as e:
    raise UserError(f'diffaugment: {e}') from e
  return GAN(parts.generator, parts.discriminator, parts.latent, config.z_dim, num_classes,
             parts.conditional, parts.pixel_range, loss,
             _optimizer(config.g_optimizer, config, config.g_steps),
             _optimizer(config.d_optimizer, config, d_updates_per_step),
             d_steps=config.n_critic, g_steps=config.g_steps,
             gp_weight=float(config.gradient_penalty),
             d_constraint=clip_weights(config.clip_critic), aux=parts.aux,
             image_size=parts.image_size, compute_dtype=compute_dtype(config),
             sample_fake_labels=bool(schedule_field(config, 'sample_fake_labels')),
             fresh_g_inputs=bool(schedule_field(config, 'fresh_g_inputs')),
             split_d_step=split,
             simultaneous=bool(schedule_field(config, 'simultaneous_updates')),
             critic_warmup=warmup, ema_decay=ema_decay,
             ema_start=int(schedule_field(config, 'ema_start_step')), augment=policy)


DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
  """config.dtype (absent in configs written before it: float32) as a jnp dtype."""
  name = config.get('dtype', 'float32')
  if name not in DTYPES:
    raise UserError(f'dtype must be one of {", ".join(DTYPES)}, not {name!r}')
  return DTYPES[name]


def model_image_shape(gan: GAN, data_shape: tuple[int, ...]) -> tuple[int, ...]:
  """(H, W, C) that G makes and D sees: the data's, or resized to the model's side."""
  if gan.image_size is None:
    return tuple(data_shape)
  return (gan.image_size, gan.image_size, data_shape[-1])


def init_state(gan: GAN, rng: jax.Array, image_shape: tuple[int, ...],
               init_extra: Callable[[GAN], PyTree] | None = None) -> GANState:
  """Initialises G and D (inference-mode trace, so no cross-device axis is needed);
  `init_extra(gan)`: a fork's arrays (forks.Fork.init_extra)."""
  g_key, d_key, train_key = jax.random.split(rng, 3)
  image_shape = model_image_shape(gan, image_shape)
  z = jnp.zeros((1, gan.z_dim), jnp.float32)
  y = jnp.zeros((1,), jnp.int32)
  g_vars = gan.generator.init(g_key, z, y, train=False)
  d_vars = gan.discriminator.init(d_key, jnp.zeros((1, *image_shape), jnp.float32), y,
                                  train=False)
  g_stats = g_vars.get('batch_stats', {})
  return GANState(
      step=jnp.zeros((), jnp.int32), rng=train_key,
      g_params=g_vars['params'], g_stats=g_stats, g_opt=gan.g_tx.init(g_vars['params']),
      d_params=d_vars['params'], d_stats=d_vars.get('batch_stats', {}),
      d_opt=gan.d_tx.init(d_vars['params']),
      # A copy, not the same buffers: the train step donates both trees.
      g_ema=(jax.tree.map(jnp.copy, {'params': g_vars['params'], 'stats': g_stats})
             if gan.ema_decay else {}),
      extra=init_extra(gan) if init_extra is not None else {}, gan=gan)


def abstract_state(gan: GAN, image_shape: tuple[int, ...], sharding: jax.sharding.Sharding,
                   init_extra: Callable[[GAN], PyTree] | None = None) -> GANState:
  """Shapes, dtypes and `sharding` of `init_state`, without running the random init."""
  abstract = jax.eval_shape(functools.partial(init_state, gan, image_shape=image_shape,
                                              init_extra=init_extra), jax.random.PRNGKey(0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      abstract)


GENERATORS = ('auto', 'ema', 'raw')


def sampling_generator(state: GANState, which: str = 'auto') -> tuple[PyTree, PyTree]:
  """(g_params, g_stats) to draw from: the EMA generator when the state has one ('auto',
  the default of grids, generate.py, eval.py and the periodic FID; 'ema' insists on it),
  else the trained G ('raw', or 'auto' without an EMA)."""
  if which not in GENERATORS:
    raise UserError(f'generator must be one of {", ".join(GENERATORS)}, got {which!r}')
  if which == 'ema' and not state.g_ema:
    raise UserError('this run has no EMA generator (ema_decay was 0): use the raw G')
  if which != 'raw' and state.g_ema:
    return state.g_ema['params'], state.g_ema['stats']
  return state.g_params, state.g_stats


def generate(gan: GAN, g_params: PyTree, g_stats: PyTree, z_BZ: jax.Array,
             y_B: jax.Array) -> jax.Array:
  """G in inference mode (running BatchNorm statistics): images in G's pixel range."""
  return gan.generator.apply({'params': g_params, 'batch_stats': g_stats}, z_BZ, y_B,
                             train=False)
