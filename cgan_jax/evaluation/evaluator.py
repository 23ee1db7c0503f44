"""Scores generators and real data in one feature space: the rows of eval.py's tables.

Model rows compare `num_samples` draws of G with the real train split; the real-data row scores
the test split the same way, so every model number has its ceiling (or floor) beside it. Each
feature space (the committed classifier; InceptionV3 with the FID weights for numbers
comparable with papers) gives its own rows, each carrying the protocol it was computed with.
InceptionV3's rows hold the standard FID and KID only (`FeatureSpace.fid_kid_only`); --features'
default, 'auto', adds them wherever `inception.locate` finds the weights (`resolve_features`).
"""

import copy
import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from cgan_jax import checkpointing, forks, input_pipeline, kinds, models, sampling, tasks
from cgan_jax import state as state_lib
from cgan_jax.errors import UserError
from cgan_jax.evaluation import classifier, features, metrics

Row = dict[str, Any]
EXTRACTORS = ('classifier', 'inception')
AUTO = 'auto'  # --features' default: the classifier, plus InceptionV3 when its weights are found
ENV_FEATURES = 'CGAN_JAX_FEATURES'  # what --features=auto means instead (e.g. 'classifier')
# With several draws per run row: the metrics whose spread over the draws each row also gives
# (as '<key>_draw_std'). KID's and IS's own ± (over subsets / splits) stay as they are.
DRAW_STD_KEYS = ('fid', 'precision', 'recall', 'intra_fid', 'cond_acc')


@dataclasses.dataclass(frozen=True)
class Options:
  """How to evaluate; every random choice derives from `seed`."""
  num_samples: int = 10000
  seed: int = 0
  batch_size: int = 500
  kid_subsets: int = 100
  kid_subset_size: int = 1000
  k: int = 3  # neighbours for the precision/recall manifolds
  cache_dir: str | None = None
  assets_dir: str | None = None
  data_dir: str | None = None
  features: tuple[str, ...] = ('classifier',)  # feature spaces, one table each (EXTRACTORS)
  inception_weights: str | None = None  # .pth or TorchScript .pt (else inception.locate)
  inception_batch_size: int = 0  # 0: inception.default_batch_size()
  num_real: int = 0  # real images per split for the reference statistics (first N; 0: all)
  # Which G of a run with an EMA: 'auto' (the EMA when present), 'ema', 'raw', or 'both'
  # (two rows per run, "<model> (ema)" and "<model> (raw)"; one row for runs without an EMA).
  generator: str = 'auto'
  # Independent sample sets per noise-to-image run row, drawn and scored with seeds seed,
  # seed + 1, ...: each metric is their mean, DRAW_STD_KEYS also get their standard deviation.
  # The first draw is the one-draw row.
  draws: int = 1

  def __post_init__(self):
    if self.draws < 1:
      raise UserError(f'--draws must be at least 1, got {self.draws}')
    if self.generator not in (*state_lib.GENERATORS, 'both'):
      raise UserError(f'--generator must be one of {", ".join(state_lib.GENERATORS)}, both; '
                      f'got {self.generator!r}')


def check_num_samples(num_samples: int, feature_dim: int, name: str = 'classifier') -> None:
  """FID needs a full-rank sample covariance: at least d + 1 samples."""
  if num_samples < feature_dim + 1:
    raise UserError(f'--num_samples={num_samples} is too small: FID needs at least d + 1 = '
                    f'{feature_dim + 1} samples for a full-rank covariance of the d = '
                    f'{feature_dim} {name} features')


def resolve_features(names: list[str] | tuple[str, ...], inception_weights: str | None = None
                     ) -> tuple[tuple[str, ...], str | None]:
  """--features -> (feature spaces, a note for stderr or None). 'auto' ($CGAN_JAX_FEATURES
  when set): the classifier, plus InceptionV3 when `inception.locate` finds weights; none found
  is a note, never an error nor a download (a missing --inception_weights file is an error)."""
  names = tuple(names)
  if names == (AUTO,) and os.environ.get(ENV_FEATURES, AUTO) != AUTO:
    names = tuple(n.strip() for n in os.environ[ENV_FEATURES].split(',') if n.strip())
  if names != (AUTO,):
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown or not names:
      raise UserError(f'unknown --features {",".join(unknown)!r}; known: {AUTO} (alone), '
                      f'{", ".join(EXTRACTORS)}')
    return tuple(dict.fromkeys(names)), None
  from cgan_jax.evaluation import inception  # pylint: disable=g-import-not-at-top
  try:
    path = inception.locate(inception_weights)
  except UserError as e:
    if inception_weights:
      raise
    return ('classifier',), f'classifier features only, no standard FID: {e}'
  return EXTRACTORS, (f'standard FID and KID in InceptionV3 features too ({path}); '
                      '--features=classifier leaves them out')


def feature_space(name: str, dataset: str, options: Options) -> features.FeatureSpace:
  """The feature space `name` (one of EXTRACTORS) for `dataset`; UserError if unavailable."""
  if name == 'classifier':
    asset = classifier.load_asset(dataset, options.assets_dir)
    return features.classifier_space(asset, options.batch_size)
  if name == 'inception':
    from cgan_jax.evaluation import inception  # pylint: disable=g-import-not-at-top
    side, _, channels = input_pipeline.DATASETS[dataset].image_shape
    return inception.feature_space(inception.load(options.inception_weights),
                                   options.inception_batch_size, side, channels)
  raise UserError(f'unknown --features {name!r}; known: {", ".join(EXTRACTORS)}')


def checkpoint_steps(workdir: str) -> list[int]:
  """All checkpointed steps of a workdir, ascending."""
  with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:  # errs on a missing dir
    steps = ckpt.all_steps()
  if not steps:
    raise UserError(f'no checkpoint found in {ckpt.directory}')
  return steps


def run_config(workdir: str, step: int | None) -> ml_collections.ConfigDict:
  """The config a checkpoint was trained with, checked to name a known dataset and model."""
  config = ml_collections.ConfigDict(
      checkpointing.Checkpointer(workdir, read_only=True).restore_meta(step)['config'])
  tasks.build(config, axis_name=None)  # unknown model/loss/dataset: UserError
  return config


class DatasetEvaluator:
  """The feature network and the real references of one dataset; scores sample sets."""

  def __init__(self, dataset: str, options: Options,
               space: features.FeatureSpace | None = None):
    self.dataset = input_pipeline.canonical_name(dataset)
    self.options = options
    self.space = space or feature_space('classifier', self.dataset, options)
    self.num_classes = input_pipeline.DATASETS[self.dataset].num_classes
    self.feature_dim = self.space.feature_dim
    # A second opinion (InceptionV3) gives KID alone, FID a dash, with too few samples for FID.
    self.fid_ok = options.num_samples > self.feature_dim
    if not self.space.fid_kid_only:
      check_num_samples(options.num_samples, self.feature_dim, self.space.name)
    self._samplers: dict[Any, Callable] = {}

  def real_split(self, split: str) -> features.RealSet:
    return features.real_set(self.space, split, self.options.cache_dir, self.options.data_dir,
                             dataset=self.dataset, num_real=self.options.num_real)

  @functools.cached_property
  def train(self) -> features.RealSet:
    return self.real_split('train')

  @functools.cached_property
  def test(self) -> features.RealSet:
    return self.real_split('test')

  def reseeded(self, seed: int) -> 'DatasetEvaluator':
    """This evaluator with another seed: shares the feature network, the real sets and the
    compiled samplers; draws its own noise, KID subsets and precision/recall reference."""
    other = copy.copy(self)
    other.options = dataclasses.replace(self.options, seed=seed)
    other.__dict__.pop('pr_reference', None)  # seeded: a subset of the train split
    return other

  def _subset(self, n: int, size: int, salt: int) -> np.ndarray:
    """Sorted indices of a seeded subset of range(n) (all of it when size >= n)."""
    if size >= n:
      return np.arange(n)
    rng = np.random.default_rng([self.options.seed, salt])
    return np.sort(rng.choice(n, size, replace=False))

  @functools.cached_property
  def pr_reference(self) -> tuple[np.ndarray, np.ndarray]:
    """The real train features of the precision/recall manifold and their k-NN radii."""
    rows = self._subset(len(self.train.features), self.options.num_samples, salt=1)
    real = self.train.features[rows]
    return real, metrics.knn_radii(real, self.options.k)

  def _draw(self, gan: state_lib.GAN, variables: Any, g_params: Any, g_stats: Any,
            z_BZ: jax.Array, y_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    """G's images, mapped to [0, 1] at the dataset's size, through the feature network."""
    images = state_lib.generate(gan, g_params, g_stats, z_BZ, y_B)
    side = input_pipeline.DATASETS[self.dataset].image_shape[0]
    return self.space.apply(variables, features.to_unit_range(images, gan.pixel_range, side))

  def sample(self, gan: state_lib.GAN, g_params: Any, g_stats: Any
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, probabilities and labels of num_samples draws of G (balanced labels)."""
    n, seed = self.options.num_samples, self.options.seed
    labels_N = (np.arange(n) % gan.num_classes).astype(np.int32)
    keys = jax.random.split(jax.random.PRNGKey(seed), n)  # as sampling.draw: same seed, same z
    z_NZ = np.asarray(jax.vmap(lambda k: gan.latent(k, gan.z_dim))(keys))
    key = (gan.generator, gan.pixel_range)  # equal for every checkpoint of a model: one compile
    if key not in self._samplers:
      self._samplers[key] = jax.jit(functools.partial(self._draw, gan))
    draw = self._samplers[key]
    variables = self.space.variables  # an argument, not a constant folded into the program
    batch = min(self.options.batch_size, self.space.batch_size)
    feats, probs = features.in_batches(lambda z, y: draw(variables, g_params, g_stats, z, y), n,
                                       batch, z_NZ, labels_N,
                                       label=f'{self.space.name} features of {n} samples of G')
    return feats, probs, labels_N

  def score(self, feats: np.ndarray, probs: np.ndarray, labels: np.ndarray,
            conditional: bool) -> Row:
    """All metrics of one sample set against the train split; conditional ones or None."""
    o, train = self.options, self.train
    row: Row = {'fid': None}
    if len(feats) > self.feature_dim or not self.space.fid_kid_only:
      row['fid'] = metrics.frechet_distance(*metrics.mean_cov(feats), train.mean, train.cov)
    row['kid'], row['kid_std'] = metrics.kid(feats, train.features, o.kid_subsets,
                                             o.kid_subset_size, seed=o.seed)
    row['is'] = row['is_std'] = None  # weights without the class layer (default_1.pt): no IS
    if probs.shape[1]:
      row['is'], row['is_std'] = metrics.inception_score(probs)
    row['precision'] = row['recall'] = row['intra_fid'] = row['cond_acc'] = None
    if self.space.fid_kid_only:  # FID and KID (and IS when free): the standard numbers only
      return row
    real, radii = self.pr_reference
    row['precision'], row['recall'] = metrics.precision_recall(real, feats, o.k, radii)
    if conditional:
      if self.space.class_probs:  # InceptionV3's classes are ImageNet's, not the dataset's
        row['cond_acc'] = metrics.conditional_accuracy(probs, labels)
      smallest = int(np.bincount(labels, minlength=self.num_classes).min())
      if smallest > self.feature_dim:
        row['intra_fid'] = metrics.intra_fid(feats, labels, train.class_means, train.class_covs)
      else:
        logging.warning('intra-class FID skipped: %d samples in the smallest class, it needs '
                        '%d (use --num_samples >= %d)', smallest, self.feature_dim + 1,
                        self.num_classes * (self.feature_dim + 1))
    return row

  def score_draws(self, gan: state_lib.GAN, g_params: Any, g_stats: Any) -> tuple[Row, int]:
    """score() of options.draws sample sets of G (seeds seed, seed + 1, ...), combined by
    combine_draws; and the number of images in each."""
    rows = []
    for i in range(self.options.draws):
      drawer = self if i == 0 else self.reseeded(self.options.seed + i)
      feats, probs, labels = drawer.sample(gan, g_params, g_stats)
      rows.append(drawer.score(feats, probs, labels, gan.conditional))
    return combine_draws(rows), len(labels)

  def _header(self, run: str, model: str, step: int | None, samples: int) -> Row:
    return {'run': run, 'model': model, 'dataset': self.dataset, 'step': step,
            'samples': samples}

  def protocol(self) -> Row:
    """How every number of a row was computed (tables print it beside the numbers)."""
    s = self.space
    notes = [s.note] if s.note else []
    if not self.fid_ok:
      notes.append(f'FID needs at least {self.feature_dim + 1} samples (d = {self.feature_dim}): '
                   'KID only')
    return {'features': s.tag, 'extractor': s.name, 'extractor_sha256': s.sha256,
            'real_split': 'train', 'real_images': len(self.train.labels), 'resize': s.resize,
            'seed': self.options.seed, 'draws': self.options.draws,
            'note': '; '.join(notes) or None, 'extractor_file': s.source or None}

  def reference_row(self) -> Row:
    """The real test split scored like a model: the ceiling of every column."""
    test = self.test
    rows = self._subset(len(test.labels), self.options.num_samples, salt=2)
    logging.info('Scoring the real %s test split (%d images)', self.dataset, len(rows))
    return {**self._header('real test split', 'real data', None, len(rows)),
            **self.score(test.features[rows], test.probs[rows], test.labels[rows], True),
            **self.protocol()}

  def run_row(self, workdir: str, step: int | None = None,
              config: ml_collections.ConfigDict | None = None) -> Row:
    """Loads a checkpoint (latest by default), draws from G and scores it (the EMA G when
    the run has one, unless options.generator says otherwise; 'both' takes the first)."""
    return self.run_rows(workdir, step, config)[0]

  def run_rows(self, workdir: str, step: int | None = None,
               config: ml_collections.ConfigDict | None = None) -> list[Row]:
    """run_row's row, or with options.generator 'both' and an EMA in the run, one row for
    the EMA G and one for the raw G."""
    config = config or run_config(workdir, step)
    gan, state = sampling.load(workdir, step)
    step = int(state.step)
    which = self.options.generator  # checked by Options
    kinds = ['ema', 'raw'] if which == 'both' and state.g_ema else [
        'auto' if which == 'both' else which]
    rows = []
    for kind in kinds:
      g_params, g_stats = state_lib.sampling_generator(state, kind)
      label = (models.label(config) + forks.label(config)
               + (f' ({kind})' if which == 'both' and state.g_ema else ''))
      logging.info('Scoring %s step %d (%s, %d samples%s)', workdir, step, label,
                   self.options.num_samples,
                   f' x {self.options.draws} draws' if self.options.draws > 1 else '')
      scores, samples = self.score_draws(gan, g_params, g_stats)
      rows.append({**self._header(workdir, label, step, samples), **scores, **self.protocol()})
    return rows


def combine_draws(rows: list[Row]) -> Row:
  """One row from the scores of several draws: each metric's mean (None where it does not
  apply), and for DRAW_STD_KEYS '<key>_draw_std', the sample standard deviation over the
  draws (ddof 1; None for a single draw)."""
  out: Row = {}
  for key in rows[0]:
    values = [row[key] for row in rows]
    out[key] = None if values[0] is None else float(np.mean(values))
  for key in DRAW_STD_KEYS:
    values = [row[key] for row in rows]
    out[f'{key}_draw_std'] = (None if len(rows) < 2 or values[0] is None
                              else float(np.std(values, ddof=1)))
  return out


def evaluate(workdirs: list[str], options: Options, all_checkpoints: bool = False,
             reference: bool = True) -> dict[str, list[Row]]:
  """Tables by kind (its `table` name -> rows, built by the kind's `evaluate`: reference
  rows first, then one row per run or per checkpoint). Kinds with no run are left out."""
  unknown = [name for name in options.features if name not in EXTRACTORS]
  if unknown or not options.features:
    raise UserError(f'unknown --features {",".join(unknown)!r}; known: {", ".join(EXTRACTORS)}')
  targets = []  # checked up front: a bad workdir fails before minutes of work
  for workdir in workdirs:
    for step in checkpoint_steps(workdir) if all_checkpoints else [None]:
      targets.append((workdir, step, run_config(workdir, step)))
  by_kind: dict[type, list[tuple[str, int | None, ml_collections.ConfigDict]]] = {}
  for target in targets:
    by_kind.setdefault(kinds.of(target[2]), []).append(target)
  ordered = sorted(by_kind, key=lambda kind: kind.table_rank)  # stable: then by first run
  return {kind.table: kind.evaluate(by_kind[kind], options, reference) for kind in ordered}


def score_gans(targets: list[tuple[str, int | None, ml_collections.ConfigDict]],
                   options: Options, reference: bool) -> list[Row]:
  """Noise-to-image rows per dataset and feature space: a real-data row, then the runs."""
  datasets = list(dict.fromkeys(input_pipeline.canonical_name(c.dataset) for *_, c in targets))
  evaluators = [DatasetEvaluator(dataset, options, feature_space(name, dataset, options))
                for dataset in datasets for name in options.features]  # all weights checked first
  rows = []
  for evaluator in evaluators:
    if reference:
      rows.append(evaluator.reference_row())
    for workdir, step, config in targets:
      if input_pipeline.canonical_name(config.dataset) == evaluator.dataset:
        rows += evaluator.run_rows(workdir, step, config)
  return rows


def make_periodic_fid(dataset: str, num_samples: int = 10000, seed: int = 0,
                      cache_dir: str | None = None, assets_dir: str | None = None,
                      data_dir: str | None = None, batch_size: int = 500
                      ) -> Callable[[state_lib.GAN, state_lib.GANState], dict[str, float]]:
  """A callable (gan, state) -> {'fid': ...} for the trainer: same noise at every call."""
  evaluator = DatasetEvaluator(dataset, Options(
      num_samples=num_samples, seed=seed, batch_size=batch_size, cache_dir=cache_dir,
      assets_dir=assets_dir, data_dir=data_dir))
  train = evaluator.train  # computed (or read from the cache) now, not at the first call

  def periodic_fid(gan: state_lib.GAN, state: state_lib.GANState) -> dict[str, float]:
    g_params, g_stats = jax.device_get(state_lib.sampling_generator(state))
    feats, _, _ = evaluator.sample(gan, g_params, g_stats)
    return {'fid': metrics.frechet_distance(*metrics.mean_cov(feats), train.mean, train.cov)}

  return periodic_fid
