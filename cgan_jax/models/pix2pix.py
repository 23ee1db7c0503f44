"""pix2pix (Isola et al. 2017), scaled to small images: U-Net generator, PatchGAN discriminator.

UNet  G: x (B, S, S, C) -> y (B, S, S, C_out) in [-1, 1], S a power of two >= 4. The encoder
      halves the side with 4x4 stride-2 convolutions down to 1x1 (log2 S of them, widths
      base·(1, 2, 4, 8, 8, ...)); each decoder layer doubles it with a 4x4 stride-2 transposed
      convolution on [decoder output ‖ encoder output of the same side] (the skips). Encoder:
      LeakyReLU(0.2) before each conv but the first, BatchNorm after each but the first and
      the innermost; decoder: ReLU before each, BatchNorm after each but the last, dropout 0.5
      after the three innermost (the paper's noise: G gets no z). tanh output.
Patch D: [x ‖ y] -> conv 4x4 s2 (base) -> LeakyReLU -> `layers` x [conv 4x4 (s2 but the last
      is s1), norm, LeakyReLU] -> conv 4x4 s1 to one logit per patch (B, P, P). With S = 32
      and layers = 1: 16x16 patches, each judging a 16-pixel receptive field (the paper's
      70x70 on 256x256, scaled). Convolutions followed by a norm have no bias.
All kernels N(0, 0.02).
"""

import functools
import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgan_jax.models import layers
from cgan_jax.models.common import batch_norm, init_02

_Conv = functools.partial(nn.Conv, kernel_size=(4, 4), kernel_init=init_02)
# Tap-wise kernel gradient for the wide up-convolutions (fast on XLA:CPU, models/layers.py);
# the narrow output layer keeps nn.ConvTranspose, which measured faster there.
_Up = functools.partial(layers.FastConvTranspose, kernel_size=(4, 4), strides=(2, 2),
                        kernel_init=init_02)
_UpOut = functools.partial(nn.ConvTranspose, kernel_size=(4, 4), strides=(2, 2),
                           padding='SAME', kernel_init=init_02)


def norm_layer(kind: str, train: bool, axis_name: Optional[str]) -> nn.Module:
  """'batch' (statistics averaged over devices) or 'instance' (per image, no affine terms)."""
  if kind == 'batch':
    return batch_norm(train, axis_name)
  if kind == 'instance':
    return nn.InstanceNorm(epsilon=1e-5, use_bias=False, use_scale=False)
  raise ValueError(f'unknown norm {kind!r}')


def unet_widths(side: int, base: int) -> list[int]:
  """Encoder widths of a U-Net for `side` x `side` inputs (one per halving down to 1x1)."""
  depth = int(math.log2(side))
  if side < 4 or 2 ** depth != side:
    raise ValueError(f'the U-Net needs a square side that is a power of two >= 4, got {side}')
  return [base * min(2 ** i, 8) for i in range(depth)]


class UNet(nn.Module):
  """x (B, S, S, C) -> (B, S, S, out_channels) in [-1, 1]."""
  out_channels: int = 1
  base: int = 64
  norm: str = 'batch'
  dropout: float = 0.5
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
    if x_BHWC.shape[1] != x_BHWC.shape[2]:
      raise ValueError(f'the U-Net needs square inputs, got {x_BHWC.shape[1:3]}')
    widths = unet_widths(x_BHWC.shape[1], self.base)
    n = len(widths)
    norm = functools.partial(norm_layer, self.norm, train, self.axis_name)
    skips, h = [], x_BHWC
    for i, width in enumerate(widths):            # side S/2, S/4, ..., 1
      if i > 0:
        h = nn.leaky_relu(h, 0.2)
      normed = 0 < i < n - 1
      h = _Conv(width, strides=(2, 2), padding='SAME', use_bias=not normed)(h)
      if normed:
        h = norm()(h)
      skips.append(h)
    for j in reversed(range(n)):                   # side 2, 4, ..., S
      if j < n - 1:
        h = jnp.concatenate([h, skips[j]], -1)
      h = nn.relu(h)
      if j == 0:
        return jnp.tanh(_UpOut(self.out_channels)(h))
      h = norm()(_Up(widths[j - 1], use_bias=False)(h))
      if j >= n - 3 and self.dropout:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
    raise AssertionError('unreachable')


class PatchDiscriminator(nn.Module):
  """(B, S, S, C) -> one logit per patch (B, P, P)."""
  base: int = 64
  layers: int = 1
  norm: str = 'batch'
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
    norm = functools.partial(norm_layer, self.norm, train, self.axis_name)
    h = nn.leaky_relu(_Conv(self.base, strides=(2, 2), padding='SAME')(x_BHWC), 0.2)
    for i in range(1, self.layers + 1):
      stride = (2, 2) if i < self.layers else (1, 1)
      width = self.base * min(2 ** i, 8)
      h = nn.leaky_relu(norm()(_Conv(width, strides=stride, padding='SAME', use_bias=False)(h)),
                        0.2)
    return _Conv(1, strides=(1, 1), padding='SAME')(h)[..., 0]
