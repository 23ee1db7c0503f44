"""A NaN in the losses stops training, names the step, and leaves the last checkpoint intact."""

import jax.numpy as jnp
import pytest

from cgan_jax import losses, trainer
from configs import cgan_fashion_mnist
from test_train_e2e import _checkpoint_steps, _tree_digest


def _config(num_epochs):
  c = cgan_fashion_mnist.get_config()
  c.num_train_examples, c.num_epochs, c.num_devices = 256, num_epochs, 1
  c.allow_download, c.log_every_steps = False, 100
  return c


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                               fashion_dir):
  workdir = str(tmp_path / 'w')
  trainer.train_and_evaluate(_config(1), workdir)
  assert _checkpoint_steps(workdir) == [4]
  before = _tree_digest(tmp_path / 'w' / 'checkpoints')

  good = losses.LOSSES['non_saturating']
  poisoned = losses.LossPair(lambda r, f: good.d(r, f) * jnp.nan, good.g)
  monkeypatch.setitem(losses.LOSSES, 'non_saturating', poisoned)
  with pytest.raises(trainer.TrainingDiverged) as err:
    trainer.train_and_evaluate(_config(2), workdir)
  message = str(err.value)
  assert 'non-finite d_loss' in message and 'at step 4;' in message
  assert 'checkpoints/4' in message and 'intact' in message
  assert _checkpoint_steps(workdir) == [4]
  assert _tree_digest(tmp_path / 'w' / 'checkpoints') == before
