"""Fully-connected GANs: the basic GAN, and two CGANs (label concatenated; label embedding ⊙).

mlp_gan          G: z(100) -> 256 -> 512 -> 784 tanh;  D: 784 -> 512 -> 256 -> 1 (LeakyReLU 0.2).
mlp_cgan_concat  G: z ‖ onehot(y) -> 128 ReLU -> 784 sigmoid;
                 D: x ‖ onehot(y) -> 128 ReLU -> 1   (the compact textbook CGAN, Xavier init).
mlp_cgan_embed   G: z(100) ⊙ Emb(10, 100)(y) -> 256 -> BN -> lReLU -> 512 -> BN -> lReLU -> 784 tanh
                    [-> BN: output_batch_norm, the seed 001 Keras model's last layer];
                 D: flatten(x) ⊙ Emb(10, 784)(y) -> 512 -> BN -> lReLU -> 256 -> BN -> lReLU -> 1.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgan_jax.models.common import DOutput, batch_norm, one_hot

Shape = tuple[int, int, int]


def _size(shape: Shape) -> int:
  return shape[0] * shape[1] * shape[2]


def _flat(x_BHWC: jax.Array) -> jax.Array:
  return x_BHWC.reshape(x_BHWC.shape[0], -1)


class GanGenerator(nn.Module):
  """z -> images in [-1, 1]; the label is ignored."""
  image_shape: Shape = (28, 28, 1)

  @nn.compact
  def __call__(self, z_BZ: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    h = nn.leaky_relu(nn.Dense(256)(z_BZ), 0.2)
    h = nn.leaky_relu(nn.Dense(512)(h), 0.2)
    h = jnp.tanh(nn.Dense(_size(self.image_shape))(h))
    return h.reshape(h.shape[0], *self.image_shape)


class GanDiscriminator(nn.Module):
  """images -> logits; the label is ignored."""

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    h = nn.leaky_relu(nn.Dense(512)(_flat(x_BHWC)), 0.2)
    h = nn.leaky_relu(nn.Dense(256)(h), 0.2)
    return DOutput(nn.Dense(1)(h)[:, 0])


_xavier = nn.initializers.xavier_normal()


class ConcatGenerator(nn.Module):
  """G(z ‖ onehot y): one hidden layer of 128, sigmoid images in [0, 1]."""
  num_classes: int = 10
  image_shape: Shape = (28, 28, 1)

  @nn.compact
  def __call__(self, z_BZ: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    h = jnp.concatenate([z_BZ, one_hot(y_B, self.num_classes, z_BZ.dtype)], -1)
    h = nn.relu(nn.Dense(128, kernel_init=_xavier)(h))
    h = nn.sigmoid(nn.Dense(_size(self.image_shape), kernel_init=_xavier)(h))
    return h.reshape(h.shape[0], *self.image_shape)


class ConcatDiscriminator(nn.Module):
  """D(x ‖ onehot y): one hidden layer of 128."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    h = jnp.concatenate([_flat(x_BHWC), one_hot(y_B, self.num_classes, x_BHWC.dtype)], -1)
    h = nn.relu(nn.Dense(128, kernel_init=_xavier)(h))
    return DOutput(nn.Dense(1, kernel_init=_xavier)(h)[:, 0])


class EmbedGenerator(nn.Module):
  """G(z ⊙ Emb(y)): images in [-1, 1], or with output_batch_norm (seed 001: Dense(784, tanh)
  then BatchNormalization, Keras's momentum 0.99 and epsilon 1e-3) unbounded."""
  num_classes: int = 10
  image_shape: Shape = (28, 28, 1)
  axis_name: str | None = None
  output_batch_norm: bool = False

  @nn.compact
  def __call__(self, z_BZ: jax.Array, y_B: jax.Array, train: bool) -> jax.Array:
    h = z_BZ * nn.Embed(self.num_classes, z_BZ.shape[-1])(y_B)
    h = nn.leaky_relu(batch_norm(train, self.axis_name)(nn.Dense(256)(h)), 0.2)
    h = nn.leaky_relu(batch_norm(train, self.axis_name)(nn.Dense(512)(h)), 0.2)
    x = jnp.tanh(nn.Dense(_size(self.image_shape))(h))
    if self.output_batch_norm:
      x = batch_norm(train, self.axis_name, 0.99, 1e-3)(x)
    return x.reshape(h.shape[0], *self.image_shape)


class EmbedDiscriminator(nn.Module):
  """D(flatten(x) ⊙ Emb(y))."""
  num_classes: int = 10
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, y_B: jax.Array, train: bool) -> DOutput:
    h = _flat(x_BHWC)
    h = h * nn.Embed(self.num_classes, h.shape[-1])(y_B)
    h = nn.leaky_relu(batch_norm(train, self.axis_name)(nn.Dense(512)(h)), 0.2)
    h = nn.leaky_relu(batch_norm(train, self.axis_name)(nn.Dense(256)(h)), 0.2)
    return DOutput(nn.Dense(1)(h)[:, 0])
