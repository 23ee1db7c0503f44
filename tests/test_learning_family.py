"""Learning check for every recipe on real Fashion-MNIST (slow): a short run through the
trainer (checkpoints, sample grid), then the committed Fashion-MNIST classifier judges G.

Conditional models must draw the class they are asked for (the classifier agrees with the
requested label far above chance, and far above the untrained G); unconditional models must
move their samples towards the data (FID in the classifier's feature space falls well below
the untrained G's). A model that does not learn, or ignores its labels, fails.
"""

import importlib
import os

import jax
import numpy as np
import pytest

from cgan_jax import evaluation, sampling, trainer
from cgan_jax import state as state_lib

# recipe -> (steps, batch size or None for the recipe's, conditional). Budgets past one
# epoch of 60,000 images train whole epochs (so a little more than `steps`).
BUDGETS = {
    'gan': (200, None, False),
    'gan_mlp': (3000, None, False),
    'cgan_mlp_concat': (20000, None, True),
    'cgan_mlp_embed': (2000, None, True),
    'dcgan': (100, 32, False),  # 25 steps: FID 134.0 -> 110.4 (0.82x)
    'dcgan28': (100, None, False),
    'cdcgan': (300, 64, True),  # 100 steps: agreement 0.29 (not yet 0.5)
    'acgan': (1000, None, True),  # 300 steps: 0.17
    'acgan_fake_class': (1000, None, True),
    'wgan': (100, None, False),
    'wgan_gp': (100, None, False),
    'cwgan_gp': (400, None, True),  # 150 steps: agreement 0.30
    'cgan_projection': (2805, None, True),  # 15 epochs at n_dis 5; 1870 steps: 0.526
    'cgan_projection_infogan': (300, None, True),  # 100 steps: 0.406
}
# The fully connected recipes are cheap per step, and run on the device-resident pipeline
# with many steps per dispatch.
FAST_PIPELINE = {'gan_mlp', 'cgan_mlp_concat', 'cgan_mlp_embed'}
# The spine's infogan CGAN has its own check (test_learning.py).
# Measured (2026-11-23, 2-core CPU, load 2-3):
#   gan          FID 134.7 -> 17.6 at 200 steps (100 steps: 84.5, 0.63x: too short)
#   gan_mlp      FID  92.6 -> 31.8 at 3748 steps (4 epochs; 300 steps: 68.2)
#   cgan_mlp_concat  agreement 0.10 -> 0.71 at 20614 steps (22 epochs, 77 s; at 400 and
#                3748 steps still 0.10: the one-hidden-layer CGAN conditions late)
#   cgan_mlp_embed   agreement 0.10 -> 0.65 at 2106 steps (9 epochs of 256, 140 s)
# Conv recipes, after the tap-wise kernel gradients (load 3-5):
#   dcgan28      FID 117.6 -> 37.8 at 100 steps (passes, 4.6 min)
#   cdcgan       agreement 0.10 -> 0.29 at 100 steps (8.7 min): budget raised to 300
#   acgan        agreement 0.10 -> 0.17 at 300 steps (17 min): budget raised to 1000
#   wgan         FID 117.6 -> 53.3 at 100 steps (0.45x: passes, 12 min at load 5)
# Measured (2026-12-01, 2-core AVX-512 CPU, quiet; wall time with compilation and scoring):
#   cdcgan       agreement 0.10 -> 0.75 at 300 steps (3.6 min)
#   wgan_gp      FID 117.6 -> 39.9 at 100 steps (0.34x, 4.7 min)
#   acgan        agreement 0.10 -> 0.82 at 1000 steps (21 min)
#                re-run 2026-12-03 with sampled fake classes (the recipe now): 0.80
#   acgan_fake_class  agreement 0.10 -> 0.94 at 1000 steps (21 min)
#   dcgan (64x64, batch 32)  FID 134.0 -> 47.1 at 100 steps (0.35x, 6.7 min; 25 steps: 0.82x);
#                re-run 2026-12-02: 56.5 (0.42x; cause of the difference not looked into)
#   cwgan_gp     agreement 0.10 -> 0.30 at 150 steps (7.5 min): budget raised to 400
#                agreement 0.10 -> 0.74 at 400 steps (29.5 min)
#                re-run 2026-12-03 with the HWC LayerNorm critic (the recipe now): 0.746
# Measured (2026-12-03, 2-core AVX-512 CPU, load 2-3) on the checkpoints of a 20-epoch
# benchmarks/results.py run of the same config and seed (the check's run is that run's start):
#   cgan_projection  agreement 0.10 -> 0.494 at 1683 steps, 0.526 at 1870 (10 epochs, ~65 min),
#                0.626 at 2805 (15 epochs, ~100 min: the budget)
# Measured (2026-12-03, 2-core AVX-512 CPU, load 3-4), the check's own run (300 steps of 64,
# checkpoints every 100):
#   cgan_projection_infogan  agreement 0.10 -> 0.406 at 100 steps, 0.816 at 200, 0.688 at 300
#                (the budget; about 5 min)


@pytest.fixture(scope='module')
def judge():
  options = evaluation.Options(num_samples=500, seed=1, batch_size=250)
  return evaluation.evaluator.DatasetEvaluator('fashion_mnist', options)


def _score(judge, gan, state, conditional):
  g_params, g_stats = jax.device_get((state.g_params, state.g_stats))
  feats, probs, labels = judge.sample(gan, g_params, g_stats)
  if conditional:
    return float(np.mean(np.argmax(probs, -1) == labels))
  train = judge.train
  m = evaluation.metrics
  return float(m.frechet_distance(*m.mean_cov(feats), train.mean, train.cov))


# All opt-in (`make test-learning`, marker family_learning): cdcgan and wgan_gp alone took 4.6
# and 5.6 min of a CI run, gan_mlp, cgan_mlp_embed and cgan_mlp_concat 0.6, 1.0 and 1.3. The
# seed's conv GAN was in CI until 2026-12-04 (68 s) and left for CI's time budget; the seed's
# conv CGAN keeps its own check in CI (tests/test_learning.py).
@pytest.mark.slow
@pytest.mark.family_learning
@pytest.mark.parametrize('recipe', sorted(BUDGETS))
def test_recipe_learns(recipe, tmp_path, fashion_dir, judge):
  num_steps, batch, conditional = BUDGETS[recipe]
  config = importlib.import_module(f'configs.{recipe}').get_config('fashion_mnist')
  if batch:
    config.batch_size = batch
  images = num_steps * config.batch_size * config.n_critic
  config.num_train_examples = min(images, 60000)
  config.num_epochs = -(-images // 60000)
  config.num_devices, config.allow_download = 1, False
  config.log_every_steps, config.sample_every_epochs = 500, 1000  # grid after the last epoch
  if recipe in FAST_PIPELINE:
    config.pipeline, config.steps_per_dispatch = 'device', 50
  workdir = str(tmp_path / recipe)
  trainer.train_and_evaluate(config, workdir)
  assert os.path.exists(os.path.join(workdir, 'samples', f'epoch_{config.num_epochs:04d}.png'))

  gan, late = sampling.load(workdir)
  assert int(late.step) >= num_steps
  early = state_lib.init_state(gan, jax.random.PRNGKey(config.seed), (28, 28, 1))
  before, after = _score(judge, gan, early, conditional), _score(judge, gan, late, conditional)
  what = 'class agreement' if conditional else 'FID'
  print(f'{recipe}: {what} step 0 {before:.3f} -> step {num_steps} {after:.3f}')
  if conditional:
    assert before < 0.3 and after > 0.5, (before, after)
  else:
    assert after < 0.6 * before, (before, after)
