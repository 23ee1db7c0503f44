"""Rows of metrics -> markdown, CSV or JSON; a metric that does not apply is a dash (JSON: null).

Every GAN table states its protocol: the feature extractor, its file and checksum, the real
split and its size, the number of generated images, the resize, the seed and the number of draws
(markdown: a line above each table, one table per dataset and extractor; CSV and JSON: columns
of every row). With several draws per run row, FID, precision, recall, intra-FID and class
accuracy print as mean ± standard deviation over the draws ('<key>_draw_std' columns).
"""

import csv
import io
import json
from typing import Any, Callable

from cgan_jax.errors import UserError

Row = dict[str, Any]
FORMATS = ('markdown', 'csv', 'json')
# Machine-readable columns (CSV header, JSON keys), in order.
COLUMNS = ('run', 'model', 'dataset', 'step', 'samples', 'fid', 'kid', 'kid_std', 'is', 'is_std',
           'precision', 'recall', 'intra_fid', 'cond_acc', 'fid_draw_std', 'precision_draw_std',
           'recall_draw_std', 'intra_fid_draw_std', 'cond_acc_draw_std', 'features', 'extractor',
           'extractor_sha256', 'real_split', 'real_images', 'resize', 'seed', 'draws', 'note',
           'extractor_file')
DASH = '-'


def _pm(scale: float, digits: int) -> Callable[[Row, str], str]:
  """'mean ± std' of key and key_std, scaled."""
  return lambda row, k: f'{row[k] * scale:.{digits}f} ± {row[k + "_std"] * scale:.{digits}f}'


def fixed(digits: int) -> Callable[[Row, str], str]:
  return lambda row, k: f'{row[k]:.{digits}f}'


def percent(row: Row, k: str) -> str:
  return f'{100 * row[k]:.1f} %'


def text(row: Row, k: str) -> str:
  return str(row[k])


def over_draws(scale: float, digits: int, unit: str = '') -> Callable[[Row, str], str]:
  """The value, with ' ± std over the draws' when the row has several."""
  def fmt(row: Row, k: str) -> str:
    spread = row.get(k + '_draw_std')
    pm = '' if spread is None else f' ± {spread * scale:.{digits}f}'
    return f'{row[k] * scale:.{digits}f}{pm}{unit}'
  return fmt


# Markdown: (key, header, formatter) for human eyes.
_MARKDOWN = (
    ('run', 'run', lambda r, k: str(r[k])),
    ('model', 'model', lambda r, k: str(r[k])),
    ('step', 'step', lambda r, k: str(r[k])),
    ('samples', 'samples', lambda r, k: str(r[k])),
    ('fid', 'FID ↓', over_draws(1.0, 2)),
    ('kid', 'KID×10³ ↓', _pm(1e3, 2)),
    ('is', 'IS ↑', _pm(1.0, 2)),
    ('precision', 'precision ↑', over_draws(1.0, 3)),
    ('recall', 'recall ↑', over_draws(1.0, 3)),
    ('intra_fid', 'intra-FID ↓', over_draws(1.0, 2)),
    ('cond_acc', 'cond. acc ↑', over_draws(100.0, 1, ' %')),
)


def protocol_line(row: Row) -> str:
  """One sentence saying how a table's numbers were computed (from its first row)."""
  if row.get('extractor') is None:
    return ''
  seen = row.get('samples')
  note = f' **{row["note"]}.**' if row.get('note') else ''
  draws, seed = row.get('draws') or 1, row['seed']
  seeds = (f'seed {seed}' if draws == 1 else
           f'{draws} draws per run row, seeds {seed} to {seed + draws - 1} (FID, precision, '
           'recall, intra-FID, cond. acc: mean ± std over the draws; KID and IS: means of both '
           'numbers)')
  source = f'{row["extractor_file"]}, ' if row.get('extractor_file') else ''
  return (f'Protocol: features {row["extractor"]} `{row["features"]}` ({source}sha256 '
          f'{row["extractor_sha256"]}); real statistics: the {row["real_split"]} split, '
          f'{row["real_images"]} images; {seen} generated images per run row (the real row: '
          f'test-split images); resize: {row["resize"]}; {seeds}.{note}')


def markdown(rows: list[Row], caption: str = '') -> str:
  """GitHub markdown tables (one per dataset and feature space), under the caption line."""
  out = [caption, ''] if caption else []
  for dataset, tag in dict.fromkeys((r['dataset'], r['features']) for r in rows):
    group = [r for r in rows if (r['dataset'], r['features']) == (dataset, tag)]
    name = group[0].get('extractor') or 'classifier'
    out += [f'**{dataset}** (features: {name} {tag})', '']
    out += [protocol_line(group[0]), ''] if protocol_line(group[0]) else []
    out += ['| ' + ' | '.join(h for _, h, _ in _MARKDOWN) + ' |',
            '|' + '|'.join('---' if i < 2 else '---:' for i in range(len(_MARKDOWN))) + '|']
    for row in group:
      cells = [DASH if row[k] is None else fmt(row, k) for k, _, fmt in _MARKDOWN]
      out.append('| ' + ' | '.join(cells) + ' |')
    out.append('')
  return '\n'.join(out).rstrip('\n') + '\n'


def to_csv(rows: list[Row]) -> str:
  """One header line of COLUMNS, then one line per row; full-precision numbers."""
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator='\n')
  writer.writerow(COLUMNS)
  for row in rows:
    writer.writerow([DASH if row.get(k) is None else row[k] for k in COLUMNS])
  return buf.getvalue()


def to_json(rows: list[Row]) -> str:
  """A JSON list of objects with the keys of COLUMNS (null where a metric does not apply)."""
  return json.dumps([{k: row.get(k) for k in COLUMNS} for row in rows], indent=2) + '\n'


Schema = tuple[tuple[str, str, Callable[[Row, str], str]], ...]  # (key, header, formatter)


def _markdown_with(rows: list[Row], schema: Schema, caption: str) -> str:
  """One markdown table of `rows` with the columns of `schema`."""
  out = [caption, ''] if caption else []
  out += ['| ' + ' | '.join(h for _, h, _ in schema) + ' |',
          '|' + '|'.join('---' if i < 3 else '---:' for i in range(len(schema))) + '|']
  for row in rows:
    out.append('| ' + ' | '.join(DASH if row.get(k) is None else fmt(row, k)
                                 for k, _, fmt in schema) + ' |')
  return '\n'.join(out) + '\n'


def render(rows: list[Row], fmt: str, caption: str = '', schema: Schema | None = None) -> str:
  """The table of `rows` in `fmt` (one of FORMATS); the caption goes to markdown only.

  Without `schema`: the noise-to-image GAN table (COLUMNS). With one: its keys are the
  columns (CSV header, JSON keys) and its headers the markdown ones.
  """
  if fmt not in FORMATS:
    raise UserError(f'unknown --format {fmt!r}; known: {", ".join(FORMATS)}')
  if schema is not None:
    keys = [k for k, _, _ in schema]
    if fmt == 'markdown':
      return _markdown_with(rows, schema, caption)
    if fmt == 'json':
      return json.dumps([{k: row.get(k) for k in keys} for row in rows], indent=2) + '\n'
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(keys)
    for row in rows:
      writer.writerow([DASH if row.get(k) is None else row[k] for k in keys])
    return buf.getvalue()
  if fmt == 'markdown':
    return markdown(rows, caption)
  if fmt == 'csv':
    return to_csv(rows)
  return to_json(rows)
