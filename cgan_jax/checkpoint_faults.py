"""What went wrong with a checkpoint, in words: the failing file and the root cause.

Orbax and TensorStore wrap a failed read or write in several layers (and a 60-line spec
dump); these helpers walk the exception chain for the line a user needs: which file, and why.
"""

import inspect
import json
import logging
import os
import re
import sys
from typing import Iterator

# TensorStore status codes of a failed read: the bytes on disk are missing or wrong.
_IO_STATUS = re.compile(r'^(DATA_LOSS|OUT_OF_RANGE|NOT_FOUND|FAILED_PRECONDITION|UNKNOWN|'
                        r'INTERNAL|PERMISSION_DENIED|UNAVAILABLE|RESOURCE_EXHAUSTED|'
                        r'INVALID_ARGUMENT): ')
_OCDBT_READ = re.compile(r'Error reading "(?P<key>[^"]+)" in OCDBT database at local file '
                         r'"(?P<db>[^"]+)"')
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')


def chain(e: BaseException) -> Iterator[BaseException]:
  """`e`, its cause, the cause's cause, ... (each once)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


# TensorStore's bracketed payloads ([tensorstore_spec='{...}'] [os_error_code='27']) and the
# OCDBT preamble that names the database (the file is named apart).
_PAYLOAD = re.compile(r"\s*\[(\w+)='((?:[^'\\]|\\.)*)'\]")
_OCDBT_PREAMBLE = re.compile(r'Error (?:reading|writing) "[^"]+" in OCDBT database at local file '
                             r'"[^"]+": ')


def _tidy(text: str) -> str:
  """One TensorStore status line, without its payloads; the OS error number kept."""
  code = dict(_PAYLOAD.findall(text)).get('os_error_code')
  text = _OCDBT_PREAMBLE.sub('', _PAYLOAD.sub('', text)).strip().splitlines()[0]
  return (text[:500] + (f' (OS error {code})' if code else '')).strip()


def root_cause(e: BaseException) -> str:
  """The innermost error in one line (an OSError as '[Errno N] strerror: file')."""
  for x in reversed(list(chain(e))):
    if isinstance(x, OSError) and x.strerror:
      return f'[Errno {x.errno}] {x.strerror}' + (f': {x.filename}' if x.filename else '')
    if str(x).strip():
      return _tidy(str(x))
  return type(e).__name__


def is_damage(e: BaseException) -> bool:
  """Whether a failed restore means bad bytes on disk (not a checkpoint of another model)."""
  for x in chain(e):
    if isinstance(x, (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError)):
      return True
    text = str(x).strip()
    if _IO_STATUS.match(text) or _OCDBT_READ.search(text):
      return True
  return False


def silence_aborted_reads() -> None:
  """Drops the echoes of a failed restore that was already reported in one line.

  When one array of a checkpoint fails to read, orbax (0.12) abandons the other reads on a
  closed event loop: each later prints, through `sys.unraisablehook`, a traceback with the
  array's whole TensorStore spec (or "Event loop is closed"); or, now and then (1 run in 3 of
  generate.py on three damaged checkpoints), asyncio logs a gathered read's failure as "never
  retrieved", as for writes. Installed before array reads.
  """
  silence_abandoned_writes()  # the asyncio echo: the same filter as for writes
  if getattr(sys.unraisablehook, 'drops_aborted_reads', False):
    return
  previous = sys.unraisablehook

  def hook(unraisable) -> None:
    obj, exc = unraisable.object, unraisable.exc_value
    orbax_read = inspect.iscoroutine(obj) and '/orbax/' in obj.cr_code.co_filename
    closed_loop = isinstance(exc, RuntimeError) and 'Event loop is closed' in str(exc)
    if not (orbax_read or closed_loop):
      previous(unraisable)

  hook.drops_aborted_reads = True
  sys.unraisablehook = hook


class _AbandonedOrbaxWrites(logging.Filter):
  """Drops asyncio's "... exception was never retrieved" for orbax's array writes (and reads).

  asyncio names the object that held the exception: a Task (its coroutine's file is in the
  message) or a _GatheringFuture (only the exception's traceback names orbax). Both are matched
  on orbax appearing in the message or in the traceback's frames.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if 'exception was never retrieved' not in message:
      return True
    if '/orbax/' in message:
      return False
    exc = record.exc_info[1] if record.exc_info else None
    for x in chain(exc) if exc is not None else ():
      tb = x.__traceback__
      while tb is not None:
        if '/orbax/' in tb.tb_frame.f_code.co_filename.replace(os.sep, '/'):
          return False
        tb = tb.tb_next
    return True


def silence_abandoned_writes() -> None:
  """Drops the echoes of a failed save that was already reported in one line.

  When one array of a checkpoint fails to write (a full disk, a file-size limit), orbax (0.12)
  reports the first failure and leaves the other failed write tasks unretrieved; asyncio then
  logs each, with a traceback, when it is collected (seen in full test runs, as Task and as
  _GatheringFuture).
  Installed before saves.
  """
  log = logging.getLogger('asyncio')
  if not any(isinstance(f, _AbandonedOrbaxWrites) for f in log.filters):
    log.addFilter(_AbandonedOrbaxWrites())


def failing_file(e: BaseException, item_dir: str) -> str:
  """The file a failed read of `item_dir` (a checkpoint's state/ or meta/) points at."""
  for x in chain(e):
    m = _OCDBT_READ.search(str(x))
    if m:
      data = _ocdbt_data_file(m['db'], m['key'])
      return f'{data} (array {m["key"]})' if data else f'{m["db"]} (array {m["key"]})'
    if isinstance(x, OSError) and x.filename:
      return str(x.filename)
  for x in chain(e):
    for path in _QUOTED_PATH.findall(str(x)):
      if path.startswith(item_dir):
        return path
  single = os.path.join(item_dir, 'metadata')  # orbax's JSON items are one file
  return single if os.path.isfile(single) else item_dir


def _ocdbt_data_file(db: str, key: str) -> str | None:
  """The data file of an OCDBT database that holds `key` (best effort: None if not found)."""
  try:
    import tensorstore as ts
    kv = ts.KvStore.open({'driver': 'file', 'path': db}).result()
    todo = [ts.ocdbt.dump(kv).result()['versions'][-1]['root']['location']]
    visited = 0
    while todo and visited < 1000:
      node, visited = ts.ocdbt.dump(kv, todo.pop()).result(), visited + 1
      for entry in node.get('entries', []):
        ref = _text(entry.get('indirect_value', ''))
        if _text(entry.get('key')) == key and ref.startswith('value:'):
          base, name = ref[len('value:'):].split(':')[:2]
          return os.path.join(db, base, name)
        todo += _node_refs(entry)
  except Exception:  # noqa: BLE001 - the file name is a nicety; the error line stands anyway
    return None
  return None


def _text(v) -> str:
  return v.decode(errors='replace') if isinstance(v, bytes) else str(v)


def _node_refs(obj) -> list[str]:
  """Locations of child b-tree nodes anywhere inside a dumped entry."""
  if isinstance(obj, (str, bytes)):
    return [_text(obj)] if _text(obj).startswith('btreenode::') else []
  values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []
  return [ref for v in values for ref in _node_refs(v)]
