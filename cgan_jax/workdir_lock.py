"""One trainer per workdir: an exclusive `fcntl.flock` on `<workdir>/train.lock`.

The lock file records its holder (host, pid, start time, command). The kernel releases a
flock when its process dies, however it dies, so a lock left by a killed trainer is simply
taken over (with a warning naming the dead holder); a live holder makes a second trainer
stop with one error line naming it. The file is never deleted (deleting a lock file races
with a process that has it open); a clean exit empties it. In a multi-process run, process 0
holds the lock for all and tells the others whether it got it.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator

from absl import logging

from cgan_jax.errors import UserError

LOCK_NAME = 'train.lock'


class WorkdirInUse(UserError):
  """Another live trainer holds the workdir's lock."""


def _holder(record: str) -> str:
  """'pid 123 on host h (since ..., running ...)' from a lock file's contents."""
  try:
    r = json.loads(record)
    return (f'pid {r["pid"]} on host {r["host"]} (since {r["started"]}, running '
            f'{r["command"]!r})')
  except (ValueError, KeyError, TypeError):
    return f'an unknown process (lock file contents {record[:200]!r})'


def _record() -> str:
  return json.dumps({'host': socket.gethostname(), 'pid': os.getpid(),
                     'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                     'command': ' '.join(sys.argv)})


def acquire(workdir: str) -> int | None:
  """Locks `workdir` for this process; returns the lock's file descriptor (None when the
  filesystem has no locks). Raises WorkdirInUse when a live process holds it."""
  path = os.path.join(workdir, LOCK_NAME)
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise UserError(f'cannot create the lock file {path}: {e.strerror or e}') from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    previous = os.pread(fd, 4096, 0).decode(errors='replace')
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise WorkdirInUse(f'workdir {workdir} is in use by another trainer: '
                         f'{_holder(previous)}; lock file {path}. Wait for it to finish, '
                         'stop it, or use another --workdir') from None
    logging.warning('cannot lock %s (%s): this filesystem has no locks, so nothing stops a '
                    'second trainer on this workdir', path, e.strerror or e)
    return None
  previous = os.pread(fd, 4096, 0).decode(errors='replace').strip()
  if previous:
    logging.warning('taking over the lock of %s, which ended without releasing it (it was '
                    'killed or crashed); lock file %s', _holder(previous), path)
  os.ftruncate(fd, 0)
  os.pwrite(fd, _record().encode(), 0)
  os.fsync(fd)
  return fd


def release(fd: int | None) -> None:
  """Empties the lock file (a clean exit) and unlocks it."""
  if fd is None:
    return
  try:
    os.ftruncate(fd, 0)
  finally:
    os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds `workdir`'s lock for the duration (process 0 only in a multi-process run)."""
  import jax
  if jax.process_count() == 1:
    fd = acquire(workdir)
  else:
    fd, refusal = None, None
    if jax.process_index() == 0:
      try:
        fd = acquire(workdir)
      except UserError as e:
        refusal = e
    _agree_on_lock(refusal is None)
    if refusal is not None:
      raise refusal
  try:
    yield
  finally:
    release(fd)


def _agree_on_lock(locked: bool) -> None:
  """Every process learns whether process 0 got the lock; the others stop if it did not."""
  import jax
  import numpy as np
  from jax.experimental import multihost_utils
  ok = bool(multihost_utils.broadcast_one_to_all(np.int32(locked)))
  if not ok and jax.process_index() > 0:
    raise WorkdirInUse('the workdir is in use by another trainer (process 0 could not lock '
                       'it: see its error line)')
