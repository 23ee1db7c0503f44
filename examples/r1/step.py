"""R1 regularisation as a forked step (Mescheder, Geiger, Nowozin 2018, "Which Training Methods
for GANs do actually Converge?", eq. 9): D's loss gains (gamma / 2) E_x ||grad_x D(x)||^2 on
real data. Stateless: one config field, no state of its own.

  python train.py --config=examples/r1/config.py --workdir=runs/cgan_r1
  python train.py --config=examples/r1/config.py --workdir=runs/cgan_r1 --config.fork.gamma=1

The whole fork is this file and its config; docs/forking.md is the contract.
"""

import functools

import jax
import jax.numpy as jnp

from cgan_jax import steps

# The fork's config fields and their defaults (config.fork.<name>; checked by name and type).
FIELDS = {'gamma': 10.0}


def validate(fork) -> list[str]:
  """What is wrong with the fork's fields (empty: nothing)."""
  return [] if fork.gamma >= 0 else [f'gamma must be >= 0, got {fork.gamma}']


def r1_penalty(gamma: float, view: steps.DView) -> tuple[jax.Array, steps.Metrics]:
  """(gamma / 2) mean_B ||d D(x, y) / d x||^2 over this device's real images: the gradient of
  the summed logits gives each image's own gradient (D's examples are independent given its
  BatchNorm statistics), differentiated again through D's parameters."""
  grad_BHWC = jax.grad(lambda x: jnp.sum(view.critic(x)))(view.x_BHWC)
  squared_norm = jnp.mean(jnp.sum(jnp.square(grad_BHWC), axis=(1, 2, 3)))
  return 0.5 * gamma * squared_norm, {'r1': squared_norm}


def make_train_step(fork, gan):
  """The shared step with the penalty added to D's loss (no copy of the critic loop)."""
  del gan  # the penalty needs nothing of the GAN beyond what DView carries
  return functools.partial(steps.train_step,
                           d_regularizer=functools.partial(r1_penalty, float(fork.gamma)))
