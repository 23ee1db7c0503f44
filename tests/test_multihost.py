"""Multi-process training on loopback: 2 processes x 2 CPU devices vs 1 process x 4 devices.

Every process is a real `train.py` started as a user would (see README "Multi-host"); CPU
collectives between processes go through gloo. Each launch is bounded by a timeout and every
process is killed if a test fails.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import ROOT, TINY, run_script

LAUNCH_TIMEOUT = 420  # seconds for one multi-process launch (compiles included)
KILL_BOUND = 60       # the survivor of a SIGKILL must be gone within this many seconds

# The seed-000 CGAN (model, data, seed, batch 64) with plain SGD: parameters then move by
# lr * grad, so fp noise in the cross-process sums stays fp noise. (Adam turns that noise in
# ~0 gradients into lr-sized steps; tests/test_steps.py shows the same for 1 vs 4 devices.)
SGD_CONFIG = """
import ml_collections
from configs import cgan_fashion_mnist

def get_config():
  c = cgan_fashion_mnist.get_config()
  c.g_optimizer = ml_collections.ConfigDict(dict(name='sgd', learning_rate=0.01))
  c.d_optimizer = ml_collections.ConfigDict(dict(name='sgd', learning_rate=0.01))
  return c
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class _Processes:
  """An entry point as processes 0..n-1 of one job on 127.0.0.1, their output in files."""

  def __init__(self, logdir):
    self.logdir, self.procs = logdir, []

  def start(self, script, *args, n=2, devices_each=2, heartbeat=5):
    address = f'127.0.0.1:{_free_port()}'
    env = {**os.environ, 'JAX_NUM_CPU_DEVICES': str(devices_each)}
    self.procs = []
    for i in range(n):
      with open(self._path(i, 'out'), 'w') as out, open(self._path(i, 'log'), 'w') as err:
        self.procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, script), *args,
             f'--coordinator_address={address}', f'--num_processes={n}', f'--process_id={i}',
             f'--heartbeat_timeout={heartbeat}', '--init_timeout=120'],
            cwd=ROOT, env=env, stdout=out, stderr=err))
    return self

  def _path(self, i, kind):
    return os.path.join(self.logdir, f'process_{i}.{kind}')

  def log(self, i):
    """Process i's stderr."""
    with open(self._path(i, 'log')) as f:
      return f.read()

  def stdout(self, i):
    with open(self._path(i, 'out')) as f:
      return f.read()

  def wait(self, timeout=LAUNCH_TIMEOUT):
    """Exit codes of all processes; kills them all (and fails) past `timeout`."""
    deadline = time.monotonic() + timeout
    for p in self.procs:
      try:
        p.wait(timeout=max(deadline - time.monotonic(), 0.1))
      except subprocess.TimeoutExpired:
        self.kill()
        pytest.fail(f'multi-process run still going after {timeout} s; logs:\n'
                    + '\n'.join(self.log(i)[-2000:] for i in range(len(self.procs))))
    return [p.returncode for p in self.procs]

  def kill(self):
    for p in self.procs:
      if p.poll() is None:
        p.kill()
        p.wait()


@pytest.fixture
def processes(tmp_path):
  procs = _Processes(str(tmp_path))
  yield procs
  procs.kill()  # whatever happened in the test


def _train_args(config_path, workdir, *extra):
  return (f'--config={config_path}', f'--workdir={workdir}', *TINY, *extra)


def _state(workdir, step):
  from cgan_jax import sampling
  return jax.device_get(sampling.load(str(workdir), step)[1])


def _checkpoint_steps(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def _flat(tree) -> np.ndarray:
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def _assert_same_training(multi, single, initial, rtol=1e-3):
  """Same state up to fp noise: |multi - single| <= rtol |single - initial| for each part.

  Measured after 4 steps: 2 processes x 2 devices vs 1 x 4 differ by 4e-5 of the distance
  trained (G), 5e-6 (D), 2e-7 (BatchNorm statistics); 1 process x 2 devices vs 1 x 4 already
  differ by 3e-3 (G): the sums run in another order. Wrong batches or a missing cross-process
  average differ by O(1).
  """
  assert int(multi.step) == int(single.step)
  np.testing.assert_array_equal(multi.rng, single.rng)
  for part in ('g_params', 'd_params', 'g_stats', 'd_stats'):
    a, b, b0 = (_flat(getattr(s, part)) for s in (multi, single, initial))
    moved = np.linalg.norm(b - b0)
    assert moved > 0, f'{part}: training did not move it; the comparison would prove nothing'
    assert np.linalg.norm(a - b) <= rtol * moved, (part, np.linalg.norm(a - b) / moved)


@pytest.mark.slow
@pytest.mark.whole_machine  # three trainers at once
@pytest.mark.long('six trainer and four eval.py processes: the one check that 2 processes x 2 '
                  'devices train, resume and evaluate like 1 process x 4')
def test_two_processes_train_like_one_process_with_four_devices(processes, tmp_path,
                                                               fashion_dir):
  """Train (and resume) as 2 processes x 2 devices; then eval.py as 2 processes."""
  config = tmp_path / 'sgd_config.py'
  config.write_text(SGD_CONFIG)
  multi, resumed, single = tmp_path / 'multi', tmp_path / 'resumed', tmp_path / 'single'
  # The same 4 steps in one process with 4 devices, alongside the first multi-process launch.
  reference = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'train.py'),
       *_train_args(config, single, '--config.num_epochs=1')],
      cwd=ROOT, env={**os.environ, 'JAX_NUM_CPU_DEVICES': '4'},
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    # 2 processes x 2 devices: two epochs of 4 steps of 64 images.
    codes = processes.start('train.py', *_train_args(config, multi, '--config.num_epochs=2')
                            ).wait()
    assert codes == [0, 0], processes.log(0)[-3000:] + processes.log(1)[-3000:]
    assert _checkpoint_steps(multi) == [4, 8]
    # Process 0 alone reports progress and writes events and grids; process 1 stays quiet.
    assert 'step 8/8' in processes.log(0) and 'step 8/8' not in processes.log(1)
    assert len(glob.glob(str(multi / 'events.out.tfevents.*'))) == 1
    assert sorted(os.listdir(multi / 'samples')) == ['epoch_0001.png', 'epoch_0002.png']
    _, err = reference.communicate(timeout=LAUNCH_TIMEOUT)
    assert reference.returncode == 0, err[-3000:]
  finally:
    if reference.poll() is None:
      reference.kill()
      reference.wait()

  from cgan_jax import input_pipeline, sampling
  from cgan_jax import state as state_lib
  gan, _ = sampling.load(str(single))
  initial = jax.device_get(state_lib.init_state(
      gan, jax.random.PRNGKey(0), input_pipeline.DATASETS['fashion_mnist'].image_shape))
  _assert_same_training(_state(multi, 4), _state(single, 4), initial)

  # Resume from step 4 with 2 processes: the same bits as the uninterrupted run at step 8.
  shutil.copytree(multi, resumed)
  shutil.rmtree(resumed / 'checkpoints' / '8')
  codes = processes.start('train.py', *_train_args(config, resumed, '--config.num_epochs=2')
                          ).wait()
  assert codes == [0, 0], processes.log(0)[-3000:] + processes.log(1)[-3000:]
  assert 'Resumed from' in processes.log(0) and 'checkpoints/4' in processes.log(0)
  for a, b in zip(jax.tree.leaves(_state(resumed, 8)), jax.tree.leaves(_state(multi, 8))):
    np.testing.assert_array_equal(a, b)

  # eval.py as 2 processes: process 0 prints the single-process table; process 1 nothing.
  args = (f'--workdir={multi}', '--num_samples=1000', '--kid_subsets=10',
          '--kid_subset_size=100', '--format=csv', f'--cache_dir={tmp_path / "cache"}')
  assert processes.start('eval.py', *args).wait() == [0, 0], processes.log(0)[-3000:]
  alone = run_script('eval.py', *args, timeout=LAUNCH_TIMEOUT)
  assert alone.returncode == 0, alone.stderr[-3000:]
  assert processes.stdout(0) == alone.stdout and 'real test split' in alone.stdout
  assert processes.stdout(1) == ''


def test_settings_from_flags_and_environment():
  from cgan_jax import distributed
  assert distributed.settings(environ={}) is None  # no flags, no env: a plain single process
  env = {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234', 'JAX_NUM_PROCESSES': '4',
         'JAX_PROCESS_ID': '3'}
  assert distributed.settings(environ=env) == distributed.Settings('10.0.0.1:1234', 4, 3)
  assert distributed.settings(process_id=1, environ=env).process_id == 1  # flags win
  auto = distributed.settings(auto=True, environ={})  # JAX detects the rest (TPU, SLURM)
  assert auto == distributed.Settings(None, None, None)
  for kwargs, needle in [(dict(process_id=4), 'process_id must be in 0..3'),
                         (dict(num_processes=0), 'at least 1'),
                         (dict(coordinator_address='10.0.0.1'), 'HOST:PORT'),
                         (dict(heartbeat_timeout=0), 'heartbeat_timeout')]:
    with pytest.raises(distributed.UserError, match=needle):
      distributed.settings(**kwargs, environ=env)
  with pytest.raises(distributed.UserError, match='integer'):
    distributed.settings(environ={**env, 'JAX_PROCESS_ID': 'one'})
  with pytest.raises(distributed.UserError, match='JAX_COORDINATOR_ADDRESS'):
    distributed.settings(num_processes=2, process_id=0, environ={})


def test_single_process_mesh_is_unchanged():
  from cgan_jax import distributed
  assert distributed.mesh_devices() == jax.devices()
  assert distributed.mesh_devices(2) == jax.devices()[:2]
  with pytest.raises(distributed.UserError, match='only 4 devices'):
    distributed.mesh_devices(5)


def test_bad_multiprocess_flags_give_one_error_line(tmp_path):
  base = ('--config=configs/cgan_fashion_mnist.py', f'--workdir={tmp_path / "w"}')
  for flags, needle in [(('--num_processes=2', '--process_id=2',
                          '--coordinator_address=127.0.0.1:1234'), 'process_id must be in 0..1'),
                        (('--num_processes=2', '--process_id=1'), '--coordinator_address'),
                        (('--num_processes=2', '--process_id=0',
                          '--coordinator_address=localhost'), 'HOST:PORT')]:
    proc = run_script('train.py', *base, *flags, timeout=120)
    _assert_one_error_line(proc, needle)
  assert not (tmp_path / 'w').exists()


def test_unreachable_coordinator_is_reported(tmp_path):
  t0 = time.monotonic()
  proc = run_script('train.py', '--config=configs/cgan_fashion_mnist.py',
                    f'--workdir={tmp_path / "w"}', '--num_processes=2', '--process_id=1',
                    f'--coordinator_address=127.0.0.1:{_free_port()}', '--init_timeout=3',
                    timeout=120)
  _assert_one_error_line(proc, 'cannot reach the coordinator')
  assert time.monotonic() - t0 < 60


def _assert_one_error_line(proc, needle):
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert 'Traceback' not in proc.stderr, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1, proc.stderr
  assert needle.lower() in errors[0].lower(), errors[0]


@pytest.mark.whole_machine  # two trainers; the survivor's exit is timed
@pytest.mark.parametrize('victim', [1, pytest.param(0, marks=pytest.mark.slow)])
def test_a_killed_process_stops_the_survivor_with_a_clear_message(processes, tmp_path, victim,
                                                                  fashion_dir):
  """SIGKILL one process mid-training: the other must not hang; it exits, saying why."""
  args = _train_args('configs/cgan_fashion_mnist.py', tmp_path / 'w', '--config.num_epochs=100')
  processes.start('train.py', *args, heartbeat=3)
  deadline = time.monotonic() + LAUNCH_TIMEOUT
  while 'step 2/' not in processes.log(0):  # training is under way (the first collectives ran)
    if time.monotonic() > deadline or any(p.poll() is not None for p in processes.procs):
      processes.kill()
      pytest.fail('training did not start:\n' + processes.log(0)[-3000:])
    time.sleep(0.5)
  survivor = 1 - victim
  processes.procs[victim].send_signal(signal.SIGKILL)
  killed_at = time.monotonic()
  try:
    code = processes.procs[survivor].wait(timeout=KILL_BOUND)
  except subprocess.TimeoutExpired:
    processes.kill()
    pytest.fail(f'process {survivor} still running {KILL_BOUND} s after process {victim} died')
  took = time.monotonic() - killed_at
  log = processes.log(survivor)
  assert code != 0, log[-3000:]
  # Either a collective fails first (our line), or JAX's heartbeat check aborts the process
  # (JAX's own words; no Python runs then). Both name the cause; no hang.
  ours = [l for l in log.splitlines()
          if l.startswith('error: ') and 'lost contact with the others' in l]
  assert ours or 'most likely indicates that another task died' in log, log[-3000:]
  assert 'Traceback' not in log, log[-3000:]
  print(f'survivor {survivor} exited {code} {took:.1f} s after process {victim} was killed')
