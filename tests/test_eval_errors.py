"""eval.py on an unconditional run (dashes, not errors) and on bad input (one error line)."""

import json
import os
import shutil

import pytest

from conftest import TINY, run_script
from cgan_jax.evaluation import classifier

CONFIG = '--config=configs/cgan_fashion_mnist.py'


@pytest.fixture(scope='module')
def gan(tmp_path_factory, fashion_dir):
  """The unconditional GAN of the same family: 4 steps of 64 real images."""
  workdir = tmp_path_factory.mktemp('eval_errors') / 'gan'
  proc = run_script('train.py', CONFIG, f'--workdir={workdir}', *TINY, '--config.num_epochs=1',
                    '--config.model.conditioning=none')
  assert proc.returncode == 0, proc.stderr[-3000:]
  return str(workdir)


@pytest.fixture(scope='module')
def eval_py(eval_cache):
  """Runs eval.py with the real-feature cache this run's evaluation tests share."""
  return lambda *args: run_script('eval.py', f'--cache_dir={eval_cache}', '--kid_subsets=10',
                                  *args)


def _assert_one_line_error(proc, *needles):
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert 'Traceback' not in proc.stderr, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1, proc.stderr
  for needle in needles:
    assert needle.lower() in errors[0].lower(), errors[0]
  assert proc.stdout == ''


def _edited_copy(workdir, dest, **config):
  """A copy of `workdir` whose checkpoint metadata claims other config values."""
  shutil.copytree(workdir, dest)
  (step,) = os.listdir(os.path.join(dest, 'checkpoints'))
  path = os.path.join(dest, 'checkpoints', step, 'meta', 'metadata')
  with open(path) as f:
    meta = json.load(f)
  meta['config'].update(config)
  with open(path, 'w') as f:
    json.dump(meta, f)
  return str(dest)


def test_unconditional_run_has_dashes_in_the_conditional_columns(gan, eval_py):
  proc = eval_py(f'--workdir={gan}', '--num_samples=500')
  assert proc.returncode == 0, proc.stderr[-3000:]
  real, model = ([c.strip() for c in l.strip('|').split('|')]
                 for l in proc.stdout.splitlines()[-2:])
  assert model[:4] == [gan, 'infogan_gan', '4', '500']
  assert model[-2:] == ['-', '-'] and '-' not in model[4:-2]
  # 50 real test images per class are too few for a per-class covariance: intra-FID is skipped.
  assert real[-2] == '-' and real[-1].endswith('%')
  assert 'intra-class FID skipped' in proc.stderr


def test_checkpoint_from_before_model_options_scores_under_its_old_name(gan, tmp_path, eval_py):
  """A checkpoint whose config names the model the old way (a registry name, no group)."""
  old = _edited_copy(gan, tmp_path / 'w', model='infogan_gan')
  proc = eval_py(f'--workdir={old}', '--num_samples=500')
  assert proc.returncode == 0, proc.stderr[-3000:]
  model = [c.strip() for c in proc.stdout.splitlines()[-1].strip('|').split('|')]
  assert model[:4] == [old, 'infogan_gan', '4', '500']


def test_workdir_without_checkpoints(tmp_path, eval_py):
  _assert_one_line_error(eval_py(f'--workdir={tmp_path}'), 'no checkpoints')


def test_checkpoint_of_an_unknown_model(gan, tmp_path, eval_py):
  bad = _edited_copy(gan, tmp_path / 'w', model='stylegan9')
  _assert_one_line_error(eval_py(f'--workdir={bad}'), 'unknown model', 'stylegan9')


def test_num_samples_below_the_feature_dimension(gan, eval_py):
  proc = eval_py(f'--workdir={gan}', '--num_samples=100')
  _assert_one_line_error(proc, '--num_samples=100', 'd + 1 = 129', 'd = 128')


def test_dataset_without_a_classifier_asset(gan, tmp_path, eval_py):
  mnist = _edited_copy(gan, tmp_path / 'w', dataset='mnist')
  proc = eval_py(f'--workdir={mnist}')
  _assert_one_line_error(proc, 'mnist', 'python -m cgan_jax.evaluation.classifier --dataset=mnist')


def test_corrupt_classifier_asset(gan, tmp_path, eval_py):
  for path in classifier.asset_paths('fashion_mnist'):
    shutil.copy(path, tmp_path)
  weights = classifier.asset_paths('fashion_mnist', str(tmp_path))[0]
  with open(weights, 'r+b') as f:
    f.seek(1000)
    byte = f.read(1)
    f.seek(1000)
    f.write(bytes([byte[0] ^ 0xFF]))
  proc = eval_py(f'--workdir={gan}', f'--assets_dir={tmp_path}')
  _assert_one_line_error(proc, 'corrupt', 'sha256')


def test_bad_kid_subset_size(gan, eval_py):
  _assert_one_line_error(eval_py(f'--workdir={gan}', '--kid_subset_size=1'),
                         'kid_subset_size')


def test_zero_draws(gan, eval_py):
  _assert_one_line_error(eval_py(f'--workdir={gan}', '--draws=0'), '--draws must be at least 1')


def test_a_step_that_does_not_exist_lists_the_steps_that_do(tiny_cgan, tmp_path):
  proc = run_script('generate.py', f'--workdir={tiny_cgan}', '--labels=7', '--step=999',
                    f'--out={tmp_path / "x.png"}')
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  assert errors == [f'error: no checkpoint of step 999 in {tiny_cgan}/checkpoints (its steps: '
                    '2, 4)'], proc.stderr[-2000:]
