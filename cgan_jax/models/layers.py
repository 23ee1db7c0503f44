"""`SubPixelConvTranspose`: `flax.linen.ConvTranspose(padding='SAME')` with a fast backward pass.

Same parameters as nn.ConvTranspose ('kernel' (kh, kw, in, out), 'bias' (out,), same
initialisers), so checkpoints are interchangeable, and the same function.

Why: XLA lowers a stride-s transposed convolution as a convolution over a zero-dilated
input, and the gradient of its kernel as a window-dilated convolution, which XLA:CPU runs
far off its fast path (the 7x7 -> 14x14 layer of the CGAN generator: ~15 ms forward,
~250 ms for the kernel gradient at batch 64). The sub-pixel (phase-decomposed) form of the
same layer is a stride-1 convolution whose s*s output channel groups are the output phases
(r_h, r_w) ("pixel shuffle"), each using only the kernel taps that reach that phase; its
kernel gradient is a stride-1 convolution. Measured on CPU, XLA's own forward pass and input
gradient are already the fastest, so the layer keeps those and takes only the kernel
gradient from the sub-pixel form (`jax.custom_vjp`). The forward values are therefore
bit-identical to nn.ConvTranspose; gradients agree to fp rounding (tests/test_speed_paths.py).
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Initializer = Callable[..., jax.Array]
_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _transpose_pad_before(k: int, s: int) -> int:
  """Leading 'SAME' padding of `lax.conv_transpose` (mirrors its `_conv_transpose_padding`)."""
  return k - 1 if s > k - 1 else -(-(k + s - 2) // 2)


def _phase_table(k: int, s: int) -> tuple[np.ndarray, int]:
  """(taps, lo): taps[a, r] is the kernel tap that carries input row q + lo + a to output
  row s*q + r (-1: none)."""
  pad = _transpose_pad_before(k, s)
  hits = [((r + t - pad) // s, r, t) for r in range(s) for t in range(k) if (r + t - pad) % s == 0]
  lo, hi = min(d for d, _, _ in hits), max(d for d, _, _ in hits)
  taps = -np.ones((hi - lo + 1, s), np.int32)
  for d, r, t in hits:
    taps[d - lo, r] = t
  return taps, lo


def subpixel_kernel(kernel_HWIO: jax.Array, strides: Sequence[int]
                    ) -> tuple[jax.Array, tuple[tuple[int, int], tuple[int, int]]]:
  """Transposed-conv kernel -> (stride-1 kernel (A, B, I, sh*sw*O), input (lo, hi) padding)."""
  (_, _, cin, cout), (sh, sw) = kernel_HWIO.shape, strides
  (taps_h, lo_h), (taps_w, lo_w) = _phase_table(kernel_HWIO.shape[0], sh), _phase_table(
      kernel_HWIO.shape[1], sw)
  a, b = len(taps_h), len(taps_w)
  gathered = kernel_HWIO[np.maximum(taps_h, 0)[:, :, None, None],
                         np.maximum(taps_w, 0)[None, None, :, :]]      # (A, sh, B, sw, I, O)
  valid = (taps_h >= 0)[:, :, None, None] & (taps_w >= 0)[None, None, :, :]
  gathered = jnp.where(valid[..., None, None], gathered, 0)
  k = gathered.transpose(0, 2, 4, 1, 3, 5).reshape(a, b, cin, sh * sw * cout)
  return k, ((-lo_h, lo_h + a - 1), (-lo_w, lo_w + b - 1))


def subpixel_conv_transpose(x_BHWC: jax.Array, kernel_HWIO: jax.Array,
                            strides: Sequence[int]) -> jax.Array:
  """lax.conv_transpose(x, kernel, strides, 'SAME') as one stride-1 conv + pixel shuffle."""
  (b, h, w, _), (sh, sw), f = x_BHWC.shape, strides, kernel_HWIO.shape[-1]
  k, (pad_h, pad_w) = subpixel_kernel(kernel_HWIO, strides)
  x_pad = lax.pad(x_BHWC, jnp.zeros((), x_BHWC.dtype),       # negative pads crop
                  ((0, 0, 0), (*pad_h, 0), (*pad_w, 0), (0, 0, 0)))
  y = lax.conv_general_dilated(x_pad, k.astype(x_BHWC.dtype), (1, 1), 'VALID',
                               dimension_numbers=_DIMS)          # (B, H, W, sh*sw*F)
  y = y.reshape(b, h, w, sh, sw, f).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, h * sh, w * sw, f)


def _xla_conv_transpose(x_BHWC, kernel_HWIO, strides):
  return lax.conv_transpose(x_BHWC, kernel_HWIO, strides, 'SAME', dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose(x_BHWC: jax.Array, kernel_HWIO: jax.Array,
                   strides: tuple[int, ...]) -> jax.Array:
  """'SAME' transposed convolution: XLA's forward and input gradient, sub-pixel kernel gradient."""
  return _xla_conv_transpose(x_BHWC, kernel_HWIO, strides)


def _fwd(x_BHWC, kernel_HWIO, strides):
  return _xla_conv_transpose(x_BHWC, kernel_HWIO, strides), (x_BHWC, kernel_HWIO)


def _bwd(strides, residuals, g):
  x_BHWC, kernel_HWIO = residuals
  _, x_vjp = jax.vjp(lambda x: _xla_conv_transpose(x, kernel_HWIO, strides), x_BHWC)
  _, k_vjp = jax.vjp(lambda k: subpixel_conv_transpose(x_BHWC, k, strides), kernel_HWIO)
  return x_vjp(g)[0], k_vjp(g)[0]


conv_transpose.defvjp(_fwd, _bwd)


class SubPixelConvTranspose(nn.Module):
  """Drop-in for `nn.ConvTranspose(features, kernel_size, strides, padding='SAME')`.

  2-D, 'SAME' padding, no kernel dilation, transpose_kernel=False (Flax's defaults) only.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: str = 'SAME'
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    if self.padding != 'SAME' or len(self.kernel_size) != 2:
      raise ValueError('SubPixelConvTranspose supports 2-D kernels and padding="SAME" only')
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, x_BHWC.shape[-1], self.features), self.param_dtype)
    y = conv_transpose(x_BHWC, kernel.astype(x_BHWC.dtype), tuple(self.strides))
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), self.param_dtype)
    return y
