"""Pieces every model file shares: D's output type, latent priors, initialisers, norms."""

import functools
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class DOutput(NamedTuple):
  """What every discriminator returns: one real/fake logit (or critic value) per image,
  and, for auxiliary-classifier models, class logits (None otherwise)."""
  logits: jax.Array                       # (B,)
  class_logits: Optional[jax.Array] = None  # (B, K) or None


def uniform_latent(key: jax.Array, z_dim: int) -> jax.Array:
  """z ~ U(-1, 1)^z_dim."""
  return jax.random.uniform(key, (z_dim,), minval=-1.0, maxval=1.0)


def normal_latent(key: jax.Array, z_dim: int) -> jax.Array:
  """z ~ N(0, I_z_dim)."""
  return jax.random.normal(key, (z_dim,))


# N(0, 0.02) kernels: the DCGAN-paper initialisation most seeds use.
init_02 = nn.initializers.normal(0.02)
Dense02 = functools.partial(nn.Dense, kernel_init=init_02)


def batch_norm(train: bool, axis_name: Optional[str], momentum: float = 0.9,
               epsilon: float = 1e-5) -> nn.BatchNorm:
  """BatchNorm whose batch statistics are averaged over `axis_name` (devices) in training."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                      axis_name=axis_name if train else None)


def one_hot(y_B: jax.Array, num_classes: int, dtype=jnp.float32) -> jax.Array:
  return jax.nn.one_hot(y_B, num_classes, dtype=dtype)


def label_maps(x_BHWC: jax.Array, y_B: jax.Array, num_classes: int) -> jax.Array:
  """x with one-hot y appended as num_classes constant channels (the CGAN 'label maps')."""
  y_B11K = one_hot(y_B, num_classes, x_BHWC.dtype)[:, None, None, :]
  return jnp.concatenate(
      [x_BHWC, jnp.broadcast_to(y_B11K, x_BHWC.shape[:3] + (num_classes,))], -1)
