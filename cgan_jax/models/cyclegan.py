"""CycleGAN (Zhu et al. 2017), scaled to small images: residual generators; the discriminators
are pix2pix's PatchGAN (models/pix2pix.py) on one image, with instance norm.

ResnetGenerator: c7s1-base -> d(2·base) -> d(4·base) -> `blocks` x R(4·base) -> u(2·base)
  -> u(base) -> c7s1-C -> tanh, where c7s1-k is a 7x7 stride-1 conv on a reflection-padded
  input, d-k a 3x3 stride-2 conv, u-k a 3x3 stride-2 transposed conv, R-k a residual block of
  two reflection-padded 3x3 convs; instance norm (no affine terms) and ReLU after every conv
  but the last. The paper uses 6 blocks at 128x128 and 9 at 256x256; 32x32 inputs (8x8 at the
  blocks) default to 6 as well. Kernels N(0, 0.02).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgan_jax.models import layers
from cgan_jax.models.common import init_02

# Every conv but the output layer feeds an instance norm, which removes a bias: none.
_Conv = functools.partial(nn.Conv, kernel_init=init_02, use_bias=False)
_Up = functools.partial(layers.FastConvTranspose, kernel_size=(3, 3), strides=(2, 2),
                        kernel_init=init_02, use_bias=False)


def _instance_norm() -> nn.Module:
  return nn.InstanceNorm(epsilon=1e-5, use_bias=False, use_scale=False)


def _reflect(x_BHWC: jax.Array, pad: int) -> jax.Array:
  return jnp.pad(x_BHWC, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


class ResidualBlock(nn.Module):
  """x + IN(conv(pad(ReLU(IN(conv(pad(x)))))))."""

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    width = x_BHWC.shape[-1]
    h = nn.relu(_instance_norm()(_Conv(width, (3, 3), padding='VALID')(_reflect(x_BHWC, 1))))
    return x_BHWC + _instance_norm()(_Conv(width, (3, 3), padding='VALID')(_reflect(h, 1)))


class ResnetGenerator(nn.Module):
  """x (B, S, S, C) -> (B, S, S, out_channels) in [-1, 1]; S divisible by 4."""
  out_channels: int = 1
  base: int = 64
  blocks: int = 6

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
    del train  # instance norm and no dropout: the same computation in both modes
    if x_BHWC.shape[1] % 4 or x_BHWC.shape[2] % 4:
      raise ValueError(f'the ResNet generator needs sides divisible by 4, got {x_BHWC.shape[1:3]}')
    act = lambda h: nn.relu(_instance_norm()(h))
    h = act(_Conv(self.base, (7, 7), padding='VALID')(_reflect(x_BHWC, 3)))
    for mult in (2, 4):  # 3x3 stride 2, padding 1 (the paper's): side / 2 exactly
      h = act(_Conv(self.base * mult, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))(h))
    for _ in range(self.blocks):
      h = ResidualBlock()(h)
    for mult in (2, 1):
      h = act(_Up(self.base * mult)(h))
    out = _Conv(self.out_channels, (7, 7), padding='VALID', use_bias=True)(_reflect(h, 3))
    return jnp.tanh(out)
