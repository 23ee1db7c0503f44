"""Multi-process training on loopback: 2 processes x 2 CPU devices vs 1 process x 4 devices.

Every process is a real `train.py` started as a user would (see README "Multi-host"); CPU
collectives between processes go through gloo. Each launch is bounded by a timeout and every
process is killed if a test fails.
"""

import glob
import os
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
  """train.py as processes 0..n-1 of one run on 127.0.0.1, their output in files."""

  def __init__(self, logdir, env):
    self.logdir, self.env, self.procs = logdir, env, []

  def start(self, *args, n=2, devices_each=2, heartbeat=5):
    address = f'127.0.0.1:{_free_port()}'
    env = {**os.environ, **self.env, 'JAX_NUM_CPU_DEVICES': str(devices_each)}
    self.procs = []
    for i in range(n):
      with open(self.log_path(i), 'w') as out:
        self.procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, 'train.py'), *args,
             f'--coordinator_address={address}', f'--num_processes={n}', f'--process_id={i}',
             f'--heartbeat_timeout={heartbeat}', '--init_timeout=120'],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
    return self

  def log_path(self, i):
    return os.path.join(self.logdir, f'process_{i}.log')

  def log(self, i):
    with open(self.log_path(i)) as f:
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
def processes(tmp_path, jax_env):
  procs = _Processes(str(tmp_path), jax_env)
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


def _assert_same_training(multi, single, initial):
  """Same state to fp tolerance; and training moved it far beyond that tolerance."""
  assert int(multi.step) == int(single.step)
  np.testing.assert_array_equal(multi.rng, single.rng)
  moved = 0.0
  for (path, a), b, a0 in zip(jax.tree.leaves_with_path(multi), jax.tree.leaves(single),
                              jax.tree.leaves(initial)):
    a, b, a0 = (np.asarray(x, np.float64) for x in (a, b, a0))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    moved = max(moved, float(np.max(np.abs(a - a0), initial=0.0)))
  assert moved > 1e-3, 'training did not move the parameters: the comparison proves nothing'


def test_two_processes_train_like_one_process_with_four_devices(processes, tmp_path,
                                                               fashion_dir, jax_env):
  config = tmp_path / 'sgd_config.py'
  config.write_text(SGD_CONFIG)
  multi, single = tmp_path / 'multi', tmp_path / 'single'

  # 2 processes x 2 devices: one epoch (4 steps of 64), then a resume for a second epoch.
  t0 = time.monotonic()
  codes = processes.start(*_train_args(config, multi, '--config.num_epochs=1')).wait()
  assert codes == [0, 0], processes.log(0)[-3000:] + processes.log(1)[-3000:]
  first = time.monotonic() - t0
  assert _checkpoint_steps(multi) == [4]
  # Process 0 alone reports progress and writes events and grids; process 1 stays quiet.
  assert 'step 4/4' in processes.log(0) and 'step 4/4' not in processes.log(1)
  assert len(glob.glob(str(multi / 'events.out.tfevents.*'))) == 1
  assert os.listdir(multi / 'samples') == ['epoch_0001.png']

  codes = processes.start(*_train_args(config, multi, '--config.num_epochs=2')).wait()
  assert codes == [0, 0], processes.log(0)[-3000:] + processes.log(1)[-3000:]
  assert 'Resumed from' in processes.log(0) and 'checkpoints/4' in processes.log(0)
  assert _checkpoint_steps(multi) == [4, 8]

  # The same 8 steps in one process with 4 devices (conftest's JAX_NUM_CPU_DEVICES=4).
  proc = run_script('train.py', *_train_args(config, single, '--config.num_epochs=2'),
                    timeout=LAUNCH_TIMEOUT, env={**jax_env, 'JAX_NUM_CPU_DEVICES': '4'})
  assert proc.returncode == 0, proc.stderr[-3000:]

  from cgan_jax import input_pipeline, sampling
  from cgan_jax import state as state_lib
  gan, _ = sampling.load(str(single))
  initial = jax.device_get(state_lib.init_state(
      gan, jax.random.PRNGKey(0), input_pipeline.DATASETS['fashion_mnist'].image_shape))
  for step in (4, 8):  # 8: after the multi-process resume
    _assert_same_training(_state(multi, step), _state(single, step), initial)
  print(f'2 processes, first launch: {first:.0f} s')


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


@pytest.mark.parametrize('victim', [1, 0])
def test_a_killed_process_stops_the_survivor_with_a_clear_message(processes, tmp_path, victim,
                                                                  fashion_dir):
  """SIGKILL one process mid-training: the other must not hang; it exits, saying why."""
  args = _train_args('configs/cgan_fashion_mnist.py', tmp_path / 'w', '--config.num_epochs=100')
  processes.start(*args, heartbeat=3)
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
