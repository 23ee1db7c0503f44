"""Multi-process (multi-host) runs: joining `jax.distributed` from flags or the environment.

One process per host (or per GPU), all running the same command. With none of the flags
below and none of their environment variables, nothing happens: a single process, as ever.

  --coordinator_address=HOST:PORT   $JAX_COORDINATOR_ADDRESS   process 0's address, on all
  --num_processes=N                 $JAX_NUM_PROCESSES
  --process_id=I                    $JAX_PROCESS_ID            0 .. N-1, one per process
  --distributed                     let JAX detect all three (Cloud TPU, SLURM, Open MPI)
"""

import dataclasses
import functools
import os
import socket
import sys
import time
import traceback
from typing import Callable, Mapping, Sequence

from absl import flags, logging

from cgan_jax.errors import UserError

_FLAGS: dict[str, flags.FlagHolder] = {}
_JOINED: dict[str, int] = {}  # this process's index and the process count, once joined


def define_flags() -> None:
  """Defines the multi-process flags of an entry point (train.py, eval.py)."""
  _FLAGS.update(
      coordinator_address=flags.DEFINE_string(
          'coordinator_address', None, 'Multi-process runs: HOST:PORT of process 0, the same '
          'on every process (default $JAX_COORDINATOR_ADDRESS).'),
      num_processes=flags.DEFINE_integer(
          'num_processes', None, 'Multi-process runs: how many processes (default '
          '$JAX_NUM_PROCESSES).'),
      process_id=flags.DEFINE_integer(
          'process_id', None, 'Multi-process runs: this process, 0..num_processes-1 (default '
          '$JAX_PROCESS_ID).'),
      auto=flags.DEFINE_bool(
          'distributed', False, 'Join a multi-process run whose coordinator, size and rank '
          'JAX detects from the cluster (Cloud TPU pod, SLURM, Open MPI).'),
      heartbeat_timeout=flags.DEFINE_integer(
          'heartbeat_timeout', 100, 'Multi-process runs: seconds without a heartbeat after '
          'which a process counts as dead and the others stop.'),
      init_timeout=flags.DEFINE_integer(
          'init_timeout', 300, 'Multi-process runs: seconds to wait for the coordinator and '
          'for every process to join.'))


_ENV = {'coordinator_address': 'JAX_COORDINATOR_ADDRESS', 'num_processes': 'JAX_NUM_PROCESSES',
        'process_id': 'JAX_PROCESS_ID'}


@dataclasses.dataclass(frozen=True)
class Settings:
  """What `jax.distributed.initialize` is given; None fields are left to its auto-detection."""
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None
  heartbeat_timeout: int = 100
  init_timeout: int = 300


def settings(coordinator_address: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, auto: bool = False, heartbeat_timeout: int = 100,
             init_timeout: int = 300, environ: Mapping[str, str] = os.environ
             ) -> Settings | None:
  """Flags (else environment) -> validated Settings; None for a plain single-process run."""
  given = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
           'process_id': process_id}
  for name, var in _ENV.items():
    if given[name] is None and environ.get(var, '').strip():
      value = environ[var].strip()
      if name != 'coordinator_address':
        try:
          value = int(value)
        except ValueError:
          raise UserError(f'${var} must be an integer, got {value!r}') from None
      given[name] = value
  if not auto and all(v is None for v in given.values()):
    return None
  for name, value in (('heartbeat_timeout', heartbeat_timeout), ('init_timeout', init_timeout)):
    if value < 1:
      raise UserError(f'--{name} must be at least 1 second, got {value}')
  address, n, i = given['coordinator_address'], given['num_processes'], given['process_id']
  if not auto:
    missing = [f'--{k} (or ${_ENV[k]})' for k, v in given.items() if v is None]
    if missing:
      raise UserError(f'a multi-process run needs {", ".join(missing)} as well; or pass '
                      '--distributed to let JAX detect them on a TPU pod, SLURM or Open MPI')
  if n is not None and n < 1:
    raise UserError(f'--num_processes must be at least 1, got {n}')
  if i is not None and (i < 0 or (n is not None and i >= n)):
    raise UserError(f'--process_id must be in 0..{n - 1 if n else "num_processes-1"}, got {i}')
  if address is not None:
    _split_address(address)
  return Settings(address, n, i, heartbeat_timeout, init_timeout)


def settings_from_flags() -> Settings | None:
  return settings(**{name: holder.value for name, holder in _FLAGS.items()})


def _split_address(address: str) -> tuple[str, int]:
  host, sep, port = address.rpartition(':')
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise UserError(f'--coordinator_address must be HOST:PORT, got {address!r}')
  return host.strip('[]'), int(port)


def _check_port_free(port: int) -> None:
  """Process 0 serves the coordinator on `port` (all interfaces): refuse a taken port."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is fine
    try:
      s.bind(('', port))
    except OSError as e:
      raise UserError(f'process 0 cannot serve the coordinator on port {port}: '
                      f'{e.strerror or e}; choose another --coordinator_address port') from e


def _wait_for_coordinator(host: str, port: int, timeout: float) -> None:
  """Other processes: the coordinator must accept connections within `timeout` seconds."""
  deadline = time.monotonic() + timeout
  while True:
    try:
      socket.create_connection((host, port), timeout=2).close()
      return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise UserError(f'cannot reach the coordinator at {host}:{port} within {timeout:g} s '
                        f'({e.strerror or e}); is process 0 running, with the same '
                        '--coordinator_address?') from e
      time.sleep(0.5)


def initialize(s: Settings) -> None:
  """Joins the run described by `s`; call before anything touches a JAX device."""
  import jax  # here, not at import: keeps --help fast
  # CPU collectives between processes: gloo (JAX's default since 0.5; None before).
  if getattr(jax.config, 'jax_cpu_collectives_implementation', 'gloo') is None:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  # JAX aborts the process (no Python exception) when the coordinator cannot be reached or
  # its port is taken: check both first, so the user gets one clear line instead.
  if s.coordinator_address is not None and s.process_id is not None:
    host, port = _split_address(s.coordinator_address)
    if s.process_id == 0:
      _check_port_free(port)
    else:
      _wait_for_coordinator(host, port, s.init_timeout)
  _native_stdout_to_stderr()
  try:
    jax.distributed.initialize(s.coordinator_address, s.num_processes, s.process_id,
                               initialization_timeout=s.init_timeout,
                               heartbeat_timeout_seconds=s.heartbeat_timeout)
  except (ValueError, RuntimeError) as e:  # e.g. nothing detected with --distributed
    hint = (' (--distributed found no TPU pod, SLURM or Open MPI job: pass --coordinator_address, '
            '--num_processes and --process_id)' if s.coordinator_address is None else '')
    raise UserError(f'cannot start a multi-process run: {e}{hint}') from e
  _JOINED.update(index=jax.process_index(), count=jax.process_count())
  if jax.process_index() > 0:
    logging.set_verbosity(logging.WARNING)  # process 0 alone reports progress
  logging.warning('process %d of %d (coordinator %s): %d local of %d devices; if a process '
                  'dies, the others stop within ~%d s', jax.process_index(),
                  jax.process_count(), s.coordinator_address or 'detected',
                  jax.local_device_count(), jax.device_count(), s.heartbeat_timeout)


def _native_stdout_to_stderr() -> None:
  """Keeps stdout for our output (eval.py's tables): native libraries' chatter on file
  descriptor 1 (gloo prints its connections there) goes to stderr instead."""
  sys.stdout.flush()
  ours = os.dup(1)
  os.dup2(2, 1)
  sys.stdout = os.fdopen(ours, 'w', buffering=1, encoding=sys.stdout.encoding)


def initialize_from_flags() -> bool:
  """Joins a multi-process run if the flags or environment ask for one; True if it did."""
  s = settings_from_flags()
  if s is not None:
    initialize(s)
  return s is not None


def is_multiprocess() -> bool:
  """Whether this process joined a run of several (cheap: touches no device)."""
  return _JOINED.get('count', 1) > 1


def is_primary() -> bool:
  """Process 0: the one that writes logs, sample grids and tables."""
  import jax
  return jax.process_index() == 0


def mesh_devices(num_devices: int = 0) -> list:
  """Devices for the ('data',) mesh, grouped by process in process order.

  Process p then holds rows [p*B/P, (p+1)*B/P) of every global batch: the slice that
  `input_pipeline.batches(process_index=p, ...)` reads. `num_devices` (0: all) counts one
  process's devices, the first N of each process.
  """
  import jax
  local = jax.local_devices()
  if num_devices > len(local):
    raise UserError(f'num_devices={num_devices}, but only {len(local)} devices exist'
                    + (' per process' if jax.process_count() > 1 else ''))
  if jax.process_count() == 1:
    devices = jax.devices()
    return devices[:num_devices] if num_devices else devices
  by_process: dict[int, list] = {}
  for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
    by_process.setdefault(d.process_index, []).append(d)
  return [d for p in sorted(by_process) for d in by_process[p][:num_devices or None]]


def exit_on_failure(main: Callable) -> Callable:
  """In a multi-process run, a process that fails exits at once (os._exit).

  A normal exit would first wait, up to minutes, at JAX's shutdown barrier for processes
  that are themselves blocked in a collective waiting for this one; exiting at once lets
  them see it die (within --heartbeat_timeout) and stop too.
  """

  @functools.wraps(main)
  def wrapped(argv: Sequence[str]):
    try:
      return main(argv)
    except SystemExit as e:
      if is_multiprocess() and e.code not in (0, None):
        _exit_now(e.code if isinstance(e.code, int) else 1)
      raise
    except Exception as e:  # noqa: BLE001
      if not is_multiprocess():
        raise
      if _is_lost_peer(e):
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f'error: process {_JOINED["index"]} of {_JOINED["count"]} lost contact with the '
              f'others (one probably died: see its log): {first_line}', file=sys.stderr)
      else:  # a bug: its traceback
        traceback.print_exc()
      _exit_now(1)

  return wrapped


# How a cross-process collective or the coordination service fails when a peer is gone.
_LOST_PEER_SIGNS = ('gloo', 'connection reset', 'connection closed', 'connection refused',
                    'socket closed', 'unavailable:', 'heartbeat', 'coordination service')


def _is_lost_peer(e: Exception) -> bool:
  import jax
  text = str(e).lower()
  return isinstance(e, jax.errors.JaxRuntimeError) and any(s in text for s in _LOST_PEER_SIGNS)


def _exit_now(code: int) -> None:
  print(f'process {_JOINED["index"]} of {_JOINED["count"]} failed (exit {code}); the '
        'other processes will stop too', file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)
