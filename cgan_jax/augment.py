"""Differentiable augmentation of D's inputs (DiffAugment; Zhao et al., "Differentiable
Augmentation for Data-Efficient GAN Training", NeurIPS 2020).

The same random transformation family T is applied to every image D sees, real and fake, in
D's update and in G's (L_G = loss.g(D(T(G(z))))); every operation is differentiable in the
image, so G's gradient flows through T. The three policies of the paper's code:
  color        brightness x + (u - 0.5); saturation (x - mean_C)·2u + mean_C; contrast
               (x - mean_HWC)·(u + 0.5) + mean_HWC; u ~ U(0, 1), one per image and op.
  translation  shift by up to 1/8 of the side (rounded) in each axis, zero padding.
  cutout       zero a square of half the side, its centre uniform over the image.
Draws are keyed per image (`keys_B`, one key per global example index in the step), so the
same key gives the same transformation and the split of the batch over devices does not
matter.
"""

import jax
import jax.numpy as jnp

POLICIES = ('color', 'translation', 'cutout')


def parse_policy(text: str) -> tuple[str, ...]:
  """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' -> () (off).
  An unknown name raises ValueError naming the known ones."""
  names = tuple(p.strip() for p in str(text).split(',') if p.strip())
  unknown = [p for p in names if p not in POLICIES]
  if unknown:
    raise ValueError(f'unknown augmentation {", ".join(unknown)}; known: {", ".join(POLICIES)}')
  if len(set(names)) != len(names):
    raise ValueError(f'augmentation {text!r} names a policy twice')
  return names


def _color(x_HWC: jax.Array, key: jax.Array) -> jax.Array:
  u = jax.random.uniform(key, (3,), x_HWC.dtype)
  x = x_HWC + (u[0] - 0.5)
  mean_c = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - mean_c) * (2.0 * u[1]) + mean_c
  mean = jnp.mean(x)
  return (x - mean) * (u[2] + 0.5) + mean


def _translation(x_HWC: jax.Array, key: jax.Array, ratio: float = 0.125) -> jax.Array:
  h, w, _ = x_HWC.shape
  sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (), -sh, sh + 1)
  dx = jax.random.randint(kx, (), -sw, sw + 1)
  padded = jnp.pad(x_HWC, ((sh, sh), (sw, sw), (0, 0)))
  # Output pixel (i, j) reads input pixel (i - dy, j - dx): the image moves by (dy, dx).
  return jax.lax.dynamic_slice(padded, (sh - dy, sw - dx, 0), x_HWC.shape)


def _cutout(x_HWC: jax.Array, key: jax.Array, ratio: float = 0.5) -> jax.Array:
  h, w, _ = x_HWC.shape
  ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  cy = jax.random.randint(ky, (), 0, h + (1 - ch % 2))
  cx = jax.random.randint(kx, (), 0, w + (1 - cw % 2))
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  inside = ((rows >= cy - ch // 2) & (rows < cy - ch // 2 + ch)
            & (cols >= cx - cw // 2) & (cols < cx - cw // 2 + cw))
  return x_HWC * (~inside)[:, :, None].astype(x_HWC.dtype)


_OPS = {'color': _color, 'translation': _translation, 'cutout': _cutout}


def augment(x_BHWC: jax.Array, keys_B: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """T(x): the policy's operations in order, each image with its own key (policy () : x)."""
  if not policy:
    return x_BHWC

  def one(x_HWC, key):
    for i, name in enumerate(policy):
      x_HWC = _OPS[name](x_HWC, jax.random.fold_in(key, i))
    return x_HWC

  return jax.vmap(one)(x_BHWC, keys_B)
