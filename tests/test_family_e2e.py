"""Recipes other than the spine's through train.py: the n_critic schedule's step/epoch
accounting, checkpoints, resume and grids; the `:mnist` config argument."""

import os

import numpy as np
from PIL import Image

from cgan_jax import input_pipeline
from conftest import TINY, run_script
from test_train_e2e import _checkpoint_steps, _params


def test_wgan_trains_checkpoints_and_resumes(tmp_path, fashion_dir):
  """WGAN: 5 critic batches of 16 per step, so 256 images make 3 steps per epoch."""
  workdir = tmp_path / 'wgan'
  args = ['--config=configs/wgan.py', f'--workdir={workdir}', *TINY, '--config.batch_size=16']
  proc = run_script('train.py', *args, '--config.num_epochs=2')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _checkpoint_steps(workdir) == [3, 6]
  assert 'step 6/6' in proc.stderr
  grid = Image.open(workdir / 'samples' / 'epoch_0002.png')
  assert grid.size == (10 * 30 + 2, 10 * 30 + 2)  # unconditional: a 10×10 fixed-noise grid
  state = _params(workdir)
  assert int(state.step) == 6
  assert max(float(np.abs(p).max()) for p in
             __import__('jax').tree.leaves(state.d_params)) <= 0.01  # clipped on disk too

  proc = run_script('train.py', *args, '--config.num_epochs=3')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Resumed from' in proc.stderr
  assert _checkpoint_steps(workdir)[-1] == 9
  assert (workdir / 'samples' / 'epoch_0003.png').exists()


def test_mnist_config_argument_trains_on_mnist_files(tmp_path):
  """configs/<recipe>.py:mnist selects MNIST; here from small generated IDX files."""
  rs = np.random.RandomState(0)
  images = rs.randint(0, 256, (128, 28, 28)).astype(np.uint8)
  labels = (np.arange(128) % 10).astype(np.uint8)
  data = tmp_path / 'mnist_idx'
  input_pipeline.make_synthetic_idx(data, images, labels, prefix='train')
  workdir = tmp_path / 'acgan_mnist'
  proc = run_script('train.py', '--config=configs/acgan.py:mnist', f'--workdir={workdir}',
                    f'--config.data_dir={data}', '--config.allow_download=false',
                    '--config.batch_size=32', '--config.num_epochs=1')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _checkpoint_steps(workdir) == [4]
  from cgan_jax import checkpointing
  meta = checkpointing.Checkpointer(str(workdir), read_only=True).restore_meta(4)
  assert meta['config']['dataset'] == 'mnist' and meta['config']['model']['name'] == 'acgan'
  assert os.path.exists(workdir / 'samples' / 'epoch_0001.png')


def test_unknown_dataset_argument_is_one_clear_error(tmp_path):
  proc = run_script('train.py', '--config=configs/wgan_gp.py:stl10',
                    f'--workdir={tmp_path / "w"}')
  assert proc.returncode != 0
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1 and 'stl10' in errors[0], proc.stderr[-2000:]
