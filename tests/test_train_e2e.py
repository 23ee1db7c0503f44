"""train.py and generate.py end to end on real Fashion-MNIST, on a tiny budget."""

import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, TINY, run_script

CONFIG = '--config=configs/cgan_fashion_mnist.py'


def _train(workdir, *extra, **kw):
  return run_script('train.py', CONFIG, f'--workdir={workdir}', *TINY, *extra, **kw)


def _checkpoint_steps(workdir) -> list[int]:
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def _tree_digest(directory) -> dict[str, str]:
  """sha256 of every file under `directory`, to prove a checkpoint was not touched."""
  out = {}
  for path in sorted(glob.glob(os.path.join(directory, '**'), recursive=True)):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _assert_one_line_error(proc, *needles):
  assert proc.returncode != 0, proc.stdout + proc.stderr
  assert 'Traceback' not in proc.stderr, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1, proc.stderr
  for needle in needles:
    assert needle.lower() in errors[0].lower(), errors[0]


def _params(workdir):
  from cgan_jax import sampling
  _, state = sampling.load(str(workdir))
  return jax.device_get(state)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, fashion_dir):
  """One real tiny run: 2 epochs x 4 steps of 64 real images, on 4 CPU devices."""
  workdir = tmp_path_factory.mktemp('run') / 'cgan'
  proc = _train(workdir, '--config.num_epochs=2')
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_train_writes_checkpoints_events_and_samples(trained):
  workdir, proc = trained
  assert _checkpoint_steps(workdir) == [4, 8]
  for epoch in (1, 2):
    png = Image.open(workdir / 'samples' / f'epoch_{epoch:04d}.png')
    assert png.size == (10 * 30 + 2, 10 * 30 + 2) and png.mode == 'L'
  events = glob.glob(str(workdir / 'events.out.tfevents.*'))
  assert events
  import tensorflow as tf
  tags = {v.tag for e in events for ev in tf.compat.v1.train.summary_iterator(e)
          for v in ev.summary.value}
  assert {'d_loss', 'g_loss', 'D(x)', 'D(G(z))', 'samples',  # ours
          'steps_per_sec', 'uptime',  # clu's ReportProgress
          'images_per_sec', 'eta_minutes'} <= tags
  assert 'step 8/8' in proc.stderr and 'ETA' in proc.stderr  # the progress line


def test_rerun_resumes_and_continues(trained, tmp_path):
  workdir, _ = trained
  proc = _train(workdir, '--config.num_epochs=3')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Resumed from' in proc.stderr and 'checkpoints/8' in proc.stderr
  assert _checkpoint_steps(workdir)[-1] == 12
  assert (workdir / 'samples' / 'epoch_0003.png').exists()


def test_generate_draws_requested_labels(trained, tmp_path):
  workdir, _ = trained
  out = tmp_path / 'seven.png'
  proc = run_script('generate.py', f'--workdir={workdir}', '--labels=7,7,1,9', '--scale=1',
                    f'--out={out}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  img = np.asarray(Image.open(out))
  assert img.shape == (2 + 30, 2 + 4 * 30)
  # Same seed, same picture; the two 7s share a label but not their noise.
  again = tmp_path / 'again.png'
  run_script('generate.py', f'--workdir={workdir}', '--labels=7,7,1,9', '--scale=1',
             f'--out={again}')
  np.testing.assert_array_equal(img, np.asarray(Image.open(again)))
  tiles = [img[2:30, 2 + 30 * i:30 + 30 * i] for i in range(4)]
  assert not np.array_equal(tiles[0], tiles[1])


@pytest.mark.parametrize('labels,needle', [('7,10', 'out of range'), ('3,seven', "unknown fashion_mnist class 'seven'"),
                                           ('-1', 'out of range')])
def test_generate_refuses_bad_labels(trained, tmp_path, labels, needle):
  workdir, _ = trained
  proc = run_script('generate.py', f'--workdir={workdir}', f'--labels={labels}',
                    f'--out={tmp_path / "x.png"}')
  _assert_one_line_error(proc, needle)
  assert not (tmp_path / 'x.png').exists()


def test_generate_refuses_a_workdir_without_checkpoints(tmp_path):
  proc = run_script('generate.py', f'--workdir={tmp_path}', '--out=x.png')
  _assert_one_line_error(proc, 'no checkpoints')


@pytest.mark.parametrize('override,needle', [('--config.model.conditioning=none', 'model.conditioning'),
                                             ('--config.z_dim=100', 'z_dim'),
                                             ('--config.seed=1', 'seed')])
def test_refuses_a_checkpoint_of_another_config(trained, override, needle):
  workdir, _ = trained
  before = _tree_digest(workdir / 'checkpoints')
  proc = _train(workdir, '--config.num_epochs=5', override)
  _assert_one_line_error(proc, 'different run', needle)
  assert _tree_digest(workdir / 'checkpoints') == before


@pytest.mark.parametrize('saved_model', [
    'infogan_cgan', {'name': 'infogan', 'conditioning': 'concat'}],
    ids=['before_model_options', 'before_minibatch_std'])
def test_resumes_a_checkpoint_written_before_model_options(trained, tmp_path, saved_model):
  """Its config says model='infogan_cgan' (the registry name then), or has the group without
  an option the family gained since (minibatch_std): read as today's group, it equals the
  recipe's config, so the run resumes."""
  workdir, _ = trained
  old = tmp_path / 'old'
  shutil.copytree(workdir, old)
  path = old / 'checkpoints' / '8' / 'meta' / 'metadata'
  meta = json.loads(path.read_text())
  assert meta['config']['model'] == {'name': 'infogan', 'conditioning': 'concat',
                                     'minibatch_std': 0}
  meta['config']['model'] = saved_model
  path.write_text(json.dumps(meta))
  proc = _train(old, '--config.num_epochs=3')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _checkpoint_steps(old)[-1] == 12


@pytest.mark.parametrize('override,needle', [
    ('--config.dataset=stl10', 'unknown dataset'),
    ('--config.model.name=stylegan9', 'unknown model family'),
    ('--config.model.conditioning=label', 'model.conditioning must be one of'),
    ('--config.model.norm=layer', "--config.model.norm: the config has no field 'norm'"),
    ('--config.z_dimm=3', "--config.z_dimm: the config has no field 'z_dimm'"),
    ('--config.loss=hinge2', 'unknown loss'),
])
def test_refuses_unknown_names(tmp_path, override, needle):
  proc = _train(tmp_path / 'w', override)
  _assert_one_line_error(proc, needle)
  assert not (tmp_path / 'w').exists()  # refused before touching the disk


CONFIG_FILES = {
    'syntax.py': ('def get_config(:\n', 'syntax error in {path}, line 1'),
    'no_get_config.py': ('x = 1\n', '{path} defines no get_config()'),
    'raising.py': ('def get_config():\n  raise ValueError("no such recipe")\n',
                   'get_config() in {path} raised ValueError: no such recipe'),
    'importing.py': ('import no_such_module_xq\n', 'running {path} raised ModuleNotFoundError'),
}


@pytest.mark.parametrize('name', sorted(CONFIG_FILES) + ['absent.py'])
def test_a_broken_config_file_is_one_error_line_naming_it(tmp_path, name):
  path = tmp_path / name
  if name in CONFIG_FILES:
    path.write_text(CONFIG_FILES[name][0])
  needle = CONFIG_FILES[name][1] if name in CONFIG_FILES else 'no such file {path}'
  proc = _train(tmp_path / 'w', f'--config={path}')
  _assert_one_line_error(proc, f'--config={path}', needle.format(path=path))
  assert proc.returncode == 2 and not (tmp_path / 'w').exists()


@pytest.mark.parametrize('override,needle', [
    ('--config.batch_size=abc', "--config.batch_size=abc: invalid literal for int()"),
    ('--config.fork.gamma=1', "--config.fork.gamma: the config has no field 'fork'"),
])
def test_an_unreadable_override_is_one_error_line(tmp_path, override, needle):
  proc = run_script('train.py', f'--workdir={tmp_path / "w"}', override)  # the default config
  _assert_one_line_error(proc, needle)
  assert proc.returncode == 2


def test_refuses_missing_data(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  proc = _train(tmp_path / 'w', '--config.dataset=mnist', f'--config.data_dir={empty}',
                env={'CGAN_JAX_DATA_DIR': ''})
  _assert_one_line_error(proc, 'mnist')
  assert str(empty) in proc.stderr


def test_refuses_corrupt_data(tmp_path, fashion_dir):
  bad = tmp_path / 'bad'
  bad.mkdir()
  for name in os.listdir(fashion_dir):
    with open(os.path.join(fashion_dir, name), 'rb') as f:
      data = f.read()
    if name.startswith('train-images'):
      data = data[:len(data) // 2]  # a truncated download
    (bad / name).write_bytes(data)
  proc = _train(tmp_path / 'w', f'--config.data_dir={bad}')
  _assert_one_line_error(proc, 'train-images')


def test_refuses_an_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  proc = _train(blocker / 'run')
  _assert_one_line_error(proc, 'not writable')


@pytest.mark.long('three train.py runs (uninterrupted, SIGKILLed, resumed): bit-identity needs '
                  'all three')
def test_killed_run_resumes_bit_identically(tmp_path, fashion_dir):
  """SIGKILL between checkpoints, resume to the end == one uninterrupted run, bit for bit."""
  extra = ('--config.num_epochs=3', '--config.checkpoint_every_steps=2')
  straight = _train(tmp_path / 'straight', *extra)
  assert straight.returncode == 0, straight.stderr[-3000:]

  killed_dir = tmp_path / 'killed'
  cmd = [sys.executable, os.path.join(ROOT, 'train.py'), CONFIG, f'--workdir={killed_dir}',
         *TINY, *extra]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  marker = killed_dir / 'checkpoints' / '6' / 'commit_success.txt'
  while not marker.exists() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert marker.exists(), 'the run never reached its step-6 checkpoint'
  assert 6 <= _checkpoint_steps(killed_dir)[-1] < 12  # it died mid-run

  resumed = _train(killed_dir, *extra)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resumed from' in resumed.stderr
  a, b = _params(tmp_path / 'straight'), _params(killed_dir)
  assert int(a.step) == int(b.step) == 12
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_trains_without_tensorflow(tmp_path, fashion_dir):
  """The GPU hosts have no TensorFlow: IDX files + numpy pipeline + log-only writer."""
  script = f'''
import sys
sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None
from cgan_jax import trainer
from configs import cgan_fashion_mnist
c = cgan_fashion_mnist.get_config()
c.num_train_examples, c.num_epochs, c.pipeline, c.allow_download = 128, 1, 'numpy', False
trainer.train_and_evaluate(c, {str(tmp_path / 'w')!r})
assert 'tensorflow' not in sys.modules or sys.modules['tensorflow'] is None
print('OK')
'''
  out = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0 and 'OK' in out.stdout, out.stderr[-3000:]
  assert _checkpoint_steps(tmp_path / 'w') == [2]
  assert (tmp_path / 'w' / 'samples' / 'epoch_0001.png').exists()
