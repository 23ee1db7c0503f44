"""Update schedules that vary over training, as data: the WGAN critic warm-up, learning-rate decay.

Both are pure functions of a step count, so the jitted train step stays one program:
`g_update_due` is integer arithmetic on the traced step (no data-dependent shapes, no Python
branch on its value), and the learning-rate schedule is an optax schedule of each optimiser's
own update count.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from cgan_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class CriticWarmup:
  """WGAN's critic warm-up (Arjovsky et al. 2017, the reference code's training loop):

      if gen_iterations < first or gen_iterations % every == 0: Diters = critic_iters
      else: Diters = n_critic

  One train step makes `d_steps` critic updates, each on its own minibatch, and then G's
  update; a G iteration owed `critic_iters` critic updates spans critic_iters / d_steps train
  steps, G's update being applied at the last of them only (the others leave G unchanged).
  Every critic update still reads a fresh minibatch, as in the paper.
  """
  critic_iters: int = 100  # critic updates before each warm-up G iteration
  first: int = 25          # G iterations 0 .. first-1 are warm-up iterations
  every: int = 500         # and so is every G iteration that is a multiple of `every` (0: none)

  def steps_per_warm_iteration(self, d_steps: int) -> int:
    return self.critic_iters // d_steps


def check_warmup(warmup: CriticWarmup, d_steps: int) -> None:
  """Refuses a warm-up the step layout cannot express exactly."""
  if warmup.critic_iters < d_steps or warmup.critic_iters % d_steps:
    raise UserError(f'critic_warmup_iters ({warmup.critic_iters}) must be a multiple of '
                    f'n_critic ({d_steps}): one train step makes n_critic critic updates')
  if warmup.first < 0 or warmup.every < 0:
    raise UserError('critic_warmup_first and critic_warmup_every must be >= 0')
  if warmup.every and warmup.first > warmup.every:
    raise UserError(f'critic_warmup_first ({warmup.first}) must be <= critic_warmup_every '
                    f'({warmup.every})')


def g_update_due(warmup: CriticWarmup | None, d_steps: int, step) -> jax.Array | bool:
  """Whether train step `step` (0-based) ends a G iteration, i.e. applies G's update.

  Closed form of the paper's loop: steps [0, first·r) are `first` warm-up iterations of
  r = critic_iters / d_steps steps each; then G iterations first .. g0-1 (g0 the first
  multiple of `every` >= first) take one step each; from g0 on, cycles of r + every - 1
  steps: one warm-up iteration (r steps), then every - 1 one-step iterations.
  """
  if warmup is None:
    return True
  r = warmup.steps_per_warm_iteration(d_steps)
  step = jnp.asarray(step, jnp.int32)
  warm_end = warmup.first * r
  in_first = (step % r) == r - 1
  if not warmup.every:
    return jnp.where(step < warm_end, in_first, True)
  e = warmup.every
  g0 = -(-warmup.first // e) * e
  t = step - warm_end - (g0 - warmup.first)  # steps since G iteration g0 began
  u = jnp.maximum(t, 0) % (r + e - 1)
  return jnp.where(step < warm_end, in_first, jnp.where(t < 0, True, u >= r - 1))


def lr_schedule(learning_rate: float, decay_rate: float, every_steps: int,
                updates_per_step: int) -> optax.Schedule:
  """lr · decay_rate^floor(step / every_steps) in train steps, for an optimiser that makes
  `updates_per_step` updates per train step (optax counts updates; TF's
  `exponential_decay(lr, global_step, every_steps, decay_rate, staircase=True)` counts steps).
  """
  if every_steps < 1:
    raise UserError(f'lr_decay_every_steps must be >= 1, got {every_steps}')
  return optax.exponential_decay(learning_rate, every_steps * updates_per_step, decay_rate,
                                 staircase=True)
