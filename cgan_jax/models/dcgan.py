"""DCGAN family: the all-convolutional G/D at 64×64 and at 28×28, unconditional or with labels.

dcgan64  G: z 1×1×100 -> deconv 1024 4×4 valid (4×4) -> 512 -> 256 -> 128 (s2, BN, ReLU)
         -> deconv C 4×4 s2 -> tanh (64×64);  D mirrors it: conv 128 -> 256 -> 512 -> 1024
         (4×4 s2, BN, LeakyReLU 0.2) -> conv 1 4×4 valid. BN on every layer but the outputs.
         Real 28×28 images are resized to 64×64 (ModelParts.image_size).
dcgan28 / cdcgan  (the conditional DCGAN seed's layout; labels only when conditional)
         G: concat(z, onehot y) as 1×1 -> deconv 256 7×7 valid -> BN -> lReLU -> deconv 128 5×5 s2
         -> BN -> lReLU -> deconv C 5×5 s2 -> tanh;
         D: concat(x, y as 10 label maps) -> conv 128 5×5 s2 -> lReLU -> conv 256 5×5 s2 -> norm
         -> lReLU -> conv 1 7×7 valid.  norm: BatchNorm, or LayerNorm / none for WGAN-GP critics
         (a gradient penalty per example is meaningless through batch statistics).
All kernels N(0, 0.02).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgan_jax.models import layers
from cgan_jax.models.common import DOutput, batch_norm, init_02, label_maps, one_hot

_Conv = functools.partial(nn.Conv, kernel_init=init_02)
_ConvT = functools.partial(nn.ConvTranspose, kernel_init=init_02)
# Same parameters and function as the two above, faster derivatives on XLA:CPU
# (models/layers.py; measurements in docs/perf_notes.md, changes 7-9):
#  - _FastConvT: tap-wise kernel gradient for the wide stride-2 deconvs (28x28 G: 1.8 s -> 0.1 s
#    at batch 64). The 1-channel output deconvs keep nn.ConvTranspose: there XLA's kernel
#    gradient is already fast (6-64 ms) and the tap-wise one is slower.
#  - _FastConvD: XLA's forward and first derivatives, but the second derivatives a gradient
#    penalty takes (WGAN-GP critics) as ordinary conv kernel gradients instead of XLA's
#    window-dilated ones (critic gradient with penalty: 6.1 s -> 1.1 s).
# Explicit `name=`s keep the parameter names of checkpoints written with the Flax modules.
_FastConvT = functools.partial(layers.FastConvTranspose, kernel_init=init_02)
_FastConvD = functools.partial(layers.FastConv, kernel_init=init_02, kernel_grad='xla')


G_ACTIVATIONS = {'relu': nn.relu, 'leaky_relu': lambda h: nn.leaky_relu(h, 0.2)}


class Generator64(nn.Module):
  """z -> (B, 64, 64, C) in [-1, 1]. activation: 'relu' (Radford et al.'s G) or 'leaky_relu'
  (0.2; seed 003's tip "使用lrelu效果会更好", LeakyReLU works better)."""
  channels: int = 1
  axis_name: str | None = None
  activation: str = 'relu'

  @nn.compact
  def __call__(self, z_BZ: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    bn = functools.partial(batch_norm, train, self.axis_name)
    act = G_ACTIVATIONS[self.activation]
    h = z_BZ[:, None, None, :]
    h = act(bn()(_ConvT(1024, (4, 4), padding='VALID', name='ConvTranspose_0')(h)))
    for i, width in enumerate((512, 256, 128), 1):
      h = _FastConvT(width, (4, 4), strides=(2, 2), name=f'ConvTranspose_{i}')(h)
      h = act(bn()(h))
    return jnp.tanh(_ConvT(self.channels, (4, 4), strides=(2, 2), padding='SAME',
                           name='ConvTranspose_4')(h))


class Discriminator64(nn.Module):
  """(B, 64, 64, C) -> DOutput(logits (B,))."""
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    h = x_BHWC
    for width in (128, 256, 512, 1024):
      h = _Conv(width, (4, 4), strides=(2, 2), padding='SAME')(h)
      h = nn.leaky_relu(batch_norm(train, self.axis_name)(h), 0.2)
    return DOutput(_Conv(1, (4, 4), padding='VALID')(h).reshape(-1))


class Generator28(nn.Module):
  """(z, y) -> (B, 28, 28, C) in [-1, 1]; y is used only when `conditional`."""
  num_classes: int = 10
  conditional: bool = False
  channels: int = 1
  axis_name: str | None = None

  @nn.compact
  def __call__(self, z_BZ: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    bn = functools.partial(batch_norm, train, self.axis_name)
    h = z_BZ
    if self.conditional:
      h = jnp.concatenate([h, one_hot(y_B, self.num_classes, h.dtype)], -1)
    h = h[:, None, None, :]
    h = nn.leaky_relu(bn()(_ConvT(256, (7, 7), padding='VALID', name='ConvTranspose_0')(h)), 0.2)
    h = _FastConvT(128, (5, 5), strides=(2, 2), name='ConvTranspose_1')(h)
    h = nn.leaky_relu(bn()(h), 0.2)
    return jnp.tanh(_ConvT(self.channels, (5, 5), strides=(2, 2), padding='SAME',
                           name='ConvTranspose_2')(h))


# LayerNorm reductions of the critic's 7×7×256 features (per-channel scale and bias either way,
# so the parameters are the same): 'hwc' normalises each example over (H, W, C), as the WGAN-GP
# reference critic (Gulrajani et al., tflib `Layernorm(name, [1, 2, 3], x)`); 'channels' over C
# alone at each position (Flax's default `nn.LayerNorm()`).
LAYER_NORM_AXES = {'hwc': (-3, -2, -1), 'channels': (-1,)}


class Discriminator28(nn.Module):
  """(B, 28, 28, C), y -> DOutput(logits (B,)); norm in {'batch', 'layer', 'none'};
  layer_norm_axes: a key of LAYER_NORM_AXES."""
  num_classes: int = 10
  conditional: bool = False
  norm: str = 'batch'
  axis_name: str | None = None
  layer_norm_axes: str = 'channels'

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    h = label_maps(x_BHWC, y_B, self.num_classes) if self.conditional else x_BHWC
    h = nn.leaky_relu(_FastConvD(128, (5, 5), strides=(2, 2), name='Conv_0')(h), 0.2)
    h = _FastConvD(256, (5, 5), strides=(2, 2), name='Conv_1')(h)
    if self.norm == 'batch':
      h = batch_norm(train, self.axis_name)(h)
    elif self.norm == 'layer':
      h = nn.LayerNorm(reduction_axes=LAYER_NORM_AXES[self.layer_norm_axes], feature_axes=-1,
                       name='LayerNorm_0')(h)
    h = nn.leaky_relu(h, 0.2)
    return DOutput(_FastConvD(1, (7, 7), padding='VALID', name='Conv_2')(h).reshape(-1))
