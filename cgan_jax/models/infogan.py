"""The infoGAN-style conv G/D of the classic Fashion-MNIST CGAN recipe (seed 000).

G: concat(z, onehot(y)) -> FC 1024 -> BN -> ReLU -> FC 7*7*128 -> BN -> ReLU
   -> deconv 64 (4x4, s2) -> BN -> ReLU -> deconv 1 (4x4, s2) -> sigmoid.
D: concat(x, y tiled to HxWx10) -> conv 64 (4x4, s2) -> lReLU(0.2) -> conv 128 (4x4, s2)
   -> BN -> lReLU -> FC 1024 -> BN -> lReLU -> FC 1 (logit).
With `conditional=False` the label is ignored: the "GAN" row of the same comparison.

With `projection=True`, the same nets conditioned the way that superseded concatenation
(family option `conditioning='projection'`): G's three BatchNorms are class-conditional
(per-class γ, β; no one-hot in its input), and D is the projection discriminator of Miyato &
Koyama (2018) on these layers: no label maps, every layer spectrally normalised (Miyato et al.
2018) in place of D's BatchNorms, φ(x) the 1024-feature after the last lReLU, and
logit = ψ(φ) + ⟨embed(y), φ⟩. It isolates the conditioning method from the architecture:
the seed CGAN's nets, layer for layer, with only the conditioning changed.

With `minibatch_std=G` (family option, 0: off), D appends the minibatch standard deviation
of groups of G examples (Karras et al. 2018) as a 129th channel of its 7x7x128 features,
before the FC 1024 (models.common.minibatch_stddev).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgan_jax.models.common import (  # noqa: F401
    ConditionalBatchNorm, DOutput, EmbedAsDense, label_maps, minibatch_stddev, spectral_normed,
    uniform_latent)
from cgan_jax.models import layers

# The reference TF code: N(0, 0.02) kernels, BatchNorm decay 0.9, epsilon 1e-5.
_init = nn.initializers.normal(0.02)
_Dense = functools.partial(nn.Dense, kernel_init=_init)
_Conv = functools.partial(nn.Conv, kernel_init=_init, padding='SAME')
_ConvT = functools.partial(nn.ConvTranspose, kernel_init=_init, padding='SAME')
# Same parameters and function, with a tap-wise kernel gradient: several times faster fwd+bwd
# on CPU for the 7x7 -> 14x14 layer, but not for the 1-channel output layer, which keeps
# nn.ConvTranspose (docs/perf_notes.md).
_FastConvT = functools.partial(layers.FastConvTranspose, kernel_init=_init, padding='SAME')


def _bn(train: bool, axis_name: str | None) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      axis_name=axis_name if train else None)


class Generator(nn.Module):
  """(z_BZ, y_B) -> images in [0, 1], (B, 28, 28, 1)."""
  num_classes: int = 10
  conditional: bool = True
  axis_name: str | None = None
  projection: bool = False  # class-conditional BatchNorms instead of the one-hot input

  @nn.compact
  def __call__(self, z_BZ: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    cbn = self.conditional and self.projection
    if cbn:
      norm = lambda h: ConditionalBatchNorm(self.num_classes, self.axis_name)(h, y_B, train)
    else:
      norm = lambda h: _bn(train, self.axis_name)(h)
    h = z_BZ
    if self.conditional and not cbn:
      h = jnp.concatenate([h, jax.nn.one_hot(y_B, self.num_classes, dtype=h.dtype)], -1)
    h = nn.relu(norm(_Dense(1024)(h)))
    h = nn.relu(norm(_Dense(7 * 7 * 128)(h)))
    h = h.reshape(h.shape[0], 7, 7, 128)
    # Explicit names: the parameter names of checkpoints written with nn.ConvTranspose.
    h = _FastConvT(64, (4, 4), strides=(2, 2), name='ConvTranspose_0')(h)
    h = nn.relu(norm(h))
    return nn.sigmoid(_ConvT(1, (4, 4), strides=(2, 2), name='ConvTranspose_1')(h))


class Discriminator(nn.Module):
  """(x_BHWC in [0, 1], y_B) -> DOutput with real/fake logits (B,)."""
  num_classes: int = 10
  conditional: bool = True
  axis_name: str | None = None
  projection: bool = False  # the spectrally normalised projection D on the same layers
  minibatch_std: int = 0  # > 0: the minibatch stddev of groups of this size as a channel

  def _mbstd(self, h_BHWC: jax.Array, train: bool) -> jax.Array:
    if not self.minibatch_std:
      return h_BHWC
    return minibatch_stddev(h_BHWC, self.minibatch_std, train)

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    if self.projection:
      return self._projection(x_BHWC, y_B, train)
    h = label_maps(x_BHWC, y_B, self.num_classes) if self.conditional else x_BHWC
    h = nn.leaky_relu(_Conv(64, (4, 4), strides=(2, 2))(h), 0.2)
    h = nn.leaky_relu(_bn(train, self.axis_name)(_Conv(128, (4, 4), strides=(2, 2))(h)), 0.2)
    h = self._mbstd(h, train).reshape(h.shape[0], -1)
    h = nn.leaky_relu(_bn(train, self.axis_name)(_Dense(1024)(h)), 0.2)
    return DOutput(_Dense(1)(h)[:, 0])

  def _projection(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    """Conv 64 -> lReLU -> conv 128 -> lReLU -> FC 1024 -> lReLU = φ; ψ(φ) + ⟨embed(y), φ⟩;
    every layer spectrally normalised, no BatchNorm (names as the plain D's layers)."""
    sn = lambda layer, h: spectral_normed(layer)(h, update_stats=train)
    # The layers compute in the input's dtype: SpectralNorm hands them a float32 kernel (its
    # power-iteration state is float32), which would otherwise promote a bfloat16 run.
    dt = x_BHWC.dtype
    h = nn.leaky_relu(sn(_Conv(64, (4, 4), strides=(2, 2), dtype=dt, name='Conv_0'), x_BHWC), 0.2)
    h = nn.leaky_relu(sn(_Conv(128, (4, 4), strides=(2, 2), dtype=dt, name='Conv_1'), h), 0.2)
    h = self._mbstd(h, train)
    phi_BF = nn.leaky_relu(sn(_Dense(1024, dtype=dt, name='Dense_0'),
                              h.reshape(h.shape[0], -1)), 0.2)
    self.sow('intermediates', 'phi', phi_BF)  # read by the tests (mutable=['intermediates'])
    logits = sn(_Dense(1, dtype=dt, name='psi'), phi_BF)[:, 0]
    if self.conditional:
      embed = sn(EmbedAsDense(self.num_classes, phi_BF.shape[-1], embedding_init=_init,
                              name='embed'), y_B)
      logits = logits + jnp.sum(embed * phi_BF, axis=-1)
    return DOutput(logits)
