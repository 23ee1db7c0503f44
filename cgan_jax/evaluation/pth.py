"""Reads a PyTorch state dict (a `.pth` file of `torch.save`) into numpy arrays, without torch.

Both of torch.save's layouts are read: the zip archive of PyTorch >= 1.6 (`<name>/data.pkl`
plus one raw file per storage under `<name>/data/`) and the older "legacy" stream (magic
number, protocol version, system info, the pickled object, the storage keys, then each
storage as an int64 element count and its raw bytes), which is what older checkpoints such
as pytorch-fid's InceptionV3 weights may use. The unpickler only builds ordered dicts, tensors
and storages: any other class in the file is refused, so reading an untrusted file cannot run
code (unlike a plain `pickle.load`).
"""

import collections
import dataclasses
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class FormatError(ValueError):
  """The file is not a state dict this reader understands (truncated, foreign, corrupt)."""


@dataclasses.dataclass
class _Storage:
  """One flat storage; `data` arrives at once (zip) or after the pickle (legacy)."""
  dtype: np.dtype
  numel: int
  data: np.ndarray | None = None


@dataclasses.dataclass
class _Tensor:
  """A strided view of a storage, materialised once every storage has been read."""
  storage: _Storage
  offset: int
  shape: tuple[int, ...]
  stride: tuple[int, ...]

  def numpy(self) -> np.ndarray:
    flat = self.storage.data
    if flat is None or len(flat) != self.storage.numel:
      raise FormatError('a tensor refers to a storage that the file does not contain')
    if not self.shape:
      return np.array(flat[self.offset])
    if 0 in self.shape:
      return np.zeros(self.shape, flat.dtype)
    end = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) + 1
    if self.offset < 0 or end > len(flat):
      raise FormatError('a tensor reaches past the end of its storage')
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.shape,
                                           [s * item for s in self.stride], writeable=False)
    return np.array(view)


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple[int, ...],
                    stride: tuple[int, ...], *unused: Any) -> _Tensor:
  """Stands in for torch._utils._rebuild_tensor_v2 (requires_grad, hooks, metadata ignored)."""
  if not isinstance(storage, _Storage):
    raise FormatError('a tensor without a storage')
  return _Tensor(storage, int(offset), tuple(map(int, shape)), tuple(map(int, stride)))


def _rebuild_parameter(tensor: _Tensor, *unused: Any) -> _Tensor:
  """Stands in for torch._utils._rebuild_parameter: a parameter is its tensor."""
  return tensor


class _StorageType:
  """Stands in for torch.FloatStorage & co. inside persistent ids."""

  def __init__(self, name: str):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


_ALLOWED = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Builds only state-dict objects; storages come from `read_storage(key, storage)`."""

  def __init__(self, file: BinaryIO, read_storage):
    super().__init__(file)
    self._read_storage = read_storage
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[module, name]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise FormatError(f'the file holds a {module}.{name}, which is not part of a state dict')

  def persistent_load(self, pid: Any) -> _Storage:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ('storage', b'storage')):
      raise FormatError(f'unknown persistent id {pid!r:.80}')
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    if not isinstance(storage_type, _StorageType):
      raise FormatError('a storage of unknown type')
    if len(pid) > 5 and pid[5] is not None:
      raise FormatError('storage views (PyTorch < 0.4) are not supported')
    if key not in self.storages:
      self.storages[key] = _Storage(storage_type.dtype, numel)
      self._read_storage(key, self.storages[key])
    return self.storages[key]


def _from_bytes(blob: bytes, storage: _Storage, byteorder: str = 'little') -> np.ndarray:
  want = storage.numel * storage.dtype.itemsize
  if len(blob) != want:
    raise FormatError(f'a storage holds {len(blob)} bytes, {want} expected (truncated file?)')
  dtype = storage.dtype.newbyteorder('<' if byteorder == 'little' else '>')
  return np.frombuffer(blob, dtype).astype(storage.dtype.newbyteorder('='))


def _load_zip(archive: zipfile.ZipFile) -> Any:
  """PyTorch >= 1.6: `<name>/data.pkl` and `<name>/data/<key>` entries."""
  pkl = [n for n in archive.namelist() if n.endswith('/data.pkl') or n == 'data.pkl']
  if len(pkl) != 1:
    raise FormatError('a zip file without exactly one data.pkl: not written by torch.save')
  prefix = pkl[0][:-len('data.pkl')]
  names = set(archive.namelist())
  order = prefix + 'byteorder'
  byteorder = archive.read(order).decode().strip() if order in names else 'little'

  def read_storage(key: str, storage: _Storage) -> None:
    entry = f'{prefix}data/{key}'
    if entry not in names:
      raise FormatError(f'the archive lacks storage {entry}')
    storage.data = _from_bytes(archive.read(entry), storage, byteorder)

  with archive.open(pkl[0]) as f:
    return _Unpickler(io.BytesIO(f.read()), read_storage).load()


def _no_storage(key: str, storage: _Storage) -> None:
  raise FormatError('a storage outside the state dict')


def _load_legacy(f: BinaryIO) -> Any:
  """PyTorch < 1.6 (and `_use_new_zipfile_serialization=False`): one pickle stream."""
  plain = lambda: _Unpickler(f, _no_storage).load()  # restricted, like the main pickle
  if plain() != _LEGACY_MAGIC:
    raise FormatError('not a torch.save file (wrong magic number)')
  plain()  # protocol version
  plain()  # system info
  unpickler = _Unpickler(f, lambda key, storage: None)
  result = unpickler.load()
  keys = plain()
  for key in keys:
    storage = unpickler.storages.get(str(key))
    if storage is None:
      raise FormatError(f'storage {key} is listed but never used')
    header = f.read(8)
    if len(header) != 8:
      raise FormatError('the file ends inside its storages (truncated)')
    (numel,) = struct.unpack('<q', header)
    if numel != storage.numel:
      raise FormatError(f'storage {key} holds {numel} elements, {storage.numel} expected')
    storage.data = _from_bytes(f.read(numel * storage.dtype.itemsize), storage)
  return result


def _materialise(obj: Any) -> Any:
  if isinstance(obj, _Tensor):
    return obj.numpy()
  if isinstance(obj, dict):
    return {k: _materialise(v) for k, v in obj.items()}
  return obj


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """The {name: array} of a `.pth` state dict; FormatError for anything else.

  OSError (missing, unreadable) passes through for the caller to word.
  """
  with open(path, 'rb') as f:
    try:
      if f.read(4) == b'PK\x03\x04':  # a zip archive (a truncated one has no directory)
        f.seek(0)
        with zipfile.ZipFile(f) as archive:
          obj = _load_zip(archive)
      else:
        f.seek(0)
        obj = _load_legacy(f)
    except FormatError:
      raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, ValueError,
            TypeError, KeyError, IndexError, AttributeError, UnicodeDecodeError) as e:
      raise FormatError(f'{type(e).__name__}: {e}'[:200]) from e
  obj = _materialise(obj)
  if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
    raise FormatError('the file holds something other than a dict of tensors')
  return obj
