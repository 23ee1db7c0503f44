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

# recipe -> (steps, batch size or None for the recipe's, conditional)
BUDGETS = {
    'gan': (100, None, False),
    'gan_mlp': (300, None, False),
    'cgan_mlp_concat': (400, None, True),
    'cgan_mlp_embed': (150, None, True),
    'dcgan': (25, 32, False),
    'dcgan28': (100, None, False),
    'cdcgan': (100, 64, True),
    'acgan': (600, None, True),  # 150 steps: agreement still 0.10 (D's class head at 0.54)
    'acgan_fake_class': (600, None, True),  # 150 steps: 0.12
    'wgan': (100, None, False),
    'wgan_gp': (100, None, False),
    'cwgan_gp': (150, None, True),
}
# The spine's infogan CGAN has its own check (test_learning.py).
# Measured (2026-11-23, 2-core CPU) -- the budgets are NOT yet verified, hence opt-in:
#   gan 134.7 -> 84.5 FID at 100 steps (0.63x, threshold 0.6x: fails narrowly);
#   gan_mlp 92.6 -> 68.2 at 300 (0.74x); cgan_mlp_concat agreement 0.10 -> 0.10 at 400
#   (samples a noisy mean garment: the one-hidden-layer CGAN needs thousands of steps);
#   cgan_mlp_embed 0.10 -> 0.09 at 150; acgan 0.10 -> 0.10 and acgan_fake_class 0.12 at 150.
#   The conv DCGAN-family recipes take 4-36 s per step on this CPU (README, issue 3 note).


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


@pytest.mark.slow
@pytest.mark.family_learning
@pytest.mark.parametrize('recipe', sorted(BUDGETS))
def test_recipe_learns(recipe, tmp_path, fashion_dir, judge):
  num_steps, batch, conditional = BUDGETS[recipe]
  config = importlib.import_module(f'configs.{recipe}').get_config('fashion_mnist')
  if batch:
    config.batch_size = batch
  config.num_train_examples = num_steps * config.batch_size * config.n_critic
  config.num_epochs, config.num_devices, config.allow_download = 1, 1, False
  config.log_every_steps = 50
  workdir = str(tmp_path / recipe)
  trainer.train_and_evaluate(config, workdir)
  assert os.path.exists(os.path.join(workdir, 'samples', 'epoch_0001.png'))

  gan, late = sampling.load(workdir)
  assert int(late.step) == num_steps
  early = state_lib.init_state(gan, jax.random.PRNGKey(config.seed), (28, 28, 1))
  before, after = _score(judge, gan, early, conditional), _score(judge, gan, late, conditional)
  what = 'class agreement' if conditional else 'FID'
  print(f'{recipe}: {what} step 0 {before:.3f} -> step {num_steps} {after:.3f}')
  if conditional:
    assert before < 0.3 and after > 0.5, (before, after)
  else:
    assert after < 0.6 * before, (before, after)
