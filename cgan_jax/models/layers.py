"""Drop-in replacements for `nn.Conv` / `nn.ConvTranspose(padding='SAME')` with a fast backward pass.

Same parameters as the Flax modules ('kernel' (kh, kw, in, out), 'bias' (out,), same
initialisers), so checkpoints are interchangeable, and the same function: the forward pass
*is* XLA's convolution (bit-identical outputs); only how some derivatives are computed
changes (`jax.custom_vjp`), and those agree with XLA's to fp rounding
(tests/test_speed_paths.py). docs/perf_notes.md has the measurements behind every choice.

Why: XLA:CPU runs the convolutions of a forward pass on a fast path, but it lowers the
gradient of a convolution's kernel as another convolution whose "window" is the whole
output map (and, for a strided transposed convolution, a window-dilated one). XLA:CPU runs
those far off its fast path: at batch 64 the kernel gradient of the 5x5 7x7 -> 14x14
transposed conv of the 28x28 DCGAN generator took 1.8 s against 57 ms for its forward pass,
and a 3x3 stride-1 conv at 28x28 (ACGAN) 1.1 s against 93 ms. Written out, a kernel
gradient is k*k independent matrix products, one per kernel tap,

    dK[i, j] = sum_{b, h, w} x_tap(i, j)[b, h, w, :]^T  g[b, h, w, :]     (in x out),

where x_tap(i, j) is the (padded, strided) input window that tap (i, j) sees. Those are plain
dots, which XLA:CPU runs at full speed (`conv_kernel_grad`, `conv_transpose_kernel_grad`);
for a strided transposed conv they also skip the zeros of the dilated input exactly.

Second order (WGAN-GP's gradient penalty differentiates the critic's input gradient again):
custom_vjp functions can be differentiated again in reverse mode when their bwd is made of
differentiable JAX ops, which it is here. `conv`'s input gradient is itself a custom_vjp
(`_conv_input_grad`) so that the kernel gradient *of the input gradient*, which XLA would
derive as a window-dilated convolution (6.1 s vs 1.2 s for the WGAN-GP critic's gradient),
is computed as what it equals: the convolution's ordinary kernel gradient.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Initializer = Callable[..., jax.Array]
Padding = str | Sequence[tuple[int, int]]
_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _tap_dot(x_tap: jax.Array, g: jax.Array) -> jax.Array:
  """(B, H, W, I), (B, H, W, O) -> (I, O): one kernel tap's gradient as a single matmul."""
  return jnp.einsum('bhwi,bhwo->io', x_tap, g)


# ---------------------------------------------------------------------------------------------
# Convolution (nn.Conv): stride s, any padding, no dilation.

def _explicit_padding(x_shape, kernel_size, strides, padding: Padding):
  if isinstance(padding, str):
    return lax.padtype_to_pads(x_shape[1:3], kernel_size, strides, padding)
  return [tuple(p) for p in padding]


def conv_kernel_grad(x_BHWC: jax.Array, g_BHWO: jax.Array, kernel_size: Sequence[int],
                     strides: Sequence[int], padding: Padding) -> jax.Array:
  """d/dK of <g, conv(x, K)> for conv = lax.conv_general_dilated(x, K, strides, padding).

  Tap (i, j) of the kernel multiplies x_pad[b, s*h + i, s*w + j] into y[b, h, w]; its
  gradient is the dot of that strided slice of x_pad with g. Returns (kh, kw, I, O).
  """
  (kh, kw), (sh, sw) = kernel_size, strides
  (_, ho, wo, _) = g_BHWO.shape
  pads = _explicit_padding(x_BHWC.shape, kernel_size, strides, padding)
  x_pad = lax.pad(x_BHWC, jnp.zeros((), x_BHWC.dtype),
                  ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
  b, _, _, c = x_pad.shape
  taps = [[_tap_dot(lax.slice(x_pad, (0, i, j, 0), (b, i + sh * (ho - 1) + 1,
                                                   j + sw * (wo - 1) + 1, c), (1, sh, sw, 1)),
                    g_BHWO)
           for j in range(kw)] for i in range(kh)]
  return jnp.stack([jnp.stack(row) for row in taps])


def _xla_conv(x_BHWC, kernel_HWIO, strides, padding):
  return lax.conv_general_dilated(x_BHWC, kernel_HWIO, strides, padding,
                                  dimension_numbers=_DIMS)


def _like_primal(ct: jax.Array, primal: jax.Array) -> jax.Array:
  """Sum a cotangent over the mesh axes along which it varies but its primal does not.

  Under `jax.shard_map` a replicated kernel meets per-device data, and autodiff sums its
  gradient over devices (the transpose of the implicit broadcast). XLA's own gradients do
  that by themselves; a gradient written out by hand (the tap-wise dots) must do it too.
  """
  extra = _varying_axes(ct) - _varying_axes(primal)
  return lax.psum(ct, tuple(sorted(extra))) if extra else ct


def _varying_axes(a: jax.Array) -> frozenset:
  """The shard_map mesh axes along which `a` varies (empty outside shard_map)."""
  aval = jax.typeof(a)
  manual = getattr(aval, 'manual_axis_type', None)   # jax 0.10
  return frozenset(manual.varying if manual is not None else getattr(aval, 'vma', ()))


KERNEL_GRADS = ('auto', 'taps', 'xla')


def on_cpu_only(cpu_rule: Callable, xla_rule: Callable, mode: str, *args):
  """`cpu_rule(*args)` where it helps, else XLA's own derivative `xla_rule(*args)`.

  mode 'taps' / 'xla' force one rule on every backend; 'auto' stages both out with
  `lax.platform_dependent`, so the choice is made when the step is lowered for its
  platform: the tap-wise rule on XLA:CPU, XLA's own (cuDNN's backward kernels on a GPU,
  the TPU compiler's) everywhere else. The parameters are the same in every mode.
  """
  if mode == 'taps':
    return cpu_rule(*args)
  if mode == 'xla':
    return xla_rule(*args)
  return lax.platform_dependent(*args, cpu=cpu_rule, default=xla_rule)


def _kernel_grad(x_BHWC, g_BHWO, kernel_HWIO, strides, padding, mode: str):
  """conv's kernel gradient: tap-wise dots (on CPU, see `on_cpu_only`) or XLA's own."""
  def taps(x, g, k):
    return _like_primal(conv_kernel_grad(x, g, k.shape[:2], strides, padding), k)

  def xla(x, g, k):
    return jax.vjp(lambda k: _xla_conv(x, k, strides, padding), k)[1](g)[0]

  return on_cpu_only(taps, xla, mode, x_BHWC, g_BHWO, kernel_HWIO)


# The input gradient of `conv`, as its own custom_vjp. XLA computes its value (fast). Its
# derivatives are needed only when a gradient penalty differentiates it again; XLA would
# derive the kernel one as a window-dilated convolution (slow), but since
# <c, dx(g, K)> = <conv(c, K), g>, it is just conv's kernel gradient at input c, cotangent g
# (and the derivative w.r.t. g is conv(c, K)). x is an argument only for its shape (the value
# does not depend on it: zero derivative).
@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _conv_input_grad(x_BHWC, g_BHWO, kernel_HWIO, strides, padding, mode):
  return jax.vjp(lambda x: _xla_conv(x, kernel_HWIO, strides, padding), x_BHWC)[1](g_BHWO)[0]


def _conv_input_grad_fwd(x_BHWC, g_BHWO, kernel_HWIO, strides, padding, mode):
  return (_conv_input_grad(x_BHWC, g_BHWO, kernel_HWIO, strides, padding, mode),
          (x_BHWC, g_BHWO, kernel_HWIO))


def _conv_input_grad_bwd(strides, padding, mode, residuals, c_BHWC):
  x_BHWC, g_BHWO, kernel_HWIO = residuals
  return (jnp.zeros_like(x_BHWC),
          conv(c_BHWC, kernel_HWIO, strides, padding, mode),
          _kernel_grad(c_BHWC, g_BHWO, kernel_HWIO, strides, padding, mode))


_conv_input_grad.defvjp(_conv_input_grad_fwd, _conv_input_grad_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv(x_BHWC: jax.Array, kernel_HWIO: jax.Array, strides: tuple[int, ...],
         padding: Padding, mode: str = 'auto') -> jax.Array:
  """lax.conv_general_dilated (NHWC) with XLA's forward and input gradient; the kernel gradient
  is tap-wise dots or XLA's by `mode` (see `on_cpu_only`); second derivatives through the
  input gradient are conv / kernel gradients again (see `_conv_input_grad`)."""
  return _xla_conv(x_BHWC, kernel_HWIO, strides, padding)


def _conv_fwd(x_BHWC, kernel_HWIO, strides, padding, mode):
  return _xla_conv(x_BHWC, kernel_HWIO, strides, padding), (x_BHWC, kernel_HWIO)


def _conv_bwd(strides, padding, mode, residuals, g_BHWO):
  x_BHWC, kernel_HWIO = residuals
  return (_conv_input_grad(x_BHWC, g_BHWO, kernel_HWIO, strides, padding, mode),
          _kernel_grad(x_BHWC, g_BHWO, kernel_HWIO, strides, padding, mode))


conv.defvjp(_conv_fwd, _conv_bwd)


# ---------------------------------------------------------------------------------------------
# Transposed convolution (nn.ConvTranspose, padding='SAME', transpose_kernel=False).

def _transpose_pad_before(k: int, s: int) -> int:
  """Leading 'SAME' padding of `lax.conv_transpose` (mirrors its `_conv_transpose_padding`)."""
  return k - 1 if s > k - 1 else -(-(k + s - 2) // 2)


def _tap_offsets(k: int, s: int) -> list[tuple[int, int]]:
  """[(d, r)] per kernel tap t: tap t carries input row q + d to output row s*q + r.

  lax.conv_transpose is a stride-1 conv over the input dilated by s (s - 1 zeros between
  rows) and padded by `_transpose_pad_before` = p: output row o reads dilated row o + t - p,
  which is input row (o + t - p) / s when that is an integer. Writing o = s*q + r, the one
  phase r that hits real rows is r = (p - t) mod s, and then d = (r + t - p) / s.
  """
  p = _transpose_pad_before(k, s)
  return [(((p - t) % s + t - p) // s, (p - t) % s) for t in range(k)]


def conv_transpose_kernel_grad(x_BHWC: jax.Array, g_BHWO: jax.Array,
                               kernel_size: Sequence[int], strides: Sequence[int]) -> jax.Array:
  """d/dK of <g, lax.conv_transpose(x, K, strides, 'SAME')>, as one dot per kernel tap.

  Tap (i, j) connects input pixel (q + d_i, p + d_j) to output pixel (s q + r_i, s p + r_j)
  for every (q, p): its gradient is the dot of x shifted by (d_i, d_j) (zero-filled) with
  output phase (r_i, r_j) of g. Only real (non-dilation-zero) rows are multiplied.
  """
  (_, h, w, _), (sh, sw) = x_BHWC.shape, strides
  rows, cols = _tap_offsets(kernel_size[0], sh), _tap_offsets(kernel_size[1], sw)
  lo_h, hi_h = -min(d for d, _ in rows), max(d for d, _ in rows)
  lo_w, hi_w = -min(d for d, _ in cols), max(d for d, _ in cols)
  x_pad = jnp.pad(x_BHWC, ((0, 0), (max(lo_h, 0), max(hi_h, 0)), (max(lo_w, 0), max(hi_w, 0)),
                           (0, 0)))
  oh, ow = max(lo_h, 0), max(lo_w, 0)
  taps = [[_tap_dot(x_pad[:, oh + di:oh + di + h, ow + dj:ow + dj + w, :],
                    g_BHWO[:, ri::sh, rj::sw, :])
           for dj, rj in cols] for di, ri in rows]
  return jnp.stack([jnp.stack(row) for row in taps])


def _xla_conv_transpose(x_BHWC, kernel_HWIO, strides):
  return lax.conv_transpose(x_BHWC, kernel_HWIO, strides, 'SAME', dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_transpose(x_BHWC: jax.Array, kernel_HWIO: jax.Array,
                   strides: tuple[int, ...], mode: str = 'auto') -> jax.Array:
  """'SAME' transposed convolution: XLA's forward and input gradient; the kernel gradient is
  tap-wise dots on CPU (`mode`, see `on_cpu_only`), XLA's own elsewhere."""
  return _xla_conv_transpose(x_BHWC, kernel_HWIO, strides)


def _conv_transpose_fwd(x_BHWC, kernel_HWIO, strides, mode):
  return _xla_conv_transpose(x_BHWC, kernel_HWIO, strides), (x_BHWC, kernel_HWIO)


def _conv_transpose_bwd(strides, mode, residuals, g):
  x_BHWC, kernel_HWIO = residuals
  _, x_vjp = jax.vjp(lambda x: _xla_conv_transpose(x, kernel_HWIO, strides), x_BHWC)

  def taps(x, g, k):
    return _like_primal(conv_transpose_kernel_grad(x, g, k.shape[:2], strides), k)

  def xla(x, g, k):
    return jax.vjp(lambda k: _xla_conv_transpose(x, k, strides), k)[1](g)[0]

  return x_vjp(g)[0], on_cpu_only(taps, xla, mode, x_BHWC, g, kernel_HWIO)


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


# ---------------------------------------------------------------------------------------------
# Flax modules.

def _check_mode(mode: str) -> None:
  if mode not in KERNEL_GRADS:
    raise ValueError(f'kernel_grad must be one of {KERNEL_GRADS}, not {mode!r}')


class FastConvTranspose(nn.Module):
  """Drop-in for `nn.ConvTranspose(features, kernel_size, strides, padding='SAME')`.

  2-D, 'SAME' padding, no kernel dilation, transpose_kernel=False (Flax's defaults) only.
  kernel_grad: 'auto' (tap-wise dots on CPU, XLA's own elsewhere), 'taps' or 'xla' (forced).
  dtype: the computation's dtype (None: the input's); parameters stay `param_dtype`.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: str = 'SAME'
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  param_dtype: Any = jnp.float32
  dtype: Any = None
  kernel_grad: str = 'auto'

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    _check_mode(self.kernel_grad)
    if self.padding != 'SAME' or len(self.kernel_size) != 2:
      raise ValueError('FastConvTranspose supports 2-D kernels and padding="SAME" only')
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, x_BHWC.shape[-1], self.features), self.param_dtype)
    dtype = self.dtype or x_BHWC.dtype
    y = conv_transpose(x_BHWC.astype(dtype), kernel.astype(dtype), tuple(self.strides),
                       self.kernel_grad)
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), self.param_dtype).astype(dtype)
    return y


class FastConv(nn.Module):
  """Drop-in for `nn.Conv(features, kernel_size, strides, padding)` on NHWC images.

  2-D, padding 'SAME' / 'VALID' / explicit pairs, no dilation, feature_group_count 1 only.
  kernel_grad: 'auto' (tap-wise dots on CPU, XLA's own elsewhere), 'taps', or 'xla' (XLA's
  own kernel gradient everywhere, which is fast on CPU for some shapes too; the layer then
  differs from nn.Conv only in its second derivatives). dtype: as FastConvTranspose's.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Padding = 'SAME'
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  param_dtype: Any = jnp.float32
  dtype: Any = None
  kernel_grad: str = 'auto'

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    _check_mode(self.kernel_grad)
    if len(self.kernel_size) != 2 or x_BHWC.ndim != 4:
      raise ValueError('FastConv supports 2-D kernels on (B, H, W, C) inputs only')
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, x_BHWC.shape[-1], self.features), self.param_dtype)
    padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
    dtype = self.dtype or x_BHWC.dtype
    y = conv(x_BHWC.astype(dtype), kernel.astype(dtype), tuple(self.strides), padding,
             self.kernel_grad)
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), self.param_dtype).astype(dtype)
    return y
