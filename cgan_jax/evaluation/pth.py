"""Reads PyTorch weights into numpy arrays, without torch: a state dict (a `.pth` file of
`torch.save`) or the parameters of a TorchScript archive (`torch.jit.save`).

Both of torch.save's layouts are read: the zip archive of PyTorch >= 1.6 (`<name>/data.pkl`
plus one raw file per storage under `<name>/data/`) and the older "legacy" stream (magic
number, protocol version, system info, the pickled object, the storage keys, then each
storage as an int64 element count and its raw bytes), which is what older checkpoints such
as pytorch-fid's InceptionV3 weights may use. A TorchScript archive is torch.save's zip layout
whose data.pkl holds the module tree (`__torch__.*` objects) instead of a dict; its `code/`
(TorchScript source) is never read, let alone run.

The unpickler only builds ordered dicts, tensors, storages, lists and inert `ScriptObject`s
(a TorchScript module's class name and attribute dict): any other class in the file is
refused, so reading an untrusted file cannot run code (unlike a plain `pickle.load`).
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


class ScriptObject:
  """A TorchScript object (module) as plain data: `qualname` ('__torch__.<module>.<Class>')
  and `attributes` (tensors, submodules, ints, lists...), set by the pickle's BUILD."""
  qualname = ''

  def __setstate__(self, state: Any) -> None:
    if not isinstance(state, dict):
      raise FormatError(f'a TorchScript {self.qualname} with a non-dict state')
    self.attributes = state

  @property
  def kind(self) -> str:
    """The class name without its module and TorchScript's mangling: 'MaxPool2d'."""
    return self.qualname.rsplit('.', 1)[-1]


_ALLOWED = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    # TorchScript's typed lists (e.g. a conv's padding: List[int]) and container type tags.
    **{('torch.jit._pickle', f'build_{kind}list'): list
       for kind in ('int', 'double', 'bool', 'tensor')},
    ('torch.jit._pickle', 'restore_type_tag'): lambda value, type_tag: value,
}


class _Unpickler(pickle.Unpickler):
  """Builds only state-dict objects; storages come from `read_storage(key, storage)`."""

  def __init__(self, file: BinaryIO, read_storage):
    super().__init__(file)
    self._read_storage = read_storage
    self.storages: dict[str, _Storage] = {}
    self._script_classes: dict[str, type] = {}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[module, name]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == '__torch__' or module.startswith('__torch__.'):  # inert: attributes only
      qualname = f'{module}.{name}'
      if qualname not in self._script_classes:
        self._script_classes[qualname] = type(name, (ScriptObject,), {'qualname': qualname})
      return self._script_classes[qualname]
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
  if isinstance(obj, list):
    return [_materialise(v) for v in obj]
  if isinstance(obj, ScriptObject):
    obj.attributes = _materialise(getattr(obj, 'attributes', {}))
  return obj


@dataclasses.dataclass(frozen=True)
class Contents:
  """What a weights file holds: a state dict, or a TorchScript module tree flattened to
  dotted names (tensors; other attributes such as a conv's stride; the modules themselves,
  whose `kind` is their class)."""
  torchscript: bool
  tensors: dict[str, np.ndarray]
  attributes: dict[str, Any]
  modules: dict[str, ScriptObject]


def _flatten(module: ScriptObject, prefix: str, out: Contents) -> None:
  out.modules[prefix.rstrip('.')] = module
  for name, value in getattr(module, 'attributes', {}).items():
    if isinstance(value, ScriptObject):
      _flatten(value, f'{prefix}{name}.', out)
    elif isinstance(value, np.ndarray):
      out.tensors[prefix + name] = value
    elif name not in ('training', '_is_full_backward_hook'):
      out.attributes[prefix + name] = value


def read(path: str) -> Contents:
  """A `.pth` state dict or a TorchScript archive's tensors; FormatError for anything else.

  OSError (missing, unreadable) passes through for the caller to word.
  """
  try:
    obj = _materialise(_read_object(path))
    if isinstance(obj, ScriptObject):
      contents = Contents(True, {}, {}, {})
      _flatten(obj, '', contents)
      return contents
  except RecursionError as e:  # only a crafted file nests objects in a cycle
    raise FormatError('objects nested in a cycle') from e
  if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
    raise FormatError('the file holds something other than a dict of tensors or a '
                      'TorchScript module')
  return Contents(False, obj, {}, {})


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """The {name: array} of a `.pth` state dict; FormatError for anything else."""
  contents = read(path)
  if contents.torchscript:
    raise FormatError('a TorchScript archive, not a state dict')
  return contents.tensors


def mismatches(tensors: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
               ignore: str = 'num_batches_tracked') -> list[str]:
  """What keeps `tensors` from being exactly the named `shapes`, worded for an error line
  (names ending in `ignore`, BatchNorm's step counters, may be extra)."""
  missing = sorted(set(shapes) - set(tensors))
  extra = sorted(k for k in set(tensors) - set(shapes) if not k.endswith(ignore))
  misfit = sorted(f'{k} {tuple(tensors[k].shape)}, not {tuple(shapes[k])}' for k in shapes
                  if k in tensors and tuple(tensors[k].shape) != tuple(shapes[k]))
  problems = []
  for what, names in (('missing', missing), ('unexpected', extra), ('of the wrong shape', misfit)):
    if names:
      problems.append(f'{len(names)} tensors {what} (e.g. {names[0]})')
  return problems


def _read_object(path: str) -> Any:
  """The unpickled object of a torch.save / torch.jit.save file, tensors not yet read out."""
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
  return obj
