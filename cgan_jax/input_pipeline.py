"""Fashion-MNIST / MNIST loading and deterministic, per-process batching."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import re
import struct
import zlib
from typing import Any, Iterator, Mapping, Optional, Union

import numpy as np

from cgan_jax.errors import UserError

PathLike = Union[str, os.PathLike]
ENV_DATA_DIR = 'CGAN_JAX_DATA_DIR'
# Set (to anything but '' or '0') to forbid TFDS downloads whatever the config says
# (offline clusters; the test suite sets it so nothing can download while testing).
ENV_OFFLINE = 'CGAN_JAX_OFFLINE'
PIPELINES = ('tf.data', 'numpy')
_IDX_PREFIX = {'train': 'train', 'test': 't10k'}


class DataError(UserError):
  """A dataset could not be found, read, validated or batched."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static description of a supported dataset."""
  name: str
  num_classes: int = 10
  image_shape: tuple[int, int, int] = (28, 28, 1)
  idx_dirs: tuple[str, ...] = ()
  splits: Mapping[str, int] = dataclasses.field(
      default_factory=lambda: {'train': 60000, 'test': 10000}, hash=False)
  class_names: tuple[str, ...] = tuple(str(k) for k in range(10))
  # The files read from a local folder: 'idx' (MNIST's four IDX files) or 'cifar_bin' (the
  # "binary version" of CIFAR-10: data_batch_1..5.bin and test_batch.bin).
  file_format: str = 'idx'


DATASETS: dict[str, DatasetInfo] = {
    'fashion_mnist': DatasetInfo(
        'fashion_mnist', idx_dirs=('/usr/share/datasets/fashion-mnist',),
        class_names=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
                     'Sneaker', 'Bag', 'Ankle boot')),
    'mnist': DatasetInfo('mnist'),
    # Krizhevsky 2009; TFDS 'cifar10'. The standard conditional benchmark (32x32x3).
    'cifar10': DatasetInfo(
        'cifar10', image_shape=(32, 32, 3), splits={'train': 50000, 'test': 10000},
        class_names=('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                     'ship', 'truck'), file_format='cifar_bin'),
}
# CIFAR-10's binary version: records of 1 label byte + 3072 pixel bytes (1024 R, then G, B;
# rows of 32), 10,000 records a file.
_CIFAR_FILES = {'train': tuple(f'data_batch_{i}.bin' for i in range(1, 6)),
                'test': ('test_batch.bin',)}
_CIFAR_SUBDIR = 'cifar-10-batches-bin'  # the folder the official archive unpacks to
_CIFAR_RECORD = 1 + 32 * 32 * 3


def class_index(info: DatasetInfo, value) -> int:
  """A class given by index (7, '7') or by name ('Sneaker', 'ankle boot', 't-shirt'; case and
  punctuation are ignored), checked against the dataset; a UserError names the valid ones."""
  key = lambda name: re.sub(r'[^a-z0-9]+', '_', str(name).lower()).strip('_')
  names = [key(n) for n in info.class_names]
  text = str(value).strip()
  if not text.lstrip('-').isdigit():
    # The whole name, or its first words ('t-shirt', 'ankle'), when that picks one class.
    matches = [i for i, n in enumerate(names) if (n + '_').startswith(key(text) + '_')]
    if len(matches) != 1:
      raise UserError(f'unknown {info.name} class {text!r}; known: {", ".join(info.class_names)}')
    return matches[0]
  k = int(text)
  if not 0 <= k < info.num_classes:
    raise UserError(f'class {k} is out of range for {info.name} (0..{info.num_classes - 1})')
  return k


def canonical_name(name: str) -> str:
  """Maps a dataset name or alias ('fashion-mnist') to its TFDS name."""
  key = str(name).strip().lower().replace('-', '_')
  if key not in DATASETS:
    raise DataError(f'Unknown dataset {name!r}; known datasets: '
                    f'{", ".join(sorted(DATASETS))}.')
  return key


def read_idx(path: PathLike) -> np.ndarray:
  """Reads a (gzipped or raw) uint8 IDX file, validating header and size."""
  path = os.fspath(path)
  is_gzip = False
  try:
    with open(path, 'rb') as f:
      is_gzip = f.read(2) == b'\x1f\x8b'
      f.seek(0)
      if is_gzip:
        with gzip.GzipFile(fileobj=f) as g:
          data = g.read()
      else:
        data = f.read()
  except (EOFError, zlib.error, OSError) as e:
    what = 'corrupt gzip stream' if is_gzip else 'cannot read file'
    raise DataError(
        f'IDX file {path}: {what} ({type(e).__name__}: {e}).') from e
  if len(data) < 4 or data[:2] != b'\x00\x00':
    raise DataError(f'IDX file {path}: bad magic number {data[:4].hex()!r} '
                    '(expected 0000 followed by dtype and ndim bytes).')
  dtype_code, ndim = data[2], data[3]
  if dtype_code != 0x08:
    raise DataError(f'IDX file {path}: unsupported dtype code '
                    f'0x{dtype_code:02x} (only 0x08 = uint8 is supported).')
  if ndim not in (1, 3):
    raise DataError(f'IDX file {path}: unsupported number of dimensions {ndim} '
                    '(expected 1 for labels or 3 for images).')
  header = 4 + 4 * ndim
  if len(data) < header:
    raise DataError(f'IDX file {path}: header truncated ({len(data)} bytes).')
  dims = struct.unpack(f'>{ndim}I', data[4:header])
  expected, got = math.prod(dims), len(data) - header
  if got != expected:
    what = 'truncated' if got < expected else 'oversize'
    raise DataError(f'IDX file {path}: {what} payload: {got} bytes, but header '
                    f'dims {dims} need exactly {expected}.')
  return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _idx_bytes(array: np.ndarray) -> bytes:
  """Serialises a uint8 array as IDX bytes (header + payload)."""
  return (struct.pack(f'>HBB{array.ndim}I', 0, 0x08, array.ndim, *array.shape)
          + np.ascontiguousarray(array, np.uint8).tobytes())


def make_synthetic_idx(directory: PathLike, images: np.ndarray,
                       labels: np.ndarray,
                       prefix: str = 'train') -> tuple[str, str]:
  """Writes gzipped IDX images/labels files; returns their paths."""
  images, labels = np.asarray(images), np.asarray(labels)
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise DataError(f'make_synthetic_idx needs images (N,H,W[,1]) and labels '
                    f'(N,), got {images.shape} and {labels.shape}.')
  if any(a.size and (a.min() < 0 or a.max() > 255) for a in (images, labels)):
    raise DataError('make_synthetic_idx: values must fit in uint8.')
  prefix = _IDX_PREFIX.get(prefix, prefix)
  os.makedirs(directory, exist_ok=True)
  paths = []
  for kind, arr in (('images-idx3', images), ('labels-idx1', labels)):
    path = os.path.join(os.fspath(directory), f'{prefix}-{kind}-ubyte.gz')
    with gzip.open(path, 'wb') as f:
      f.write(_idx_bytes(arr.astype(np.uint8)))
    paths.append(path)
  return paths[0], paths[1]


def read_cifar_bin(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """CIFAR-10 binary files -> images (N, 32, 32, 3) uint8, labels (N,) uint8."""
  records = []
  for path in paths:
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise DataError(f'CIFAR-10 file {path}: cannot read file ({e.strerror or e}).') from e
    if not data or len(data) % _CIFAR_RECORD:
      raise DataError(f'CIFAR-10 file {path}: {len(data)} bytes is not a whole number of '
                      f'{_CIFAR_RECORD}-byte records (1 label byte + 32x32x3 pixels).')
    records.append(np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD))
  rows = np.concatenate(records)
  images = rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), rows[:, 0].copy()


def write_cifar_bin(directory: PathLike, images: np.ndarray, labels: np.ndarray,
                    split: str = 'train') -> list[str]:
  """Writes images (N, 32, 32, 3) uint8 and labels as CIFAR-10 binary files (train: spread
  over the five data_batch files); returns their paths. For generated test data."""
  images, labels = np.asarray(images), np.asarray(labels)
  if images.shape[1:] != (32, 32, 3) or labels.shape != (len(images),):
    raise DataError(f'write_cifar_bin needs images (N, 32, 32, 3) and labels (N,), got '
                    f'{images.shape} and {labels.shape}.')
  rows = np.concatenate([labels.astype(np.uint8)[:, None],
                         images.astype(np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)],
                        axis=1)
  os.makedirs(directory, exist_ok=True)
  names = _CIFAR_FILES[split]
  paths = []
  for name, part in zip(names, np.array_split(rows, len(names))):
    path = os.path.join(os.fspath(directory), name)
    with open(path, 'wb') as f:
      f.write(part.tobytes())
    paths.append(path)
  return paths


def _validated(info: DatasetInfo, images: np.ndarray, labels: np.ndarray,
               where: str) -> tuple[np.ndarray, np.ndarray]:
  """Checks shapes/labels, returns read-only (N,H,W,C) uint8 and (N,) int32."""
  images, labels = np.asarray(images), np.asarray(labels)
  if images.ndim == len(info.image_shape) and info.image_shape[-1] == 1:
    images = images[..., None]  # IDX stores (N, H, W) for one channel.
  if images.shape[1:] != info.image_shape or images.dtype != np.uint8:
    raise DataError(f'{where}: images have shape {images.shape} dtype '
                    f'{images.dtype}, expected (N, '
                    f'{", ".join(map(str, info.image_shape))}) uint8.')
  if labels.ndim != 1 or len(labels) != len(images):
    raise DataError(f'{where}: {len(images)} images but labels of shape '
                    f'{labels.shape}.')
  if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
    raise DataError(f'{where}: labels must be in [0, {info.num_classes}), got '
                    f'range [{labels.min()}, {labels.max()}].')
  labels = labels.astype(np.int32)
  for arr in (images, labels):
    arr.flags.writeable = False  # Shared through the in-process cache.
  return images, labels


def _cifar_files(directory: str, split: str) -> tuple[Optional[list[str]], str]:
  """Finds the split's CIFAR-10 binary files in a directory (or its cifar-10-batches-bin/)."""
  if not os.path.isdir(directory):
    return None, 'directory does not exist'
  for folder in (directory, os.path.join(directory, _CIFAR_SUBDIR)):
    paths = [os.path.join(folder, n) for n in _CIFAR_FILES[split]]
    if all(os.path.isfile(p) for p in paths):
      return paths, ''
  missing = [n for n in _CIFAR_FILES[split] if not os.path.isfile(os.path.join(directory, n))]
  return None, f'missing {", ".join(missing)} (here or in {_CIFAR_SUBDIR}/)'


def _idx_files(directory: str, split: str) -> tuple[Optional[list[str]], str]:
  """Finds the split's images/labels files in a directory, or says why not."""
  if not os.path.isdir(directory):
    return None, 'directory does not exist'
  prefix, found, missing = _IDX_PREFIX[split], [], []
  for kind in ('images-idx3', 'labels-idx1'):
    stem = os.path.join(directory, f'{prefix}-{kind}-ubyte')
    hits = [p for p in (stem, stem + '.gz') if os.path.isfile(p)]
    (found.append(hits[0]) if hits else missing.append(
        f'{prefix}-{kind}-ubyte[.gz]'))
  return (None, 'missing ' + ' and '.join(missing)) if missing else (found, '')


def _try_tfds(info: DatasetInfo, split: str, data_dir: Optional[str],
              allow_download: bool,
              tried: list[str]) -> Optional[tuple[np.ndarray, np.ndarray]]:
  """Loads a whole split through TFDS, or records in `tried` why not."""
  label = ('TFDS download' if allow_download else
           f'TFDS prepared data in {data_dir}')
  if not (allow_download or os.path.isdir(os.path.join(data_dir, info.name))):
    tried.append(f'{label}: no prepared {info.name}/ subdirectory')
    return None
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    tried.append(f'{label}: tensorflow_datasets not installed')
    return None
  try:
    _tf()  # Hide GPUs from TensorFlow before TFDS creates tensors.
    data = tfds.as_numpy(tfds.load(info.name, split=split, data_dir=data_dir,
                                   download=allow_download, batch_size=-1))
    return _validated(info, data['image'], data['label'], label)
  except Exception as e:  # pylint: disable=broad-except
    first_line = (str(e).strip().splitlines() or [''])[0][:200]
    tried.append(f'{label}: {type(e).__name__}: {first_line}')
    return None


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, split: str, data_dir: Optional[str],
                 allow_download: bool,
                 env_dir: Optional[str]) -> tuple[np.ndarray, np.ndarray]:
  """Tries every source in order; cached per arguments and env setting."""
  info, tried = DATASETS[name], []
  if data_dir and (out := _try_tfds(info, split, data_dir, False, tried)):
    return out
  cifar = info.file_format == 'cifar_bin'
  what = 'CIFAR-10 binary files' if cifar else 'IDX files'
  if not env_dir:
    tried.append(f'{what} in ${ENV_DATA_DIR}: variable not set')
  dirs = [d for d in (data_dir, env_dir, *info.idx_dirs) if d]
  for directory in dict.fromkeys(dirs):  # Ordered de-duplication.
    files, why = (_cifar_files if cifar else _idx_files)(directory, split)
    if files is None:
      tried.append(f'{what} in {directory}: {why}')
      continue
    if cifar:
      return _validated(info, *read_cifar_bin(files), f'{what} in {os.path.dirname(files[0])}')
    images, labels = read_idx(files[0]), read_idx(files[1])
    return _validated(info, images, labels, f'IDX files {files[0]}, {files[1]}')
  if allow_download:
    if out := _try_tfds(info, split, data_dir, True, tried):
      return out
  else:
    tried.append('TFDS download: not allowed (allow_download=False)')
  holding = ('the CIFAR-10 binary version (cifar-10-batches-bin/: data_batch_1.bin .. '
             'data_batch_5.bin, test_batch.bin)' if cifar else
             'train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, '
             't10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz')
  hints = [f'set ${ENV_DATA_DIR} or --config.data_dir to a directory holding {holding}',
           'or allow downloading (--config.allow_download=true) on a machine with '
           'network access']
  if name == 'fashion_mnist':
    hints.insert(0, 'run `apt-get install dataset-fashion-mnist`')
  raise DataError(f'Could not load {name!r} split {split!r}. Tried:\n'
                  + ''.join(f'  - {t}\n' for t in tried)
                  + 'To fix: ' + '; '.join(hints) + '.')


def load_split(name: str, split: str, data_dir: Optional[PathLike] = None,
               allow_download: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Returns read-only (images uint8 (N, H, W, C), labels int32 (N,))."""
  info = DATASETS[canonical_name(name)]
  if split not in info.splits:
    raise DataError(f'Unknown split {split!r} for {info.name}; known splits: '
                    f'{", ".join(info.splits)}.')
  data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir else None
  offline = os.environ.get(ENV_OFFLINE, '') not in ('', '0')
  return _load_cached(info.name, split, data_dir, bool(allow_download) and not offline,
                      os.environ.get(ENV_DATA_DIR) or None)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """Deterministic int64 permutation of range(n) for (seed, epoch)."""
  if seed < 0 or epoch < 0:
    raise DataError(f'seed and epoch must be >= 0, got {seed} and {epoch}.')
  rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))
  return rng.permutation(n).astype(np.int64)


def steps_per_epoch(n: int, global_batch: int) -> int:
  """Number of full global batches in n examples (remainder dropped)."""
  if global_batch <= 0:
    raise DataError(f'global batch size must be positive, got {global_batch}.')
  if n // global_batch == 0:
    raise DataError(f'{n} examples are fewer than one global batch of '
                    f'{global_batch}.')
  return n // global_batch


@functools.cache
def _tf() -> Any:
  """Imports TensorFlow once, hiding GPUs from it (JAX owns them)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TF runtime already initialised elsewhere.
    pass
  return tf


_TF_CONSTANTS: dict[tuple[int, int], tuple[Any, ...]] = {}


def _tf_constants(images: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
  """TF constants for (images, labels), cached per array object pair."""
  key = (id(images), id(labels))
  hit = _TF_CONSTANTS.get(key)
  if hit is None or hit[0] is not images or hit[1] is not labels:
    tf = _tf()
    if len(_TF_CONSTANTS) >= 4:  # Keep at most a few datasets alive.
      _TF_CONSTANTS.pop(next(iter(_TF_CONSTANTS)))
    hit = (images, labels, tf.constant(images),
           tf.constant(labels.astype(np.int32)))
    _TF_CONSTANTS[key] = hit
  return hit[2], hit[3]


def _tf_batches(images: np.ndarray, labels: np.ndarray, order: np.ndarray,
                local: int) -> Iterator[dict[str, np.ndarray]]:
  """tf.data pipeline gathering the rows of `order`, `local` at a time."""
  tf = _tf()
  image_t, label_t = _tf_constants(images, labels)
  ds = tf.data.Dataset.from_tensor_slices(order).batch(local,
                                                       drop_remainder=True)
  ds = ds.map(lambda i: {'image': tf.gather(image_t, i),
                         'label': tf.gather(label_t, i)},
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  yield from ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def _np_batches(images: np.ndarray, labels: np.ndarray, order: np.ndarray,
                local: int) -> Iterator[dict[str, np.ndarray]]:
  """Pure-numpy equivalent of _tf_batches."""
  for rows in order.reshape(-1, local):
    yield {'image': images[rows], 'label': labels[rows].astype(np.int32)}


def batches(images: np.ndarray, labels: np.ndarray, *, global_batch: int,
            seed: int, epoch: int, start_step: int = 0, process_index: int = 0,
            process_count: int = 1, micro_steps: int = 1,
            pipeline: str = 'tf.data') -> Iterator[dict[str, np.ndarray]]:
  """Yields this process's slice of the steps start_step.. of an epoch.

  A step is `micro_steps` global batches of `global_batch` examples (one per critic
  update); each yielded dict holds image (micro_steps, local, H, W, C) and label
  (micro_steps, local), local = global_batch / process_count.
  """
  images, labels = np.asarray(images), np.asarray(labels)
  if images.dtype != np.uint8 or len(images) != len(labels):
    raise DataError(f'batches() needs uint8 images and as many labels, got '
                    f'{images.dtype} {images.shape} and {labels.shape}.')
  if pipeline not in PIPELINES:
    raise DataError(f'Unknown pipeline {pipeline!r}; known: {PIPELINES}.')
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise DataError(f'Bad process_index {process_index} / process_count '
                    f'{process_count}.')
  if micro_steps < 1:
    raise DataError(f'micro_steps must be >= 1, got {micro_steps}.')
  steps = steps_per_epoch(len(images), global_batch * micro_steps)
  if global_batch % process_count:
    raise DataError(f'global batch {global_batch} is not divisible by the '
                    f'{process_count} processes.')
  if not 0 <= start_step <= steps:
    raise DataError(f'start_step {start_step} outside [0, {steps}].')
  local = global_batch // process_count
  perm = epoch_permutation(seed, epoch, len(images))[:steps * micro_steps * global_batch]
  mine = perm.reshape(steps, micro_steps, global_batch)[
      start_step:, :, process_index * local:(process_index + 1) * local]
  order = np.ascontiguousarray(mine).reshape(-1)
  make = _tf_batches if pipeline == 'tf.data' else _np_batches
  flat = make(images, labels, order, micro_steps * local)  # errors above are raised eagerly
  return ({k: v.reshape(micro_steps, local, *v.shape[1:]) for k, v in b.items()} for b in flat)
