"""LeCam regularisation as a forked step (Tseng, Jiang, Liu, Yang, Yang 2021, "Regularizing
Generative Adversarial Networks under Limited Data", eq. 3): D's loss gains
  lambda * (E_x ||D(x) - alpha_F||^2 + E_z ||D(G(z)) - alpha_R||^2),
alpha_R and alpha_F being exponential moving averages of D's mean output on real and fake
images. Stateful: the two EMAs live in the training state (`state.extra`), are saved with
each checkpoint and restored bit-exactly on resume.

  python train.py --config=examples/lecam/config.py --workdir=runs/cgan_lecam
  python train.py --config=examples/lecam/config.py --workdir=runs/cgan_lecam \
      --config.fork.weight=0.1 --config.fork.decay=0.999

The defaults (lambda 0.3, decay 0.99) are not tuned for Fashion-MNIST. The whole fork is this
file and its config; docs/forking.md is the contract.
"""

import functools

import jax
import jax.numpy as jnp

from cgan_jax import steps

FIELDS = {'weight': 0.3, 'decay': 0.99}


def validate(fork) -> list[str]:
  problems = [] if fork.weight >= 0 else [f'weight must be >= 0, got {fork.weight}']
  if not 0.0 <= fork.decay < 1.0:
    problems.append(f'decay must be in [0, 1), got {fork.decay}')
  return problems


def init_extra(gan, fork) -> dict[str, jax.Array]:
  """The fork's arrays in a fresh state: both EMAs start at 0."""
  del gan, fork
  return {'ema_real': jnp.zeros((), jnp.float32), 'ema_fake': jnp.zeros((), jnp.float32)}


def lecam_term(weight: float, view: steps.DView) -> tuple[jax.Array, steps.Metrics]:
  """lambda * R_LC on this device's batch, and D's mean outputs for the EMAs (their means
  over devices come back averaged with the metrics)."""
  ema = view.state.extra
  real_B, fake_B = view.real.logits, view.fake.logits
  r_lc = (jnp.mean(jnp.square(real_B - ema['ema_fake']))
          + jnp.mean(jnp.square(fake_B - ema['ema_real'])))
  return weight * r_lc, {'lecam': r_lc,
                         'lecam_d_real': jax.lax.stop_gradient(jnp.mean(real_B)),
                         'lecam_d_fake': jax.lax.stop_gradient(jnp.mean(fake_B))}


def make_train_step(fork, gan):
  """The shared step with R_LC in D's loss, then the EMAs moved towards this step's means."""
  if gan.split_d_step:  # R_LC reads D's real and fake outputs of one update
    raise ValueError('LeCam needs D to see real and fake images in one update '
                     '(split_d_step is set)')
  weight, decay = float(fork.weight), float(fork.decay)

  def train_step(state, batch):
    new, metrics = steps.train_step(state, batch,
                                    d_regularizer=functools.partial(lecam_term, weight))
    ema = state.extra
    extra = {'ema_real': decay * ema['ema_real'] + (1 - decay) * metrics['lecam_d_real'],
             'ema_fake': decay * ema['ema_fake'] + (1 - decay) * metrics['lecam_d_fake']}
    return new.replace(extra=extra), metrics

  return train_step
