"""Test setup: 4 simulated CPU devices (before JAX starts), quiet TF, shared helpers, and the
suite's own bookkeeping: one XLA compilation cache and one folder shared by every process of a
run (the pytest-xdist workers and the scripts tests start), a lock that gives `whole_machine`
tests the CPU to themselves, and the wall time, slowest tests and per-test budget at the end.
"""

import collections
import contextlib
import fcntl
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault('JAX_NUM_CPU_DEVICES', '4')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ['CGAN_JAX_OFFLINE'] = '1'  # no test, nor any script it runs, may download data
# eval.py and results.py add InceptionV3 tables when its weights are installed (as they are
# for the suite): hours of CPU at 299x299. Tests of that default set CGAN_JAX_FEATURES=auto.
os.environ.setdefault('CGAN_JAX_FEATURES', 'classifier')

# The first pytest process of a run (the xdist controller, or a plain pytest) makes the run's
# shared folder; xdist workers and every script a test starts inherit it through the
# environment. In it: the XLA compilation cache, the locks below, and what `build_once` builds.
# The scripts tests start (train.py, eval.py, ...) cache every compile: the next script of the
# same recipe loads its steps instead of compiling them. The pytest processes themselves cache
# only compiles over a second (the other worker may need the same step): writing each of their
# thousands of small programs cost more than it saved (tests/test_speed_paths.py's model checks:
# 61 s with every compile cached, 42 s with none, 2-core EPYC, 2026-12-07). The cache has a
# size limit so that JAX guards it with a file lock: two processes writing and reading one
# entry at once is safe.
_SHARED_ENV = 'CGAN_JAX_TEST_SHARED'
OWNS_SHARED = _SHARED_ENV not in os.environ
if OWNS_SHARED:
  os.environ[_SHARED_ENV] = tempfile.mkdtemp(prefix='cgan_jax_tests_')
SHARED = pathlib.Path(os.environ[_SHARED_ENV])
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(SHARED / 'xla_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(8 << 30))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_DIR = '/usr/share/datasets/fashion-mnist'
# A tiny but real budget: the first 256 Fashion-MNIST images, 4 steps of 64 per epoch.
TINY = ['--config.num_train_examples=256', '--config.log_every_steps=2',
        '--config.allow_download=false']


def run_script(script: str, *args: str, timeout: float = 600, env: dict | None = None
               ) -> subprocess.CompletedProcess:
  """Runs one of the entry points as a user would, from the repository root."""
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **(env or {})})


@pytest.fixture(scope='session')
def fashion_dir() -> str:
  if not os.path.exists(os.path.join(FASHION_DIR, 'train-images-idx3-ubyte.gz')):
    pytest.fail(f'real Fashion-MNIST is missing from {FASHION_DIR}: '
                'apt-get install -y dataset-fashion-mnist')
  return FASHION_DIR


@pytest.fixture(scope='session')
def eval_cache() -> str:
  """The real-feature cache of eval.py / results.py that every test of the run shares (each
  file is written whole and renamed into place, so two workers may race to write one)."""
  return str(SHARED / 'cgan_jax_eval_cache')


@contextlib.contextmanager
def _flock(path: pathlib.Path, mode: int):
  with open(path, 'a') as f:
    fcntl.flock(f, mode)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def build_once(name: str, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """`SHARED/name`, made by `build(path)` in whichever process of the run asks first; the
  others wait for it. What is built is read-only by contract: a test that changes it copies
  it first. A build that failed is retried by the next asker (and fails its test again)."""
  path = SHARED / name
  with _flock(SHARED / f'{name}.lock', fcntl.LOCK_EX):
    if not (SHARED / f'{name}.built').exists():
      shutil.rmtree(path, ignore_errors=True)
      build(path)
      (SHARED / f'{name}.built').touch()
  return path


@pytest.fixture(scope='session')
def tiny_cgan(fashion_dir) -> str:
  """The seed CGAN after 4 steps of 64 real images on 4 devices, checkpoints at steps 2 and 4:
  trained once per run for the evaluation tests (eval.py's tables, the Inception tables)."""
  def train(workdir):
    proc = run_script('train.py', '--config=configs/cgan_fashion_mnist.py',
                      f'--workdir={workdir}', *TINY, '--config.num_epochs=1',
                      '--config.checkpoint_every_steps=2')
    assert proc.returncode == 0, proc.stderr[-3000:]
  return str(build_once('tiny_cgan', train))


# --------------------------------------------------------- tests that need the whole machine

@contextlib.contextmanager
def _machine(exclusive: bool):
  """A readers-writer lock over the run's processes: `whole_machine` tests (writers) run with
  no other test beside them; the rest (readers) run side by side. A waiting writer holds the
  gate, so that the readers behind it queue up instead of starving it."""
  gate, machine = SHARED / 'gate.lock', SHARED / 'machine.lock'
  if exclusive:
    with _flock(gate, fcntl.LOCK_EX), _flock(machine, fcntl.LOCK_EX):
      yield
  else:
    with _flock(gate, fcntl.LOCK_EX):
      pass
    with _flock(machine, fcntl.LOCK_SH):
      yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
  """Under xdist, each test's setup, call and teardown hold the machine lock (module
  fixtures are built in the setup of their first test and torn down in the teardown of their
  last, so they count too)."""
  if not os.environ.get('PYTEST_XDIST_WORKER'):
    return (yield)
  with _machine(exclusive=item.get_closest_marker('whole_machine') is not None):
    return (yield)


# ------------------------------------------------------------- wall time, slowest, budget

_START = time.monotonic()
_SECONDS: collections.Counter = collections.Counter()  # per test: setup + call + teardown
_LONG: set[str] = set()  # tests marked long (the xdist controller sees reports, not items)


def pytest_addoption(parser):
  parser.addini('test_budget_seconds', 'seconds a test may take (setup + call + teardown) '
                'before the summary lists it, unless it is marked long', default='60')


def pytest_collection_modifyitems(config, items):
  """The order in which `make test` hands whole modules to its two workers (`--dist loadscope
  --no-loadscope-reorder`: a module runs on one worker, so its fixtures are built once):
  modules with a test marked long first, then those with a slow one, then the larger ones (a
  long module started last keeps one worker busy while the other idles)."""
  count = collections.Counter(item.module for item in items)
  marked = lambda name: {item.module for item in items if item.get_closest_marker(name)}
  long, slow = marked('long'), marked('slow')
  items.sort(key=lambda item: (item.module not in long, item.module not in slow,
                               -count[item.module]))
  for item in items:
    mark = item.get_closest_marker('long')
    if mark is not None and (not mark.args or not str(mark.args[0]).strip()):
      raise pytest.UsageError(f'{item.nodeid}: @pytest.mark.long needs the reason it is long')


def pytest_runtest_logreport(report):
  _SECONDS[report.nodeid] += report.duration
  if 'long' in report.keywords:
    _LONG.add(report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
  if os.environ.get('PYTEST_XDIST_WORKER') or not _SECONDS:
    return
  tr = terminalreporter
  budget = float(config.getini('test_budget_seconds'))
  wall = time.monotonic() - _START
  workers = getattr(config.option, 'numprocesses', None) or 1
  tr.write_sep('=', f'wall time {wall / 60:.1f} min, {len(_SECONDS)} tests, '
               f'{sum(_SECONDS.values()) / 60:.1f} test-minutes on {workers} worker(s)')
  tr.write_line('slowest 10 (setup + call + teardown; a module fixture counts in its first '
                'test):')
  for nodeid, seconds in _SECONDS.most_common(10):
    tag = '  [long]' if nodeid in _LONG else ''
    tr.write_line(f'  {seconds:7.1f} s  {nodeid}{tag}')
  over = [(s, n) for n, s in _SECONDS.items() if s > budget and n not in _LONG]
  if over:
    tr.write_sep('-', f'over the {budget:.0f} s per-test budget, not marked long')
    for seconds, nodeid in sorted(over, reverse=True):
      tr.write_line(f'  {seconds:7.1f} s  {nodeid}')


def pytest_unconfigure(config):
  if OWNS_SHARED:  # the controller (or a plain pytest), never an xdist worker
    shutil.rmtree(SHARED, ignore_errors=True)
