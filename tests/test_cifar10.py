"""RGB data: CIFAR-10's binary files read by the real loader, and the projection cGAN's
CIFAR-10 recipe end to end (train.py, generate.py, the classifier command, eval.py) on
generated CIFAR-10 files (the real dataset cannot be downloaded here)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cgan_jax import input_pipeline as ip
from conftest import ROOT, run_script

# Small widths and a few steps: the recipe's nets at 32x32x3, not its budget.
SMALL = ['--config.model.g_width=8', '--config.model.d_width=8', '--config.batch_size=16',
         '--config.n_critic=1', '--config.num_train_examples=160', '--config.num_epochs=1',
         '--config.log_every_steps=5', '--config.allow_download=false',
         '--config.ema_start_step=2']


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Class k: a colour of its own (k's bits pick R, G, B) plus noise, so classes differ."""
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % 10).astype(np.uint8)
  colour = np.stack([(labels >> b) & 1 for b in range(3)], -1) * 160 + 40
  images = colour[:, None, None, :] + rng.integers(-40, 40, (n, 32, 32, 3))
  return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope='module')
def cifar_dir(tmp_path_factory) -> str:
  d = tmp_path_factory.mktemp('cifar') / 'cifar-10-batches-bin'
  ip.write_cifar_bin(d, *_images(500, 0), split='train')
  ip.write_cifar_bin(d, *_images(200, 1), split='test')
  return str(d.parent)  # the loader also looks in cifar-10-batches-bin/


def test_binary_layout_is_label_then_red_green_blue_planes(tmp_path):
  images = np.zeros((10, 32, 32, 3), np.uint8)
  images[3, 0, 1, 1] = 200  # image 3, row 0, column 1, green
  images[3, 31, 0, 2] = 7   # row 31, column 0, blue
  labels = np.arange(10, dtype=np.uint8)
  (path,) = ip.write_cifar_bin(tmp_path, images, labels, split='test')
  raw = np.fromfile(path, np.uint8).reshape(10, 3073)
  assert raw[3, 0] == 3 and raw[3, 1 + 1024 + 1] == 200 and raw[3, 1 + 2048 + 31 * 32] == 7
  back, back_labels = ip.read_cifar_bin([path])
  np.testing.assert_array_equal(back, images)
  np.testing.assert_array_equal(back_labels, labels)


def test_load_split_reads_cifar10_files(cifar_dir):
  images, labels = ip.load_split('cifar10', 'train', data_dir=cifar_dir)
  assert images.shape == (500, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, np.arange(500) % 10)
  np.testing.assert_array_equal(images, _images(500, 0)[0])
  assert ip.load_split('cifar10', 'test', data_dir=cifar_dir)[0].shape == (200, 32, 32, 3)


def test_truncated_and_missing_cifar10_files_are_named(cifar_dir, tmp_path):
  bad = tmp_path / 'bad'
  ip.write_cifar_bin(bad, *_images(20, 2), split='test')
  with open(bad / 'test_batch.bin', 'ab') as f:
    f.write(b'\x00' * 5)
  with pytest.raises(ip.DataError, match='not a whole number of 3073-byte records'):
    ip.load_split('cifar10', 'test', data_dir=str(bad))
  with pytest.raises(ip.DataError, match='missing data_batch_1.bin'):
    ip.load_split('cifar10', 'train', data_dir=str(bad))


@pytest.mark.slow
@pytest.mark.long('the one RGB 32x32 run through train.py, generate.py, the classifier trainer '
                  'and eval.py')
def test_projection_recipe_trains_draws_and_scores_on_cifar10(cifar_dir, tmp_path):
  workdir = tmp_path / 'proj'
  proc = run_script('train.py', '--config=configs/cgan_projection.py:cifar10',
                    f'--workdir={workdir}', f'--config.data_dir={cifar_dir}', *SMALL)
  assert proc.returncode == 0, proc.stderr[-3000:]
  grid = Image.open(workdir / 'samples' / 'epoch_0001.png')
  assert grid.mode == 'RGB' and grid.size == (10 * 34 + 2, 10 * 34 + 2)
  (step,) = os.listdir(workdir / 'checkpoints')
  with open(workdir / 'checkpoints' / step / 'meta' / 'metadata') as f:
    config = json.load(f)['config']
  assert config['dataset'] == 'cifar10' and config['model']['name'] == 'sngan'

  out = tmp_path / 'ship.png'
  proc = run_script('generate.py', f'--workdir={workdir}', '--labels=ship',
                    '--num_per_label=3', f'--out={out}', '--scale=1')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert Image.open(out).mode == 'RGB'

  # No classifier asset for CIFAR-10: eval.py names the command that trains one.
  assets = tmp_path / 'assets'
  proc = run_script('eval.py', f'--workdir={workdir}', f'--assets_dir={assets}',
                    f'--data_dir={cifar_dir}', f'--cache_dir={tmp_path / "cache"}',
                    '--num_samples=200')
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-3000:]
  assert 'python -m cgan_jax.evaluation.classifier --dataset=cifar10' in errors[0]

  # That command, on the same files, then the table.
  proc = subprocess.run([sys.executable, '-m', 'cgan_jax.evaluation.classifier',
                         '--dataset=cifar10', f'--data_dir={cifar_dir}',
                         f'--assets_dir={assets}', '--epochs=2', '--allow_download=false'],
                        cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env=os.environ)
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_script('eval.py', f'--workdir={workdir}', f'--assets_dir={assets}',
                    f'--data_dir={cifar_dir}', f'--cache_dir={tmp_path / "cache"}',
                    '--num_samples=200', '--generator=both')
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [[c.strip() for c in l.strip('|').split('|')] for l in proc.stdout.splitlines()
          if l.startswith('|') and str(workdir) in l]
  assert [r[1] for r in rows] == ['sngan_projection (ema)', 'sngan_projection (raw)']
