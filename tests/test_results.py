"""benchmarks/results.py end to end on a tiny real budget: GAN and CGAN, two milestones.

Three invocations on one runs_dir: to epoch 1; to epoch 2 (resumes each run from its epoch-1
checkpoint and skips the scored epoch 1); again (trains and scores nothing, same report).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import ROOT, run_script

SCRIPT = 'benchmarks/results.py'
# 128 real images at batch 64: an "epoch" is 2 steps. 200 samples: above the 129 FID needs.
TINY = ['--recipes=gan,cgan', '--override=num_train_examples=128',
        '--override=allow_download=false', '--override=log_every_steps=1',
        '--num_samples=200', '--kid_subsets=5']
GRID_SIDE = 10 * (28 + 2) + 2  # 10 x 10 tiles of 28 px with a 2 px border


@pytest.fixture(scope='module')
def results(tmp_path_factory, fashion_dir, eval_cache):
  """Runs results.py on one runs_dir / out_dir; returns (run(*args) -> proc, out_dir, runs)."""
  base = tmp_path_factory.mktemp('results')
  runs, out = base / 'runs', base / 'out'

  def run(*args: str):
    proc = run_script(SCRIPT, *TINY, f'--runs_dir={runs}', f'--out_dir={out}',
                      f'--cache_dir={eval_cache}', *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc

  return run, out, runs


def _rows(out) -> list[dict]:
  return json.loads((out / 'results.json').read_text())


@pytest.fixture(scope='module')
def first_epoch(results):
  """Invocation 1: both recipes to epoch 1."""
  run, out, _ = results
  proc = run('--epochs=1')
  return proc, _rows(out)


@pytest.fixture(scope='module')
def second_epoch(results, first_epoch):
  """Invocation 2: the budget raised to 2 epochs (milestones 1 and 2)."""
  run, out, _ = results
  proc = run('--epochs=2')
  return proc, _rows(out)


def test_first_invocation_writes_the_report(results, first_epoch):
  _, out, _ = results
  proc, rows = first_epoch
  assert [(r['recipe'], r['epoch']) for r in rows] == [
      ('real test split', None), ('gan', 1), ('cgan', 1)]
  assert '[gan] training to epoch 1 of 1' in proc.stdout
  assert {p.name for p in out.iterdir()} == {
      'gan_epoch_0001.png', 'cgan_epoch_0001.png', 'gan_vs_cgan.png', 'results.md',
      'results.json'}


def test_resume_skips_scored_epochs_and_writes_every_milestone(results, second_epoch):
  _, out, runs = results
  proc, rows = second_epoch
  for recipe in ('gan', 'cgan'):
    assert f'[{recipe}] epoch 1: done (skipped)' in proc.stdout
    assert f'[{recipe}] training to epoch 2 of 2' in proc.stdout
    assert f'Resumed from {runs / recipe / "checkpoints" / "2"}' in proc.stderr
  assert [(r['recipe'], r['epoch']) for r in rows] == [
      ('real test split', None), ('gan', 1), ('gan', 2), ('cgan', 1), ('cgan', 2)]
  real, models = rows[0], rows[1:]
  assert real['model'] == 'real data' and real['fid'] < min(r['fid'] for r in models)
  assert [r['step'] for r in models] == [2, 4, 2, 4]
  assert [r['images'] for r in models] == [128, 256, 128, 256]
  assert [r['budget_epochs'] for r in models] == [1, 2, 1, 2]
  for r in models:
    assert r['samples'] == 200 and r['recipe_epochs'] == 40
    assert r['fid'] > 0 and r['kid'] is not None and r['is'] >= 1.0
    assert r['precision'] is not None and r['recall'] is not None
    assert r['hardware'].count('jax') == 1 and r['date'] and r['commit']
    assert r['train_seconds'] > 0 and r['seconds_per_epoch'] > 0
  gan1, gan2, cgan1, cgan2 = models
  assert gan1['cond_acc'] is None and cgan1['cond_acc'] is not None  # conditional only
  assert gan2['train_seconds'] > gan1['train_seconds']  # cumulative across invocations
  assert cgan2['train_seconds'] > cgan1['train_seconds']


def test_grids_figure_and_markdown(results, second_epoch):
  _, out, _ = results
  for recipe in ('gan', 'cgan'):
    for epoch in (1, 2):
      grid = Image.open(out / f'{recipe}_epoch_{epoch:04d}.png')
      assert grid.size == (GRID_SIDE, GRID_SIDE)
  width, height = Image.open(out / 'gan_vs_cgan.png').size  # 2 recipes x 2 epochs + labels
  assert 2 * GRID_SIDE < width < 3 * GRID_SIDE and 2 * GRID_SIDE < height < 3 * GRID_SIDE
  md = (out / 'results.md').read_text()
  assert '![gan vs cgan](gan_vs_cgan.png)' in md
  table = [l for l in md.splitlines() if l.startswith('| ')]
  assert table[0].startswith('| recipe | epoch | steps | images seen | FID ↓ |')
  assert [l.split(' | ')[:3] for l in table[1:]] == [
      ['| real test split', '-', '-'], ['| gan', '1', '2'], ['| gan', '2', '4'],
      ['| cgan', '1', '2'], ['| cgan', '2', '4']]
  assert 'Hardware (gan, cgan):' in md and 'num_train_examples=128' in md


def test_rerun_trains_and_scores_nothing(results, second_epoch):
  run, out, runs = results
  before = {p: p.stat().st_mtime_ns for p in runs.rglob('*') if p.is_file()
            and p.suffix != '.lock'}
  proc = run('--epochs=2')
  assert 'training to' not in proc.stdout and 'scoring' not in proc.stdout
  assert proc.stdout.count('done (skipped)') == 4
  assert _rows(out) == second_epoch[1]
  after = {p: p.stat().st_mtime_ns for p in runs.rglob('*') if p.is_file()
           and p.suffix != '.lock'}
  assert after == before  # no checkpoint, score or record rewritten


def test_draws_rescore_milestones_with_their_spread(results, second_epoch):
  """--draws=2 rescores every milestone (not the real row, nor any training): the first
  draw is the one-draw score (seed 0), so the mean and std of the two draws tie to it."""
  run, out, _ = results
  proc = run('--epochs=2', '--draws=2')
  assert 'training to' not in proc.stdout and 'scoring the real' not in proc.stdout
  assert proc.stdout.count('samples x 2 draws)') == 4
  one, two = second_epoch[1][1:], _rows(out)[1:]
  for a, b in zip(one, two):
    assert (a['recipe'], a['epoch'], a['draws']) == (b['recipe'], b['epoch'], 1) and b['draws'] == 2
    assert a['fid_draw_std'] is None and b['fid_draw_std'] > 0
    # mean of (d0, d1) with d0 = the one-draw FID; their ddof-1 std is |d1 - d0| / sqrt 2
    assert b['fid_draw_std'] == pytest.approx(2 ** 0.5 * abs(b['fid'] - a['fid']), rel=1e-6)
    assert b['train_seconds'] == a['train_seconds']
  md = (out / 'results.md').read_text()
  assert 'Draws per score: 2' in md
  cgan2 = next(l for l in md.splitlines() if l.startswith('| cgan | 2 |'))
  assert f"{two[-1]['fid']:.2f} ± {two[-1]['fid_draw_std']:.2f}" in cgan2
  # KID, IS, and over the draws FID, precision, recall, cond. acc (intra-FID: too few samples)
  assert cgan2.count(' ± ') == 6


@pytest.mark.parametrize('args, message', [
    (['--recipes=gan,pix2pix'], "unknown recipe 'pix2pix'"),
    (['--milestones=2,1'], 'strictly ascending'),
    (['--milestones=50'], 'beyond the budget of 40 epochs'),
    (['--override=no_such_field=1'], 'no such config field'),
    (['--override=num_epochs=3'], 'use --epochs'),
    (['--draws=0'], '--draws must be at least 1'),
])
def test_bad_input_is_one_error_line(tmp_path, args, message):
  proc = run_script(SCRIPT, f'--runs_dir={tmp_path}/runs', f'--out_dir={tmp_path}/out', *args)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
  assert proc.stderr.startswith('error: ') and message in proc.stderr
  assert not os.path.exists(tmp_path / 'runs') and not os.path.exists(tmp_path / 'out')


def test_report_keeps_rows_of_runs_recorded_elsewhere(tmp_path):
  """A report rebuilt from a runs_dir without the seed pair's runs (trained on another
  machine) keeps their rows, grids and real-data row; a row whose grid is gone is dropped,
  and a recipe recorded here replaces its old rows."""
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks'))
  import results_report as report
  out, runs = tmp_path / 'out', tmp_path / 'runs'
  out.mkdir()
  runs.mkdir()
  base = {k: None for k in report.COLUMNS}
  real = {**base, 'recipe': 'real test split', 'dataset': 'fashion_mnist', 'samples': 10,
          'fid': 0.04}
  row = lambda recipe, epoch, fid: {
      **base, 'recipe': recipe, 'model': recipe, 'dataset': 'fashion_mnist', 'epoch': epoch,
      'step': epoch, 'images': 64 * epoch, 'samples': 10, 'fid': fid, 'overrides': [],
      'hardware': 'elsewhere', 'budget_epochs': 40, 'recipe_epochs': 40, 'date': '2026-12-01',
      'commit': 'abc'}
  old = [real, row('gan', 40, 0.59), row('cgan', 40, 0.39), row('cgan', 20, 0.6)]
  (out / 'results.json').write_text(json.dumps(old))
  for name in ('gan_epoch_0040.png', 'cgan_epoch_0040.png'):  # cgan epoch 20: grid gone
    Image.new('L', (32, 32), 128).save(out / name)
  report.write(str(runs), str(out), ('gan', 'cgan'))
  rows = _rows(out)
  assert [(r['recipe'], r['epoch'], r['fid']) for r in rows] == [
      ('real test split', None, 0.04), ('gan', 40, 0.59), ('cgan', 40, 0.39)]
  assert (out / 'gan_vs_cgan.png').exists()
  assert '| gan | 40 |' in (out / 'results.md').read_text()


_PAUSED_CHILD = """
import os, sys
sys.path[:0] = [{root!r}, os.path.join({root!r}, 'benchmarks')]
import results
results.CLOCK_TICK_S, results.STALL_S = 0.05, 0.5
run = results.Run({runs!r}, 'gan')
os.makedirs(run.workdir, exist_ok=True)
with run.clock():
  print('ready', flush=True)
  sys.stdin.readline()
  if {busy}:  # training that holds the GIL past STALL_S: the clock's thread cannot read
    import time
    start = time.perf_counter()
    sum(range(2 * 10 ** 8))  # one C call of ~2.8 s on a quiet 2-core CPU, GIL held throughout
    print(f'busy {{time.perf_counter() - start:.6f}} s', file=sys.stderr)
"""


@pytest.mark.whole_machine  # wall-clock bounds of a few seconds
def test_training_clock_leaves_out_time_the_process_was_stopped(tmp_path):
  """A results process stopped with SIGSTOP (a user pausing it to free the CPU) and resumed
  with SIGCONT: the stopped time goes to paused_seconds, not to the training time."""
  child = subprocess.Popen(
      [sys.executable, '-c', _PAUSED_CHILD.format(root=ROOT, runs=str(tmp_path), busy=False)],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert child.stdout.readline().strip() == 'ready'
    time.sleep(1.0)
    child.send_signal(signal.SIGSTOP)
    time.sleep(3.0)
    child.send_signal(signal.SIGCONT)
    time.sleep(1.0)
    _, err = child.communicate('\n', timeout=60)
  finally:
    child.kill()
  assert child.returncode == 0, err
  record = json.loads((tmp_path / 'gan' / 'results_run.json').read_text())
  assert 2.5 < record['paused_seconds'] < 4.5
  assert 1.5 < record['train_seconds'] < 3.5  # about 2 s ran; 5 s of wall time in all
  assert re.search(r'did not run for [34] s; not counted', err), err


@pytest.mark.whole_machine  # wall-clock bounds of a few seconds
def test_training_clock_counts_training_that_holds_the_gil(tmp_path):
  """Work in one long C call that holds the GIL past STALL_S (the clock's thread reads the
  time late): counted as training time, not as a pause, since the process used CPU time."""
  proc = subprocess.run(
      [sys.executable, '-c', _PAUSED_CHILD.format(root=ROOT, runs=str(tmp_path), busy=True)],
      input='\n', capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  record = json.loads((tmp_path / 'gan' / 'results_run.json').read_text())
  busy = float(re.search(r'busy ([0-9.]+) s', proc.stderr).group(1))
  assert busy > 0.5, 'the C call was shorter than STALL_S: the test checks nothing'
  assert record.get('paused_seconds', 0.0) == 0.0, proc.stderr
  assert busy - 0.01 < record['train_seconds'] < busy + 3.0
