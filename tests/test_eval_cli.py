"""eval.py end to end on a tiny real CGAN run: the three formats, determinism, metric vs step."""

import csv
import io
import json

import pytest

from conftest import TINY, run_script

CONFIG = '--config=configs/cgan_fashion_mnist.py'
# 129 samples per class: the smallest count with a full-rank per-class covariance (intra-FID).
FAST = ['--num_samples=1290', '--kid_subsets=10']


@pytest.fixture(scope='module')
def cgan(tiny_cgan):
  """4 steps of 64 real images, checkpointed at steps 2 and 4 (the run's shared tiny CGAN)."""
  return tiny_cgan


@pytest.fixture(scope='module')
def eval_py(eval_cache):
  """Runs eval.py (with the real-feature cache this run's tests share); returns stdout."""

  def run(*args: str) -> str:
    proc = run_script('eval.py', f'--cache_dir={eval_cache}', *FAST, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout

  return run


def test_markdown_table(cgan, eval_py):
  out = eval_py(f'--workdir={cgan}')
  lines = [l for l in out.splitlines() if l.startswith('|')]
  header = [c.strip() for c in lines[0].strip('|').split('|')]
  assert header == ['run', 'model', 'step', 'samples', 'FID ↓', 'KID×10³ ↓', 'IS ↑',
                    'precision ↑', 'recall ↑', 'intra-FID ↓', 'cond. acc ↑']
  real, model = ([c.strip() for c in l.strip('|').split('|')] for l in lines[2:])
  assert real[:4] == ['real test split', 'real data', '-', '1290']
  assert model[:4] == [cgan, 'infogan_cgan', '4', '1290']
  assert '-' not in model[4:] and '±' in model[5] and model[-1].endswith('%')
  assert float(real[4]) < float(model[4])  # the real split is the floor of FID
  assert 'fashion_mnist-v1-' in out  # the feature network's version


def test_json_is_deterministic_and_lists_every_checkpoint(cgan, eval_py):
  args = (f'--workdir={cgan}', '--all_checkpoints', '--format=json', '--seed=3')
  first = eval_py(*args)
  assert eval_py(*args) == first  # same seed, same digits
  rows = json.loads(first)
  assert [r['step'] for r in rows] == [None, 2, 4]
  assert all(r['fid'] > 0 and r['cond_acc'] is not None for r in rows)
  assert {r['features'] for r in rows} == {rows[0]['features']}


def test_csv_columns_and_seed_dependence(cgan, eval_py):
  out = eval_py(f'--workdir={cgan}', '--format=csv', '--seed=4', '--noreference')
  rows = list(csv.DictReader(io.StringIO(out)))
  assert list(rows[0]) == ['run', 'model', 'dataset', 'step', 'samples', 'fid', 'kid', 'kid_std',
                           'is', 'is_std', 'precision', 'recall', 'intra_fid', 'cond_acc',
                           'fid_draw_std', 'precision_draw_std', 'recall_draw_std',
                           'intra_fid_draw_std', 'cond_acc_draw_std', 'features', 'extractor',
                           'extractor_sha256', 'real_split', 'real_images', 'resize', 'seed',
                           'draws', 'note', 'extractor_file']
  assert rows[0]['extractor'] == 'classifier' and rows[0]['real_images'] == '60000'
  assert rows[0]['seed'] == '4' and rows[0]['note'] == '-' and rows[0]['draws'] == '1'
  assert rows[0]['fid_draw_std'] == '-'  # one draw: no spread
  assert rows[0]['extractor_file'] == 'classifier_fashion_mnist_v1.msgpack'
  assert len(rows) == 1 and rows[0]['step'] == '4'
  seed3 = json.loads(eval_py(f'--workdir={cgan}', '--format=json', '--seed=3',
                             '--noreference'))[0]
  assert float(rows[0]['fid']) != seed3['fid']  # another seed draws other noise


def test_draws_are_the_mean_and_spread_of_the_seeds_they_name(cgan, eval_py):
  """--draws=2 --seed=5 is the mean of the rows of --seed=5 and --seed=6, with their spread."""
  one = lambda *a: json.loads(eval_py(f'--workdir={cgan}', '--format=json', '--noreference',
                                      *a))[0]
  both, five, six = one('--seed=5', '--draws=2'), one('--seed=5'), one('--seed=6')
  assert both['draws'] == 2 and both['seed'] == 5 and five['fid'] != six['fid']
  for key in ('fid', 'kid', 'is', 'precision', 'recall', 'intra_fid', 'cond_acc'):
    assert both[key] == pytest.approx((five[key] + six[key]) / 2, rel=1e-9, abs=1e-12), key
  for key in ('fid', 'precision', 'recall', 'intra_fid', 'cond_acc'):
    spread = abs(five[key] - six[key]) / 2 ** 0.5  # the sample std of two numbers
    assert both[f'{key}_draw_std'] == pytest.approx(spread, rel=1e-9, abs=1e-12), key
  table = eval_py(f'--workdir={cgan}', '--seed=5', '--draws=2')
  assert '2 draws per run row, seeds 5 to 6' in table
  model = [l for l in table.splitlines() if l.startswith(f'| {cgan}')][0]
  assert f"{both['fid']:.2f} ± {both['fid_draw_std']:.2f}" in model


def test_periodic_fid_during_training(tmp_path_factory, fashion_dir, eval_cache):
  """--config.eval_every_steps: FID in TensorBoard, best-FID checkpoint beside the latest."""
  import glob
  import os

  import tensorflow as tf
  workdir = tmp_path_factory.mktemp('periodic') / 'cgan'
  cache = {'CGAN_JAX_CACHE_DIR': eval_cache}
  proc = run_script('train.py', CONFIG, f'--workdir={workdir}', *TINY, '--config.num_epochs=1',
                    '--config.eval_every_steps=2', '--config.eval_num_samples=200',
                    env=cache)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'FID' in proc.stderr
  best = [d for d in os.listdir(workdir / 'best_fid') if d.isdigit()]
  assert len(best) == 1 and best[0] in ('2', '4')
  assert [d for d in os.listdir(workdir / 'checkpoints') if d.isdigit()] == ['4']
  fids = [v.simple_value or tf.make_ndarray(v.tensor)
          for e in glob.glob(str(workdir / 'events.out.tfevents.*'))
          for ev in tf.compat.v1.train.summary_iterator(e) for v in ev.summary.value
          if v.tag == 'fid']
  assert len(fids) == 2 and all(float(f) > 0 for f in fids)
