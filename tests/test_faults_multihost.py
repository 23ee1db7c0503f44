"""Preemption of a 2-process run (2 x 2 CPU devices on loopback): a real SIGTERM to one process
only; both must stop at the same step, after one checkpoint of it, with status 143; the lock
is held once (by process 0)."""

import json
import os
import re
import signal
import time

import pytest

from test_faults import CONFIG, COMMON, _state, _step_digests, _steps
from test_multihost import LAUNCH_TIMEOUT, _Processes

# One epoch of the whole split: 937 steps, a checkpoint every 100.
LONG = ['--config.num_epochs=1', '--config.checkpoint_every_steps=100']


@pytest.fixture
def processes(tmp_path):
  procs = _Processes(str(tmp_path))
  yield procs
  procs.kill()


@pytest.mark.slow
@pytest.mark.whole_machine  # two trainers in one job
def test_sigterm_to_one_process_stops_all_at_one_step(processes, tmp_path, fashion_dir):
  workdir = tmp_path / 'run'
  processes.start('train.py', CONFIG, f'--workdir={workdir}', *COMMON, *LONG)
  marker = workdir / 'checkpoints' / '100' / 'commit_success.txt'
  deadline = time.monotonic() + LAUNCH_TIMEOUT
  while not marker.exists() and time.monotonic() < deadline and all(
      p.poll() is None for p in processes.procs):
    time.sleep(0.05)
  assert marker.exists(), processes.log(0)[-3000:] + processes.log(1)[-3000:]
  holder = json.loads((workdir / 'train.lock').read_text())
  assert holder['pid'] == processes.procs[0].pid  # one lock, held by process 0
  before = _step_digests(workdir)
  os.kill(processes.procs[1].pid, signal.SIGTERM)  # as a scheduler reclaiming one host
  codes = processes.wait()
  logs = [processes.log(i) for i in range(2)]
  assert codes == [143, 143], logs[0][-3000:] + logs[1][-3000:]
  stops = [re.findall(r'^stopped by .* at step (\d+) of 937', log, re.M) for log in logs]
  assert len(stops[0]) == len(stops[1]) == 1, logs
  assert stops[0] == stops[1]  # the step every process agreed on
  step = int(stops[0][0])
  assert 100 < step < 937 and _steps(workdir)[-1] == step
  assert int(_state(workdir).step) == step
  after = _step_digests(workdir)
  assert {s: after[s] for s in before} == before
  assert (workdir / 'train.lock').read_text() == ''
