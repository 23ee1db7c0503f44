"""Learning checks of the image-to-image GANs on real Fashion-MNIST (slow; opt-in with
`make test-learning`: 2.4 minutes together on the 2-core CPU, out of CI to keep CI's run
under 40 minutes; tests/test_translation.py still trains both recipes end to end in CI).

Budgets measured on the 2-core CI-class CPU (load ~3.5): pix2pix 150 steps of 64 (~2 min):
held-out L1 0.118 against 0.204 (identity) and 0.222 (blank); CycleGAN 300 steps of 8
(~3 min): the classifier's target-class share of G(A) 0.23 and of F(B) 0.08, against 0.02 and
0.04 untranslated. A G that ignores its input, or losses wired wrong, stays at the baselines.
"""

import pytest

from cgan_jax import trainer
from cgan_jax.evaluation import evaluator, translation
from configs import cyclegan as cyclegan_config
from configs import pix2pix as pix2pix_config


def _train_and_score(config, steps: int, workdir: str) -> tuple[list[dict], dict]:
  config.num_train_examples = steps * config.batch_size
  config.num_epochs, config.num_devices, config.allow_download = 1, 1, False
  config.log_every_steps = 50
  trainer.train_and_evaluate(config, workdir)
  options = evaluator.Options(num_samples=1000, batch_size=250)
  rows = translation.TranslationEvaluator(options).rows(workdir, None, reference=True)
  assert rows[-1]['step'] == steps
  print(*rows, sep='\n')
  return rows[:-1], rows[-1]


@pytest.mark.slow
@pytest.mark.family_learning
def test_pix2pix_learns_edges_to_garments(tmp_path, fashion_dir):
  config = pix2pix_config.get_config()
  config.translation.g_base = config.translation.d_base = 16
  (identity, blank), run = _train_and_score(config, 150, str(tmp_path / 'p2p'))
  assert run['l1'] < 0.75 * min(identity['l1'], blank['l1'])
  assert run['ssim'] > identity['ssim'] + 0.1 and run['ssim'] > blank['ssim'] + 0.1


@pytest.mark.slow
@pytest.mark.family_learning
def test_cyclegan_moves_images_into_the_target_class(tmp_path, fashion_dir):
  config = cyclegan_config.get_config()               # Sneaker <-> Ankle boot
  config.translation.g_base, config.translation.res_blocks = 16, 3
  config.batch_size = 8
  (identity,), run = _train_and_score(config, 300, str(tmp_path / 'cyclegan'))
  before = (identity['share_ab'] + identity['share_ba']) / 2
  after = (run['share_ab'] + run['share_ba']) / 2
  assert after > max(0.1, 3 * before), (before, after)
  assert run['fid_ab'] < identity['fid_ab'] and run['fid_ba'] < identity['fid_ba']
