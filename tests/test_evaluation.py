"""Metrics against closed forms and limiting cases; the committed classifier asset; tables."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from cgan_jax import input_pipeline
from cgan_jax import state as state_lib
from cgan_jax.errors import UserError
from cgan_jax.evaluation import classifier, evaluator, features, metrics, tables
from configs import cgan_fashion_mnist


def _gaussian(rng, n, mu, sigma):
  return rng.multivariate_normal(mu, sigma, size=n)


def _random_cov(rng, d, rank=None):
  a = rng.normal(size=(d, rank or d))
  return a @ a.T / (rank or d) + (0 if rank else 0.1) * np.eye(d)


@pytest.fixture(scope='module')
def cache_dir(eval_cache):
  """Shared by this run's evaluation tests (the real-data features take seconds)."""
  return eval_cache


# --- FID --------------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero():
  x = _gaussian(np.random.default_rng(0), 2000, np.zeros(128), _random_cov(
      np.random.default_rng(1), 128))
  assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-6)


def _w2_closed_form(mu1, s1, mu2, s2):
  """||mu1-mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), via symmetric eigh."""
  w, v = np.linalg.eigh(s1)
  root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
  return (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(
      np.clip(inner, 0, None)).sum()


def test_frechet_distance_closed_forms():
  # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
  assert metrics.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]),
                                  np.array([[9.0]])) == pytest.approx(9.0 + 1.0)
  # Diagonal: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  expected = 1.0 + 4.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
  assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
  # Full, non-commuting covariances in 64-d.
  rng = np.random.default_rng(2)
  s1, s2 = _random_cov(rng, 64), _random_cov(rng, 64)
  mu1, mu2 = rng.normal(size=64), rng.normal(size=64)
  assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
      _w2_closed_form(mu1, s1, mu2, s2), rel=1e-8)


def test_fid_of_gaussian_samples_converges_to_the_closed_form():
  rng = np.random.default_rng(3)
  mu1, mu2 = np.array([0.0, 1.0, -1.0, 0.5]), np.array([0.5, 0.0, -1.0, 0.0])
  s1, s2 = _random_cov(rng, 4), _random_cov(rng, 4)
  x, y = _gaussian(rng, 200_000, mu1, s1), _gaussian(rng, 200_000, mu2, s2)
  assert metrics.fid(x, y) == pytest.approx(_w2_closed_form(mu1, s1, mu2, s2), rel=0.02)


def test_frechet_distance_survives_singular_covariances():
  rng = np.random.default_rng(4)
  s1, s2 = _random_cov(rng, 32, rank=5), _random_cov(rng, 32, rank=3)
  value = metrics.frechet_distance(np.zeros(32), s1, np.ones(32), s2)
  assert np.isfinite(value)
  assert value == pytest.approx(_w2_closed_form(np.zeros(32), s1, np.ones(32), s2), abs=1e-3)


# --- IS, KID, precision/recall, conditional metrics --------------------------------------------

def test_inception_score_limits():
  constant = np.tile(np.array([0.7, 0.2, 0.1] + [0.0] * 7), (1000, 1))
  assert metrics.inception_score(constant) == pytest.approx((1.0, 0.0))
  confident = np.eye(10)[np.arange(1000) % 10]  # one-hot, balanced over the 10 classes
  assert metrics.inception_score(confident) == pytest.approx((10.0, 0.0))
  probs = np.random.default_rng(5).dirichlet(np.ones(10), 1000)
  mean, std = metrics.inception_score(probs)
  assert 1.0 < mean < 10.0 and std > 0


def test_mmd_matches_a_brute_force_sum():
  rng = np.random.default_rng(6)
  a, b = rng.normal(size=(7, 3)), rng.normal(1.0, size=(7, 3))
  k = lambda x, y: (x @ y / 3 + 1) ** 3
  m = 7
  same = sum(k(a[i], a[j]) + k(b[i], b[j]) for i in range(m) for j in range(m) if i != j)
  cross = sum(k(a[i], b[j]) for i in range(m) for j in range(m))
  assert metrics.mmd2_unbiased(a, b) == pytest.approx(same / (m * (m - 1)) - 2 * cross / m**2)


def test_kid_is_about_zero_for_one_distribution_and_positive_for_two():
  rng = np.random.default_rng(7)
  x, y = rng.normal(size=(3000, 16)), rng.normal(size=(3000, 16))
  mean, std = metrics.kid(x, y, num_subsets=20, subset_size=500)
  assert abs(mean) < 3 * std / np.sqrt(20) + 1e-3
  shifted, _ = metrics.kid(x, y + 0.5, num_subsets=20, subset_size=500)
  assert shifted > 0.05
  assert metrics.kid(x, y, 20, 500, seed=1) == metrics.kid(x, y, 20, 500, seed=1)


def test_precision_recall():
  rng = np.random.default_rng(8)
  x = rng.normal(size=(500, 8))
  assert metrics.precision_recall(x, x.copy()) == (1.0, 1.0)
  assert metrics.precision_recall(x, x + 100.0) == (0.0, 0.0)
  # Mode dropping: real data has two far-apart modes, the fakes only one of them.
  two_modes = np.concatenate([x, x + 100.0])
  assert metrics.precision_recall(two_modes, x) == (1.0, 0.5)


def test_conditional_accuracy_and_intra_fid():
  probs = np.eye(3)[[0, 1, 2, 2]]
  assert metrics.conditional_accuracy(probs, np.array([0, 1, 2, 0])) == 0.75
  rng = np.random.default_rng(9)
  feats = np.concatenate([rng.normal(c, 1.0, size=(400, 4)) for c in range(3)])
  labels = np.repeat(np.arange(3), 400)
  means = np.stack([metrics.mean_cov(feats[labels == c])[0] for c in range(3)])
  covs = np.stack([metrics.mean_cov(feats[labels == c])[1] for c in range(3)])
  assert metrics.intra_fid(feats, labels, means, covs) == pytest.approx(0.0, abs=1e-6)
  # Right overall distribution, wrong labels: FID ~0 but intra-FID large.
  assert metrics.intra_fid(feats, np.roll(labels, 400), means, covs) > 3.0


# --- The committed classifier -------------------------------------------------------------------

def test_committed_asset_is_small_and_reproduces_its_test_accuracy(fashion_dir):
  asset = classifier.load_asset('fashion_mnist')
  meta = asset.meta
  assert meta['version'] == classifier.VERSION and meta['feature_dim'] == 128
  assert os.path.getsize(classifier.asset_paths('fashion_mnist')[0]) < 1_000_000
  assert meta['test_accuracy'] >= classifier.MIN_TEST_ACCURACY['fashion_mnist']
  images, labels = input_pipeline.load_split('fashion_mnist', 'test')
  acc = classifier.accuracy(asset.model, asset.variables, images, labels)
  assert acc == pytest.approx(meta['test_accuracy'], abs=2e-3)  # exact on this CPU
  assert asset.tag == f'fashion_mnist-v1-{meta["sha256"][:8]}'


def test_corrupt_asset_is_refused(tmp_path):
  for path in classifier.asset_paths('fashion_mnist'):
    shutil.copy(path, tmp_path)
  weights = classifier.asset_paths('fashion_mnist', str(tmp_path))[0]
  blob = bytearray(open(weights, 'rb').read())
  blob[len(blob) // 2] ^= 0xFF
  open(weights, 'wb').write(bytes(blob))
  with pytest.raises(UserError, match='corrupt.*sha256'):
    classifier.load_asset('fashion_mnist', str(tmp_path))


def test_missing_mnist_asset_names_the_command_that_trains_it():
  with pytest.raises(UserError, match='python -m cgan_jax.evaluation.classifier --dataset=mnist'):
    classifier.load_asset('mnist')


def test_real_features_are_cached(tmp_path, monkeypatch, fashion_dir):
  """In a cache of its own: the run's shared one may hold the file already."""
  cache_dir = str(tmp_path)
  asset = classifier.load_asset('fashion_mnist')
  first = features.real_set(asset, 'test', cache_dir)
  assert os.path.exists(features.cache_path(cache_dir, 'fashion_mnist', 'test', asset))
  assert first.features.shape == (10000, 128) and first.class_covs.shape == (10, 128, 128)
  assert np.mean(first.features.astype(np.float64) ** 2) == pytest.approx(1.0, abs=0.1)

  def no_data(*args, **kwargs):
    raise AssertionError('read the dataset instead of the cache')
  monkeypatch.setattr(input_pipeline, 'load_split', no_data)
  again = features.real_set(asset, 'test', cache_dir)
  np.testing.assert_array_equal(first.features, again.features)
  np.testing.assert_array_equal(first.cov, again.cov)


def test_periodic_fid_is_deterministic(cache_dir, fashion_dir):
  periodic_fid = evaluator.make_periodic_fid('fashion_mnist', num_samples=500, cache_dir=cache_dir)
  gan = state_lib.build_gan(cgan_fashion_mnist.get_config(), 10, axis_name=None)
  state = jax.jit(state_lib.init_state, static_argnums=(0, 2))(gan, jax.random.PRNGKey(0),
                                                                (28, 28, 1))
  first = periodic_fid(gan, state)
  assert set(first) == {'fid'} and np.isfinite(first['fid']) and first['fid'] > 1.0
  assert periodic_fid(gan, state) == first


def test_num_samples_below_the_feature_dimension_is_refused():
  with pytest.raises(UserError, match=r'd \+ 1 = 129'):
    evaluator.check_num_samples(128, 128)
  evaluator.check_num_samples(129, 128)


# --- Tables ------------------------------------------------------------------------------------

_ROW = dict(run='runs/a', model='infogan_gan', dataset='fashion_mnist', step=937, samples=1000,
            fid=12.345, kid=0.01234, kid_std=0.00056, precision=0.5, recall=0.25,
            intra_fid=None, cond_acc=None, features='fashion_mnist-v1-abcdef12',
            **{'is': 7.5, 'is_std': 0.1})


def test_tables_render_every_format_with_dashes_for_unconditional_models():
  md = tables.render([_ROW], 'markdown', caption='seed 0')
  header, row = [l for l in md.splitlines() if l.startswith('| ')]
  assert 'FID' in header and 'intra-FID' in header and 'cond. acc' in header
  assert row.split(' | ')[-2:] == ['-', '- |'] and '12.35' in row and '12.34 ± 0.56' in row
  assert 'fashion_mnist-v1-abcdef12' in md
  lines = tables.render([_ROW], 'csv').splitlines()
  assert lines[0].split(',') == list(tables.COLUMNS)
  assert lines[1].split(',')[tables.COLUMNS.index('intra_fid')] == '-'
  data = json.loads(tables.render([_ROW], 'json'))
  assert data[0]['cond_acc'] is None and data[0]['fid'] == 12.345
  with pytest.raises(UserError, match='unknown --format'):
    tables.render([_ROW], 'html')


def test_draws_combine_into_means_and_sample_stds_with_dashes_kept():
  draws = [dict(_ROW, fid=1.0, precision=0.5, recall=0.2), dict(_ROW, fid=2.0, precision=0.7,
                                                                 recall=0.2)]
  scores = [{k: r[k] for k in ('fid', 'kid', 'kid_std', 'is', 'is_std', 'precision', 'recall',
                               'intra_fid', 'cond_acc')} for r in draws]
  row = evaluator.combine_draws(scores)
  assert row['fid'] == 1.5 and row['precision'] == pytest.approx(0.6) and row['recall'] == 0.2
  assert row['fid_draw_std'] == pytest.approx(0.5 ** 0.5)  # ddof 1: |1 - 2| / sqrt(2)
  assert row['precision_draw_std'] == pytest.approx(0.2 / 2 ** 0.5)
  assert row['recall_draw_std'] == 0.0 and row['kid'] == _ROW['kid']
  assert row['intra_fid'] is None and row['cond_acc_draw_std'] is None  # unconditional: dashes
  single = evaluator.combine_draws(scores[:1])
  assert single['fid'] == 1.0 and single['fid_draw_std'] is None  # one draw: no spread
  md = tables.render([dict(_ROW, **row, seed=0, draws=2, extractor='classifier',
                           extractor_sha256='0' * 64, real_split='train', real_images=60000,
                           resize='none')], 'markdown')
  cells = [l for l in md.splitlines() if l.startswith('| runs/a')][0].split(' | ')
  assert cells[4:5] == ['1.50 ± 0.71'] and cells[7] == '0.600 ± 0.141' and cells[-1] == '- |'
  assert '2 draws per run row, seeds 0 to 1' in md
  with pytest.raises(UserError, match='--draws must be at least 1'):
    evaluator.Options(draws=0)


def test_mnist_classifier_trains_from_idx_files_and_loads(tmp_path):
  """The MNIST asset is trained on a connected machine; here the same path on tiny IDX files."""
  rng = np.random.default_rng(10)
  labels = np.arange(384) % 10
  images = (rng.random((384, 28, 28)) * 60 + labels[:, None, None] * 20).astype(np.uint8)
  input_pipeline.make_synthetic_idx(tmp_path / 'data', images[:256], labels[:256], 'train')
  input_pipeline.make_synthetic_idx(tmp_path / 'data', images[256:], labels[256:], 'test')
  variables, meta = classifier.train('mnist', epochs=1, data_dir=str(tmp_path / 'data'))
  assert meta['dataset'] == 'mnist' and 0.0 <= meta['test_accuracy'] <= 1.0
  classifier.save_asset(variables, meta, str(tmp_path / 'assets'))
  asset = classifier.load_asset('mnist', str(tmp_path / 'assets'))
  assert asset.tag.startswith('mnist-v1-') and asset.meta['test_accuracy'] == meta['test_accuracy']
  real = features.real_set(asset, 'test', str(tmp_path / 'cache'), str(tmp_path / 'data'))
  assert real.features.shape == (128, 128)
  assert np.mean(real.features.astype(np.float64) ** 2) == pytest.approx(1.0, rel=0.5)
