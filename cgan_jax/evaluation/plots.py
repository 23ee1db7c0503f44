"""Metric-vs-step curves of eval.py's rows: one panel per metric, one line per run.

The real-data row of a table (no step) is drawn as a dashed horizontal line: the value a
perfect generator would reach. Used by `eval.py --all_checkpoints --plot=curves.png` and by the
results command (metric vs epoch of each recipe).
"""

import dataclasses
import math
from typing import Any

from cgan_jax import kinds

Row = dict[str, Any]


@dataclasses.dataclass
class Panel:
  title: str
  metric: str
  rows: list[Row]  # the rows of its table and feature space


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def panels(by_kind: dict[str, list[Row]], x: str = 'step') -> list[Panel]:
  """A panel per metric (and feature space, where a table has several) that has a value in
  at least one row with an `x`."""
  out = []
  for table, rows in by_kind.items():
    kind = kinds.by_table(table)
    spaces = list(dict.fromkeys(r.get('features') for r in rows))
    for space in spaces:
      in_space = [r for r in rows if r.get('features') == space]
      for metric, title in kind.plotted if kind else ():
        if any(r.get(x) is not None and _number(r.get(metric)) for r in in_space):
          suffix = f' ({space})' if len(spaces) > 1 and space else ''
          out.append(Panel(title + suffix, metric, in_space))
  return out


def plot(by_kind: dict[str, list[Row]], path: str, x: str = 'step', line: str = 'run',
         xlabel: str | None = None) -> list[str]:
  """Writes the curves to `path` (PNG); returns the panel titles, also stored in the PNG's
  'Panels' text field. Rows without `x` (the real-data rows) become dashed reference lines."""
  import matplotlib
  matplotlib.use('Agg')  # files only, no display
  from matplotlib import pyplot as plt

  found = panels(by_kind, x)
  if not found:
    from cgan_jax.errors import UserError
    raise UserError(f'nothing to plot: no row has both a {x} and a metric')
  cols = min(4, len(found))
  nrows = -(-len(found) // cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
  for ax in axes.flat[len(found):]:
    ax.set_visible(False)
  # One colour per run in every panel (a run may lack a metric: an unconditional one has no
  # conditional accuracy).
  everyone = list(dict.fromkeys(r[line] for p in found for r in p.rows if r.get(x) is not None))
  colour = {run: f'C{i % 10}' for i, run in enumerate(everyone)}
  legend = {}
  for ax, panel in zip(axes.flat, found):
    for run in everyone:
      points = sorted((r[x], r[panel.metric]) for r in panel.rows
                      if r[line] == run and r.get(x) is not None and _number(r.get(panel.metric)))
      if points:
        xs, ys = zip(*points)
        legend[str(run)], = ax.plot(xs, ys, marker='o', markersize=3, color=colour[run])
    for r in panel.rows:
      if r.get(x) is None and _number(r.get(panel.metric)):
        legend[str(r.get(line) or 'real')] = ax.axhline(r[panel.metric], color='0.4',
                                                        linestyle='--', linewidth=1)
    ax.set_title(panel.title)
    ax.set_xlabel(xlabel or x)
    ax.grid(alpha=0.3)
  fig.legend(list(legend.values()), list(legend), loc='lower center',
             ncol=min(4, len(legend)), fontsize='small', frameon=False)
  fig.tight_layout(rect=(0, 0.04 + 0.02 * (-(-len(legend) // 4)), 1, 1))
  titles = [p.title for p in found]
  fig.savefig(path, dpi=100, metadata={'Panels': ' | '.join(titles)})
  plt.close(fig)
  return titles

