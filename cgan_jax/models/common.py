"""Pieces every model file shares: D's output type, latent priors, initialisers, norms."""

import functools
import math
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgan_jax.errors import UserError


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


class ConditionalBatchNorm(nn.Module):
  """BatchNorm without its own affine, then γ[y]·x̂ + β[y] from per-class tables (γ = 1,
  β = 0 at init; de Vries et al. 2017, Miyato & Koyama 2018, BigGAN). Works on (B, F) and
  (B, H, W, C) alike, normalising the last axis. Batch statistics are averaged over
  `axis_name` (devices) in training, like every BatchNorm here, and kept as running averages
  for inference."""
  num_classes: int
  axis_name: Optional[str] = None
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x_BC: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    c = x_BC.shape[-1]
    h = nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                     epsilon=self.epsilon, use_scale=False, use_bias=False,
                     axis_name=self.axis_name if train else None, name='bn')(x_BC)
    gamma_BC = nn.Embed(self.num_classes, c, embedding_init=nn.initializers.ones,
                        name='gamma')(y_B).astype(h.dtype)
    beta_BC = nn.Embed(self.num_classes, c, embedding_init=nn.initializers.zeros,
                       name='beta')(y_B).astype(h.dtype)
    shape = (h.shape[0],) + (1,) * (h.ndim - 2) + (c,)
    return h * gamma_BC.reshape(shape) + beta_BC.reshape(shape)


def spectral_normed(layer: nn.Module, on: bool = True) -> Callable[..., jax.Array]:
  """layer (its parameters under its own name) spectrally normalised (Miyato et al. 2018,
  `flax.linen.SpectralNorm`: one power iteration per training call); the power-iteration
  state is 'batch_stats' of '<name>_sn' ('<name>/kernel/u', '<name>/kernel/sigma'). With `on`
  False, the plain layer (same call signature)."""
  if on:
    return nn.SpectralNorm(layer, name=f'{layer.name}_sn')
  return lambda x, update_stats: layer(x)


class EmbedAsDense(nn.Module):
  """A class embedding stored as a (K, F) 'kernel', so that SpectralNorm normalises it (the
  projection paper's SNEmbedID)."""
  num_classes: int
  features: int
  embedding_init: Callable = nn.initializers.xavier_uniform()

  @nn.compact
  def __call__(self, y_B: jax.Array) -> jax.Array:
    table = self.param('kernel', self.embedding_init, (self.num_classes, self.features))
    return jnp.take(table, y_B, axis=0)


def minibatch_stddev(h_BHWC: jax.Array, group: int, train: bool) -> jax.Array:
  """h with the minibatch standard deviation appended as one more channel (Karras et al.,
  ICLR 2018, "Progressive Growing of GANs", section 3): for each group of `group` consecutive
  examples, the standard deviation over the group of every feature at every position,
  averaged into one scalar, repeated over the group's examples and positions. A D that sees
  it can tell a batch of too-similar fakes from real data (a check on mode collapse, which a
  BatchNorm D gets implicitly from its batch statistics and a spectrally normalised one lacks).

  Groups are consecutive examples of this device's batch, so a per-device batch divisible by
  `group` gives the groups one device would make of the global batch (N devices agree with
  one); training refuses any other batch. Outside training (parameter init on one example)
  the group shrinks to gcd(group, batch). Works on (B, F) as on (B, H, W, C).
  """
  b = h_BHWC.shape[0]
  if b % group:
    if train:
      raise UserError(f'model.minibatch_std={group} needs each device\'s batch to divide by '
                      f'{group}; this one has {b} examples (batch_size / devices)')
    group = math.gcd(b, group)
  h_GSHWC = h_BHWC.astype(jnp.float32).reshape(b // group, group, *h_BHWC.shape[1:])
  std_G = jnp.mean(jnp.sqrt(jnp.var(h_GSHWC, axis=1) + 1e-8),
                   axis=tuple(range(1, h_BHWC.ndim)))
  std_B1 = jnp.repeat(std_G, group).astype(h_BHWC.dtype).reshape((b,) + (1,) * (h_BHWC.ndim - 1))
  return jnp.concatenate([h_BHWC, jnp.broadcast_to(std_B1, h_BHWC.shape[:-1] + (1,))], -1)
