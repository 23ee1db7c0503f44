"""Scoring of benchmarks/results.py: eval.py's evaluators per dataset and feature space, the
milestones' scores (scores.json: the classifier; scores_inception.json: InceptionV3's standard
FID and KID) and the real-data rows, each cached with the options it was computed with."""

import dataclasses
import os
import sys
from typing import Any

import results_report as report
from cgan_jax.errors import UserError


class Scorer:
  """eval.py's evaluators, one per dataset and feature space (the real features load once),
  and the options. The classifier always; InceptionV3 as --features says (FID and KID, one
  draw: the first, the same noise as the classifier's)."""

  def __init__(self, features: list[str], inception_num_real: int = 0, **options: Any):
    """`features`: --features (see evaluator.resolve_features); `inception_num_real`: real
    images per split in Inception features (0: as num_real); `options`: evaluator.Options
    fields (num_samples, seed, kid_subsets, draws, cache_dir, num_real, inception_weights)."""
    from cgan_jax.evaluation import evaluator
    self._evaluator = evaluator
    self.spaces, note = evaluator.resolve_features(features, options.get('inception_weights'))
    if 'classifier' not in self.spaces:
      raise UserError(f'--features={",".join(self.spaces)}: results.py always scores the '
                      'classifier (--features=classifier,inception)')
    if note:
      print(f'note: {note}', file=sys.stderr, flush=True)
    self.options = evaluator.Options(**options)
    self.inception_num_real = inception_num_real or self.options.num_real
    self._by_dataset: dict[tuple[str, str], Any] = {}

  def key(self, real: bool = False, space: str = 'classifier') -> dict[str, Any]:
    """What a cached score depends on besides the checkpoint (the real-data row's: not on
    the draws). One draw adds nothing, so scores cached before --draws existed stay valid;
    so does the whole split (num_real 0). Inception's: its weights and protocol, one draw."""
    o = self.options
    key = {'num_samples': o.num_samples, 'seed': o.seed, 'kid_subsets': o.kid_subsets,
           'kid_subset_size': o.kid_subset_size, 'k': o.k}
    num_real = o.num_real if space == 'classifier' else self.inception_num_real
    key.update({'num_real': num_real} if num_real else {})
    if space != 'classifier':  # evaluator() was called first (results.py: for every dataset)
      spaces = [e.space for (_, name), e in self._by_dataset.items() if name == space]
      return {**key, 'sha256': spaces[0].sha256, 'protocol': spaces[0].protocol}
    return key if real or o.draws == 1 else {**key, 'draws': o.draws}

  def evaluator(self, config, space: str = 'classifier'):
    from cgan_jax import input_pipeline
    dataset = input_pipeline.canonical_name(config.dataset)
    if (dataset, space) not in self._by_dataset:
      options = dataclasses.replace(
          self.options, data_dir=config.data_dir or None,
          **({} if space == 'classifier' else {'draws': 1, 'num_real': self.inception_num_real}))
      self._by_dataset[dataset, space] = self._evaluator.DatasetEvaluator(
          dataset, options, self._evaluator.feature_space(space, dataset, options))
    return self._by_dataset[dataset, space]

  def done(self, folder: str) -> bool:
    """Whether the milestone in `folder` is scored, in every space, with these options."""
    if not os.path.exists(os.path.join(folder, report.GRID)):
      return False
    scores = lambda space: report.read_json(os.path.join(folder, report.scores_name(space))) or {}
    return all(scores(s).get('options') == self.key(space=s) for s in self.spaces)


def score(recipe: str, folder: str, config, epoch: int, scorer: Scorer) -> None:
  """Scores the milestone's checkpoint (in `folder`) in each feature space and draws its grid,
  unless done with these options."""
  path = os.path.join(folder, report.SCORES)
  cached = report.read_json(path)
  grid = os.path.join(folder, report.GRID)
  if not (cached and cached.get('options') == scorer.key() and os.path.exists(grid)):
    from cgan_jax import sampling, tasks, visualize
    draws = scorer.options.draws
    print(f'[{recipe}] scoring epoch {epoch} ({scorer.options.num_samples} samples'
          f'{f" x {draws} draws" if draws > 1 else ""})', flush=True)
    row = scorer.evaluator(config).run_row(folder)
    _, state = sampling.load(folder)
    tmp = f'{grid}.tmp.png'
    visualize.save_png(tasks.GanTask(config, axis_name=None).sample_grid(state), tmp)
    os.replace(tmp, grid)
    report.write_json(path, {'options': scorer.key(), 'row': report.plain(row)})
  for space in scorer.spaces[1:]:
    path = os.path.join(folder, report.scores_name(space))
    key = scorer.key(space=space)
    if (report.read_json(path) or {}).get('options') != key:
      print(f'[{recipe}] scoring epoch {epoch} in {space} features '
            f'({scorer.options.num_samples} samples)', flush=True)
      row = scorer.evaluator(config, space).run_row(folder)
      report.write_json(path, {'options': key, 'row': report.plain(row)})


def reference(runs_dir: str, config, scorer: Scorer) -> None:
  """The real-data row of the config's dataset (eval.py's) in each feature space, cached
  under runs_dir."""
  from cgan_jax import input_pipeline
  dataset = input_pipeline.canonical_name(config.dataset)
  for space in scorer.spaces:
    path = os.path.join(runs_dir, report.reference_name(dataset, space))
    key = scorer.key(real=True, space=space)
    if (report.read_json(path) or {}).get('options') == key:
      continue
    print(f'scoring the real {dataset} test split'
          f'{"" if space == "classifier" else f" in {space} features"}', flush=True)
    row = scorer.evaluator(config, space).reference_row()
    report.write_json(path, {'options': key, 'row': report.plain(row)})
