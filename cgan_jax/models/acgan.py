"""ACGAN (Odena et al.): a class-conditional G and a D with two heads, real/fake and class.

G: z(100) ⊙ Emb(K, 100)(y) -> FC 128·7·7 -> ReLU -> BN -> up×2 -> conv 128 3×3 -> ReLU -> BN
   -> up×2 -> conv 64 3×3 -> ReLU -> BN -> conv C 3×3 -> tanh.
D: conv 16 3×3 s2 -> lReLU -> drop .25 -> conv 32 s2 -> pad (0,1) -> lReLU -> drop -> BN
   -> conv 64 s2 -> lReLU -> drop -> BN -> conv 128 s1 -> lReLU -> drop -> flatten
   -> {Dense 1: real/fake logit,  Dense K or K+1: class logits}.
BatchNorm momentum 0.8, epsilon 1e-3 (the Keras seed's). `class_outputs` is K for the paper's
layout, K + 1 for the Keras seed's extra "fake" class; the loss (losses.acgan_aux) must agree.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgan_jax.models import layers
from cgan_jax.models.common import DOutput, batch_norm


def _up2(h_BHWC: jax.Array) -> jax.Array:
  """Nearest-neighbour ×2 upsampling (Keras UpSampling2D)."""
  return jnp.repeat(jnp.repeat(h_BHWC, 2, axis=1), 2, axis=2)


class Generator(nn.Module):
  """(z, y) -> (B, 28, 28, C) in [-1, 1]."""
  num_classes: int = 10
  channels: int = 1
  axis_name: str | None = None

  @nn.compact
  def __call__(self, z_BZ: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    bn = functools.partial(batch_norm, train, self.axis_name, 0.8, 1e-3)
    h = z_BZ * nn.Embed(self.num_classes, z_BZ.shape[-1])(y_B)
    h = nn.relu(nn.Dense(128 * 7 * 7)(h)).reshape(-1, 7, 7, 128)
    h = bn()(h)
    h = bn()(nn.relu(nn.Conv(128, (3, 3), name='Conv_0')(_up2(h))))
    # Same parameters and function as nn.Conv; its kernel gradient as 9 tap-wise dots, which
    # XLA:CPU runs ~2x faster than its own for this 28x28 128 -> 64 layer (models/layers.py,
    # docs/perf_notes.md change 9). The 14x14 and 1-channel layers are faster with XLA's.
    h = bn()(nn.relu(layers.FastConv(64, (3, 3), name='Conv_1')(_up2(h))))
    return jnp.tanh(nn.Conv(self.channels, (3, 3), name='Conv_2')(h))


class Discriminator(nn.Module):
  """(B, 28, 28, C) -> DOutput(logits (B,), class_logits (B, class_outputs)); y is unused."""
  class_outputs: int = 10
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    bn = functools.partial(batch_norm, train, self.axis_name, 0.8, 1e-3)
    drop = functools.partial(nn.Dropout, 0.25, deterministic=not train)
    h = drop()(nn.leaky_relu(nn.Conv(16, (3, 3), strides=(2, 2))(x_BHWC), 0.2))
    h = nn.Conv(32, (3, 3), strides=(2, 2))(h)
    h = jnp.pad(h, ((0, 0), (0, 1), (0, 1), (0, 0)))
    h = bn()(drop()(nn.leaky_relu(h, 0.2)))
    h = bn()(drop()(nn.leaky_relu(nn.Conv(64, (3, 3), strides=(2, 2))(h), 0.2)))
    h = drop()(nn.leaky_relu(nn.Conv(128, (3, 3))(h), 0.2))
    h = h.reshape(h.shape[0], -1)
    return DOutput(nn.Dense(1)(h)[:, 0], nn.Dense(self.class_outputs)(h))
