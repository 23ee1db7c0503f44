"""Projection-discriminator cGAN: ResNet G with class-conditional BatchNorm, ResNet D with
spectral normalisation and a projection head.

Sources:
  - Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018: the conditional logit
    D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩, where φ is D's feature map after global sum pooling,
    ψ a linear layer and embed a learned class embedding; G conditioned by class-conditional
    BatchNorm (per-class γ and β after a BatchNorm without its own affine).
  - Miyato et al., "Spectral Normalization for GANs", ICLR 2018: every weight of D divided by
    its largest singular value, estimated by one power iteration per training forward pass;
    the CIFAR-10 ResNets of its appendix (G: linear to 4×4, three up-blocks, BN-ReLU-conv3×3
    -tanh; D: an "optimised" first down-block, a down-block, two plain blocks, ReLU, global sum
    pooling). Adapted to 28×28 by starting G at 7×7 with two up-blocks (see `Generator`).
  - Brock et al., "Large Scale GAN Training" (BigGAN), ICLR 2019: γ initialised to 1, β to 0
    for the conditional BatchNorm, and the EMA of G used for sampling (steps.py / state.py).

Blocks (pre-activation, as in the papers):
  G block: cBN -> ReLU -> up ×2 (nearest) -> conv3×3 -> cBN -> ReLU -> conv3×3, plus a
           shortcut up ×2 -> conv1×1.
  D block: ReLU -> conv3×3 -> ReLU -> conv3×3 [-> avg-pool 2×2], plus a shortcut conv1×1
           [-> avg-pool] when the width or size changes; the first block skips its first ReLU
           and pools the shortcut before its conv1×1 (the papers' "optimised" block).
Spectral normalisation is `flax.linen.SpectralNorm`: its power-iteration vector `u` and the
estimate `sigma` live in the 'batch_stats' collection, so the training state carries them
(checkpointed, identical on every device since they only depend on the replicated weights),
updated in training mode and frozen in inference mode. Kernels: Glorot-uniform (the
chainer code of both papers), biases zero.
"""

import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgan_jax.errors import UserError
from cgan_jax.models import layers
from cgan_jax.models.common import (
    ConditionalBatchNorm, DOutput, EmbedAsDense, batch_norm, spectral_normed)

_init = nn.initializers.xavier_uniform()
# The tap-wise kernel gradient of models/layers.py: XLA:CPU runs the kernel gradient of a 3×3
# stride-1 conv off its fast path (docs/perf_notes.md); XLA's own elsewhere ('auto').
_Conv = functools.partial(layers.FastConv, kernel_init=_init)


def _up(x_BHWC: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x_BHWC, 2, axis=1), 2, axis=2)


def _down(x_BHWC: jax.Array) -> jax.Array:
  return nn.avg_pool(x_BHWC, (2, 2), strides=(2, 2))


class GBlock(nn.Module):
  width: int
  num_classes: int
  conditional: bool
  axis_name: Optional[str] = None

  def _norm(self, name):
    if self.conditional:
      return lambda h, y, train: ConditionalBatchNorm(self.num_classes, self.axis_name,
                                                      name=name)(h, y, train)
    return lambda h, y, train: batch_norm(train, self.axis_name)(h)

  @nn.compact
  def __call__(self, x_BHWC, y_B, train: bool):
    h = nn.relu(self._norm('cbn1')(x_BHWC, y_B, train))
    h = _Conv(self.width, (3, 3), name='conv1')(_up(h))
    h = nn.relu(self._norm('cbn2')(h, y_B, train))
    h = _Conv(self.width, (3, 3), name='conv2')(h)
    return h + _Conv(self.width, (1, 1), name='shortcut')(_up(x_BHWC))


def generator_layout(side: int) -> tuple[int, int]:
  """(bottom, up-blocks) with bottom · 2^blocks = side: halve while even and above 4 (28: 7
  and two blocks; 32, the papers' CIFAR-10 G: 4 and three; 64: 4 and four)."""
  if side < 4:
    raise UserError(f'model \'sngan\' needs images of at least 4x4, got side {side}')
  bottom, blocks = side, 0
  while bottom % 2 == 0 and bottom > 4:
    bottom, blocks = bottom // 2, blocks + 1
  return bottom, blocks


class Generator(nn.Module):
  """(z_BZ, y_B) -> (B, S, S, C) in [-1, 1], S = bottom · 2^len(widths): z -> linear ->
  bottom×bottom×widths[0] -> one up-block per width -> BN -> ReLU -> conv3×3 C -> tanh.
  28×28: bottom 7, two blocks; 32×32 (the papers' CIFAR-10 G): bottom 4, three blocks."""
  num_classes: int
  widths: Sequence[int] = (128, 128)
  bottom: int = 7
  channels: int = 1
  conditional: bool = True
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, z_BZ: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    b = self.bottom
    h = nn.Dense(b * b * self.widths[0], kernel_init=_init, name='linear')(z_BZ)
    h = h.reshape(h.shape[0], b, b, self.widths[0])
    for i, width in enumerate(self.widths):
      h = GBlock(width, self.num_classes, self.conditional, self.axis_name, name=f'block{i}')(
          h, y_B, train)
    h = nn.relu(batch_norm(train, self.axis_name)(h))
    return jnp.tanh(_Conv(self.channels, (3, 3), name='out')(h))


class DBlock(nn.Module):
  width: int
  down: bool
  first: bool = False
  spectral_norm: bool = True

  @nn.compact
  def __call__(self, x_BHWC, train: bool):
    sn = lambda size, x, name: spectral_normed(_Conv(self.width, size, name=name),
                                               self.spectral_norm)(x, update_stats=train)
    h = x_BHWC if self.first else nn.relu(x_BHWC)
    h = sn((3, 3), h, 'conv1')
    h = sn((3, 3), nn.relu(h), 'conv2')
    if self.down:
      h = _down(h)
    shortcut = x_BHWC
    if self.first:  # the papers' optimised block: pool, then conv1×1
      shortcut = sn((1, 1), _down(shortcut), 'shortcut')
    elif self.down or x_BHWC.shape[-1] != self.width:
      shortcut = sn((1, 1), shortcut, 'shortcut')
      shortcut = _down(shortcut) if self.down else shortcut
    return h + shortcut


class ProjectionDiscriminator(nn.Module):
  """(x_BHWC, y_B) -> DOutput(logits (B,)): φ(x) = sum over H, W of ReLU(blocks(x)),
  logit = ψ(φ) + ⟨embed(y), φ⟩ (the projection; left out when not conditional). Every
  layer spectrally normalised (unless `spectral_norm` is False: an ablation). `downs[i]`: block
  i halves the side."""
  num_classes: int
  widths: Sequence[int] = (128, 128, 128, 128)
  downs: Sequence[bool] = (True, True, False, False)
  conditional: bool = True
  spectral_norm: bool = True

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    h = x_BHWC
    for i, (width, down) in enumerate(zip(self.widths, self.downs)):
      h = DBlock(width, down, first=i == 0, spectral_norm=self.spectral_norm,
                 name=f'block{i}')(h, train)
    phi_BF = jnp.sum(nn.relu(h), axis=(1, 2))
    self.sow('intermediates', 'phi', phi_BF)  # read by the tests (mutable=['intermediates'])
    logits = spectral_normed(nn.Dense(1, kernel_init=_init, name='psi'), self.spectral_norm)(
        phi_BF, update_stats=train)[:, 0]
    if self.conditional:
      # SN of the embedding, as the projection paper's code does (SNEmbedID).
      embed = spectral_normed(EmbedAsDense(self.num_classes, phi_BF.shape[-1], name='embed'),
                              self.spectral_norm)
      logits = logits + jnp.sum(embed(y_B, update_stats=train) * phi_BF, axis=-1)
    return DOutput(logits)
