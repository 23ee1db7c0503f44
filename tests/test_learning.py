"""Learning check on real Fashion-MNIST: after ~100 steps, G draws the class it is asked for.

The judge is a nearest-class-mean classifier over real training images (about 67 % on
real test images; chance is 10 %). Samples of an untrained G, a G that ignores its label
or one trained with the losses wired wrong land near chance.
"""

import numpy as np
import pytest

import jax

from cgan_jax import input_pipeline, sampling, trainer
from cgan_jax import state as state_lib
from configs import cgan_fashion_mnist


def _nearest_class_mean(images: np.ndarray, labels: np.ndarray):
  means = np.stack([images[labels == k].reshape(-1, 784).mean(0) / 255.0 for k in range(10)])
  def classify(x_N28281: np.ndarray) -> np.ndarray:
    d = ((x_N28281.reshape(len(x_N28281), -1)[:, None] - means[None]) ** 2).sum(-1)
    return np.argmin(d, axis=1)
  return classify


def _train_and_judge(tmp_path, dtype: str, classify, wanted) -> tuple[float, float]:
  """Class agreement of G at step 0 and after 100 steps of 64 trained in `dtype`."""
  config = cgan_fashion_mnist.get_config()
  config.num_train_examples, config.num_epochs = 6400, 1  # 100 steps of 64
  config.num_devices, config.allow_download, config.log_every_steps = 1, False, 50
  config.dtype = dtype
  workdir = str(tmp_path / dtype)
  trainer.train_and_evaluate(config, workdir)

  gan, late = sampling.load(workdir)
  early = state_lib.init_state(gan, jax.random.PRNGKey(config.seed), (28, 28, 1))
  assert int(late.step) == 100
  acc_early = np.mean(classify(sampling.draw(gan, early, wanted, seed=1)) == wanted)
  acc_late = np.mean(classify(sampling.draw(gan, late, wanted, seed=1)) == wanted)
  print(f'{dtype} class agreement: step 0 {acc_early:.2f}, step 100 {acc_late:.2f}')
  return acc_early, acc_late


@pytest.mark.slow
@pytest.mark.long('200 training steps on real images: the learning check CI runs')
def test_cgan_learns_to_draw_the_requested_class_in_fp32_and_bf16(tmp_path, fashion_dir):
  """fp32 and mixed precision (bf16 activations and operands) at the same budget."""
  images, labels = input_pipeline.load_split('fashion_mnist', 'train')
  classify = _nearest_class_mean(images, labels)
  wanted = [k for k in range(10) for _ in range(50)]
  early, fp32 = _train_and_judge(tmp_path, 'float32', classify, wanted)
  _, bf16 = _train_and_judge(tmp_path, 'bfloat16', classify, wanted)
  assert early < 0.3
  assert fp32 > 0.45 and bf16 > 0.45
  assert abs(bf16 - fp32) < 0.15  # the stated margin of mixed precision at this budget
