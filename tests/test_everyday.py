"""Everyday use, through the entry points on a tiny real run: quiet terminals (library chatter
in the workdir's train.log instead), class names for generate.py, visible PNGs and .npz arrays,
eval.py's metric-vs-step plot, and a profiler trace when asked for."""

import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, TINY

CONFIG = '--config=configs/cgan_mlp_concat.py'  # the cheapest conditional recipe
# What a user must not see unless they ask (--verbosity=1): TensorFlow's oneDNN notice, absl's
# C++ pre-init warning, Orbax's read-only notice and its INFO narration of every save.
CHATTER = re.compile(r'oneDNN|absl::InitializeLog|Given directory is read only|orbax|'
                     r'checkpoint_manager|TF_ENABLE|port\.cc|cpu_feature_guard', re.IGNORECASE)
NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
         'Bag', 'Ankle boot')


@pytest.fixture(scope='module')
def user_env():
  """The environment of a user's shell: none of the TF variables the test session sets."""
  return {k: v for k, v in os.environ.items() if not k.startswith('TF_')}


def _run(script, *args, env):
  """An entry point run with exactly `env` (conftest's run_script adds os.environ's TF_ ones)."""
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600, env=env)


def _no_chatter(proc):
  text = proc.stdout + proc.stderr
  assert proc.returncode == 0, text[-3000:]
  assert not CHATTER.search(text), text[-3000:]


@pytest.fixture(scope='module')
def run(tmp_path_factory, fashion_dir, user_env):
  """2 epochs x 4 steps of 64 real images, with a profile of steps 3-4."""
  workdir = tmp_path_factory.mktemp('everyday') / 'cgan'
  proc = _run('train.py', CONFIG, f'--workdir={workdir}', *TINY, '--config.num_epochs=2',
              '--config.profile_steps=2', env=user_env)
  return workdir, proc


def test_train_shows_only_its_own_lines_and_logs_the_rest_to_a_file(run):
  workdir, proc = run
  _no_chatter(proc)
  lines = proc.stderr.splitlines()
  assert re.match(r'\d\d:\d\d:\d\d Input: ', lines[0]), proc.stderr  # ours, short
  assert any('step 8/8 (epoch 2/2)' in l and 'img/s' in l and 'ETA' in l for l in lines)
  log = (workdir / 'train.log').read_text()
  assert 'orbax' in log or 'checkpoint_manager' in log  # the chatter went here, not nowhere
  assert 'step 8/8' in log


def test_profile_steps_writes_a_trace_for_tensorboard(run):
  workdir, proc = run
  traces = glob.glob(str(workdir / 'plugins' / 'profile' / '*' / '*.xplane.pb'))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
  assert 'profile of steps 3-4' in proc.stderr


def test_generate_by_class_name_to_npz(run, tmp_path, user_env):
  workdir, _ = run
  out = tmp_path / 'shoes.npz'
  proc = _run('generate.py', f'--workdir={workdir}', '--labels=sneaker, Ankle Boot,BAG,7',
              '--num_per_label=3', f'--out={out}', env=user_env)
  _no_chatter(proc)
  arrays = np.load(out)
  assert arrays['images'].shape == (12, 28, 28, 1) and arrays['images'].dtype == np.uint8
  assert arrays['labels'].tolist() == [7] * 3 + [9] * 3 + [8] * 3 + [7] * 3
  assert tuple(arrays['class_names']) == NAMES and int(arrays['step']) == 8
  assert 'Sneaker, Ankle boot, Bag' in proc.stdout


def test_unknown_class_name_is_one_error_listing_the_classes(run, tmp_path, user_env):
  workdir, _ = run
  proc = _run('generate.py', f'--workdir={workdir}', '--labels=sneaker,sandals',
              f'--out={tmp_path / "x.png"}', env=user_env)
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
  assert "'sandals'" in errors[0] and all(name in errors[0] for name in NAMES)
  assert not (tmp_path / 'x.png').exists()


@pytest.mark.parametrize('args, size', [
    # 2 images in one row: (2 * (28 + 2) + 2) x (28 + 2 + 2) pixels, times the scale.
    (['--labels=7,1', '--scale=3'], (62 * 3, 32 * 3)),
    (['--labels=7,1'], (62 * 5, 32 * 5)),  # default: 28 px -> x5, at least 128 px an image
    # --labels=all: one row per class, --num_per_label columns.
    (['--labels=all', '--num_per_label=2', '--scale=1'], (2 * 30 + 2, 10 * 30 + 2)),
])
def test_png_is_upscaled_and_laid_out(run, tmp_path, args, size, user_env):
  workdir, _ = run
  out = tmp_path / 'g.png'
  proc = _run('generate.py', f'--workdir={workdir}', *args, f'--out={out}', env=user_env)
  _no_chatter(proc)
  assert Image.open(out).size == size


def test_verbosity_shows_the_library_lines(run, tmp_path, user_env):
  workdir, _ = run
  proc = _run('generate.py', f'--workdir={workdir}', '--labels=7', '--verbosity=1',
              f'--out={tmp_path / "g.png"}', env=user_env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Given directory is read only' in proc.stderr


def test_eval_plot_has_a_panel_per_metric(run, tmp_path, user_env):
  workdir, _ = run
  out = tmp_path / 'curves.png'
  proc = _run('eval.py', f'--workdir={workdir}', '--all_checkpoints', f'--plot={out}',
              '--num_samples=200', '--kid_subsets=5', '--kid_subset_size=100',
              '--num_real=500', f'--cache_dir={tmp_path / "cache"}', env=user_env)
  _no_chatter(proc)
  assert proc.stdout.count('| mlp_cgan_concat |') == 2  # steps 4 and 8
  Image.open(out).verify()  # a whole, valid PNG
  png = Image.open(out)
  # 200 samples leave intra-FID out (too few per class): six metrics, six panels.
  assert png.text['Panels'].split(' | ') == ['FID ↓', 'KID ↓', 'Inception score ↑',
                                             'precision ↑', 'recall ↑',
                                             'conditional accuracy ↑']


def test_plot_without_all_checkpoints_is_refused(run, tmp_path, user_env):
  workdir, _ = run
  proc = _run('eval.py', f'--workdir={workdir}', f'--plot={tmp_path / "c.png"}', env=user_env)
  assert proc.returncode == 2 and '--all_checkpoints' in proc.stderr
