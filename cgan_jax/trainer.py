"""The training loop: build, restore, iterate, log, sample, checkpoint, guard against NaN.

What is trained (a noise-to-image GAN or an image-to-image one) is a `tasks` object: its
data, initial state, step and sample grid. The loop is the same for every model.

Faults (README "Faults and preemption"): every config field is checked before anything is
read or written; one trainer per workdir (`workdir_lock`); SIGTERM/SIGINT stop after the
steps already queued (at most `dispatch_ahead` + 1 dispatches: `DispatchWindow`) with a
checkpoint (`preemption`); damaged checkpoints are skipped for the newest that restores and
set aside; a failed save stops the run (`checkpointing`).
"""

import collections
import contextlib
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from cgan_jax import checkpointing, cli, config_defaults, config_validation, device_input
from cgan_jax import input_pipeline, parallel, preemption, tasks, visualize, workdir_lock
from cgan_jax.errors import Preempted, UserError

class TrainingDiverged(UserError):
  """A loss or parameter became NaN/Inf."""


def check_workdir(workdir: str) -> None:
  """Creates `workdir` and proves it is writable, or raises a UserError."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write_probe_{os.getpid()}')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise UserError(f'workdir {workdir} is not writable: {e.strerror or e}') from e


def check_same_run(saved: dict[str, Any], config: ml_collections.ConfigDict, where: str) -> None:
  """Refuses to resume a checkpoint written by a different model/config (the fields that
  differ named one by one: model.norm, d_optimizer.learning_rate, ...)."""
  runtime = config_defaults.RUNTIME_FIELDS
  old = traverse_util.flatten_dict(
      {k: v for k, v in saved['config'].items() if k not in runtime}, sep='.')
  new = traverse_util.flatten_dict(
      {k: v for k, v in config.to_dict().items() if k not in runtime}, sep='.')
  diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
  if diff:
    shown = '; '.join(f'{k}: checkpoint {old.get(k)!r} vs config {new.get(k)!r}' for k in diff)
    raise UserError(f'{where} holds a checkpoint of a different run ({shown}). '
                    'Use another --workdir, or the config it was trained with.')


@jax.jit
def _all_finite(tree) -> jax.Array:
  """True when every floating-point array of `tree` is free of NaN and Inf."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in leaves]))


class _LogOnlyWriter:
  """Stand-in for clu's writer where TensorFlow (its TensorBoard backend) is absent."""

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    pass  # the trainer's progress line already logs them

  def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
    pass  # the PNG grids are still written

  def write_hparams(self, hparams: dict[str, Any]) -> None:
    logging.info('hparams: %s', hparams)

  def flush(self) -> None:
    pass


def _make_writer(workdir: str):
  """clu's TensorBoard + logging writer; log-only where TensorFlow is not installed."""
  try:
    from clu import metric_writers  # imports TensorFlow's summary writer
  except ImportError as e:
    logging.warning('No TensorBoard events (%s); logging only.', e)
    return _LogOnlyWriter()
  return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)


class _HostFeed:
  """One step per dispatch, on batches from the host pipeline ('tf.data' or 'numpy')."""

  def __init__(self, config: ml_collections.ConfigDict, train_step, images: np.ndarray,
               labels: np.ndarray, mesh: jax.sharding.Mesh, micro_steps: int, pipeline: str):
    self._config, self._images, self._labels, self._mesh = config, images, labels, mesh
    self._micro_steps, self._pipeline = micro_steps, pipeline
    self._step = parallel.data_parallel(train_step, mesh)
    self._batches = iter(())

  def start_epoch(self, epoch: int, start_step: int) -> None:
    self._batches = input_pipeline.batches(
        self._images, self._labels, global_batch=self._config.batch_size,
        seed=self._config.seed, epoch=epoch, start_step=start_step,
        process_index=jax.process_index(), process_count=jax.process_count(),
        micro_steps=self._micro_steps, pipeline=self._pipeline)

  def chunk(self, limit: int) -> int:
    """Steps the next `run` trains, given the steps left before the next event."""
    return 1

  def run(self, state, num_steps: int):
    return self._step(state, parallel.global_batch(next(self._batches), self._mesh))


class DispatchWindow:
  """Keeps the host at most `ahead` dispatches in front of the device.

  JAX dispatches asynchronously: without a bound, the loop queues steps until something reads
  a result (the next log line), and a SIGTERM then waits for all of them before the checkpoint.
  Measured on the 64x64 DCGAN, 2 CPU cores (~11 s a step), 2026-12-03: a SIGTERM 6 min into a
  run found 65 steps queued and the process exited 391 s later; with `ahead` 2, 48 s later
  (3 steps, then the save). Some preemptible machines give a 30 s notice. `add` waits for the
  dispatch `ahead` places back, so after it returns at most `ahead` dispatches are unfinished;
  0 waits for each one. Throughput is unchanged: the seed CGAN, 300 steps, whole process,
  `ahead` 2 against 1000: wall-time ratio 0.99 (0.82-1.03, 3 pairs), peak memory 1546 against
  1635 MiB (fewer batches held).
  """

  def __init__(self, ahead: int):
    self.ahead = ahead
    self._queued: collections.deque = collections.deque()

  def add(self, outputs) -> None:
    """Records a dispatch by its outputs; waits until at most `ahead` are unfinished."""
    self._queued.append(outputs)
    while len(self._queued) > self.ahead:
      jax.block_until_ready(self._queued.popleft())


def _make_feed(config: ml_collections.ConfigDict, train_step, images: np.ndarray,
               labels: np.ndarray, mesh: jax.sharding.Mesh, micro_steps: int):
  """The host pipeline's feed, or the device-resident one (several steps per dispatch)."""
  pipeline, per_dispatch = device_input.feed_choice(
      config.pipeline, config.steps_per_dispatch, mesh.devices.flat[0].platform,
      input_pipeline.steps_per_epoch(len(images), config.batch_size * micro_steps))
  logging.info('Input: %s pipeline%s', pipeline,
               f', {per_dispatch} steps per dispatch' if pipeline == 'device' else '')
  if pipeline != 'device':
    return _HostFeed(config, train_step, images, labels, mesh, micro_steps, pipeline)
  return device_input.DeviceFeed(train_step, images, labels, mesh,
                                 global_batch=config.batch_size, micro_steps=micro_steps,
                                 seed=config.seed, steps_per_dispatch=per_dispatch)


def _steps_to_next_event(step: int, epoch_end: int, config: ml_collections.ConfigDict,
                         marks: tuple[int, ...] = ()) -> int:
  """Steps until the epoch ends, the next log, checkpoint or FID step, or the next of
  `marks` (a profile's first and last step): a chunk's limit."""
  every = [n for n in (config.log_every_steps, config.checkpoint_every_steps,
                       config.eval_every_steps) if n]
  return min([epoch_end - step] + [n - step % n for n in every] +
             [m - step for m in marks if m > step])


def _periodic_actions():
  """clu's periodic_actions, or None where TensorFlow is absent (clu's metric_writers, which
  it imports, need TF; the GPU hosts have none): then _NoProgress and a direct trace."""
  try:
    from clu import periodic_actions
  except ImportError:
    return None
  return periodic_actions


class _NoProgress:
  """Stand-in for clu's ReportProgress without TF (no TensorBoard there either)."""

  def __call__(self, step: int) -> bool:
    return False

  def timed(self, name: str, wait_jax_async_dispatch: bool = True):
    return contextlib.nullcontext()


class _DirectProfile:
  """Stand-in for clu's Profile without TF: jax.profiler at the first and the last mark."""

  def __init__(self, logdir: str, first: int, last: int):
    self._logdir, self._first, self._last = logdir, first, last

  def __call__(self, step: int) -> None:
    if step == self._first:
      jax.profiler.start_trace(self._logdir)
    elif step == self._last:
      jax.profiler.stop_trace()


# A profile starts this many steps after the process starts: the first steps compile.
PROFILE_AFTER_STEPS = 2


class _Profile:
  """config.profile_steps > 0: a jax.profiler trace of that many steps, PROFILE_AFTER_STEPS
  after the start (or resume), in workdir/plugins/profile/ for TensorBoard's profile plugin.
  clu's periodic_actions.Profile starts and stops it; the loop stops a chunk at both marks."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, start_step: int,
               total_steps: int):
    n = config.profile_steps
    first = start_step + PROFILE_AFTER_STEPS
    self._dir = os.path.join(workdir, 'plugins', 'profile')
    self.marks = (first, first + n) if n and first + n <= total_steps else ()
    if n and not self.marks:
      logging.warning('no profile: fewer than %d steps left to run', PROFILE_AFTER_STEPS + n)
    actions = _periodic_actions()
    if not self.marks:
      self._action = None
    elif actions is None:
      self._action = _DirectProfile(workdir, *self.marks)
    else:
      self._action = actions.Profile(logdir=workdir, num_profile_steps=n,
                                     profile_duration_ms=None, first_profile=first,
                                     every_secs=None)

  def __call__(self, step: int, state) -> None:
    if self._action is None:
      return
    if step == self.marks[1]:
      jax.block_until_ready(state)  # the traced steps are done before the trace stops
    self._action(step)
    if step == self.marks[1]:
      logging.info('profile of steps %d-%d in %s (TensorBoard: Profile tab)',
                   self.marks[0] + 1, step, self._dir)
      self._action = None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the final state.

  Raises Preempted (after saving a checkpoint) when SIGTERM or SIGINT arrives.
  """
  config_validation.validate(config)  # every field, before any data is read
  probe = tasks.build(config)  # an unknown name fails here, as early
  probe.train_step  # noqa: B018 - a forked step imported and its fields checked, as early
  mesh = parallel.make_mesh(config.num_devices)
  if config.batch_size % mesh.size:
    raise UserError(f'batch_size {config.batch_size} is not divisible by {mesh.size} devices')
  check_workdir(workdir)
  with workdir_lock.hold(workdir), preemption.StopSignals() as stop:
    cli.log_to_file(os.path.join(workdir, 'train.log' if jax.process_index() == 0 else
                                 f'train.process_{jax.process_index()}.log'))
    images, labels = probe.load('train')
    # One step = micro_steps minibatches (n_critic: one per D update) and one round of G
    # updates.
    steps_per_epoch = input_pipeline.steps_per_epoch(len(images),
                                                     config.batch_size * probe.micro_steps)
    task = tasks.build(config, parallel.batch_norm_axis(mesh),  # none on one device
                       steps_per_epoch=steps_per_epoch)  # sized schedules, if any
    with checkpointing.Checkpointer(workdir, max_to_keep=config.keep_checkpoints) as ckpt:
      return _train(config, workdir, task, images, labels, steps_per_epoch, mesh, ckpt, stop)


def _restore(config: ml_collections.ConfigDict, workdir: str, task, mesh: jax.sharding.Mesh,
             ckpt: checkpointing.Checkpointer):
  """(state, step it was restored from or None): the newest checkpoint that restores, with
  damaged newer ones moved aside, or a fresh init in an empty workdir."""
  if ckpt.latest_step() is None:
    state = task.init_state(jax.random.PRNGKey(config.seed))
    return jax.device_put(state, parallel.replicated(mesh)), None
  check_same_run(ckpt.restore_meta(), config, workdir)
  # Restore into shapes: no random init to throw away.
  state = ckpt.restore_state(task.abstract_state(parallel.replicated(mesh)))
  step = int(jax.device_get(state.step))
  damaged = sorted(s for s in ckpt.damaged if s > step)
  if damaged:
    moved = ckpt.set_aside(damaged)
    logging.warning('resuming from step %d instead of the damaged step %s; the damaged '
                    'checkpoint is kept, unchanged, in %s', step, ', '.join(map(str, damaged)),
                    ', '.join(moved) or os.path.join(workdir, checkpointing.DAMAGED_SUBDIR))
  logging.info('Resumed from %s', ckpt.path(step))
  return state, step


def _periodic_fid(config: ml_collections.ConfigDict, task, workdir: str):
  """(FID callable, best-FID checkpointer) when config.eval_every_steps is set, else Nones."""
  if not config.eval_every_steps:
    return None, None
  # A manager of its own: one with best_fn may delete the latest checkpoint, needed to resume.
  return task.periodic_fid(), checkpointing.Checkpointer(workdir, 1, subdir='best_fid',
                                                         best_metric='fid')


def _train(config: ml_collections.ConfigDict, workdir: str, task, images: np.ndarray,
           labels: np.ndarray, steps_per_epoch: int, mesh: jax.sharding.Mesh,
           ckpt: checkpointing.Checkpointer, stop: preemption.StopSignals):
  """The loop proper, once inputs are validated and the checkpoint manager is open."""
  state, resumed_from = _restore(config, workdir, task, mesh, ckpt)
  total_steps = config.num_epochs * steps_per_epoch
  images_per_step = config.batch_size * task.micro_steps
  meta = {'config': config.to_dict(), 'steps_per_epoch': steps_per_epoch}

  feed = _make_feed(config, task.train_step, images, labels, mesh, task.micro_steps)
  writer = _make_writer(workdir)
  periodic_fid, best = _periodic_fid(config, task, workdir)
  if resumed_from is None:
    flat = traverse_util.flatten_dict(config.to_dict(), sep='.')
    writer.write_hparams({k: v for k, v in flat.items() if '.' not in k or k[:6] == 'model.'})
  os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)

  step = int(jax.device_get(state.step))
  last_good = resumed_from
  pending: list[tuple[int, dict[str, jax.Array]]] = []  # (steps, metrics of those steps)
  t_last, step_last = time.perf_counter(), step
  # clu's progress report: steps_per_sec and uptime to TensorBoard at each log line (called
  # only there: chunks of several steps), and the share of time in checkpoints, samples, FID.
  # Multi-process runs keep the plain progress line and scalars: they hung in the first steps
  # with clu's ReportProgress (2 processes on loopback; possibly the queued-dispatch deadlock
  # below, not re-tested).
  actions = _periodic_actions() if jax.process_count() == 1 else None
  progress = (_NoProgress() if actions is None else
              actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                     every_steps=None, every_secs=0.0))
  progress(step)  # its clock starts here
  profile = _Profile(config, workdir, step, total_steps)

  def flush_metrics() -> None:
    """Fetches the metrics of the steps since the last flush; stops on the first NaN/Inf."""
    nonlocal pending, t_last, step_last
    if not pending:
      return
    history = [{name: v[i] if np.ndim(v) else v for name, v in m.items()}
               for k, m in jax.device_get(pending) for i in range(k)]  # one row per step
    first = step - len(history)
    for i, m in enumerate(history):
      bad = [k for k, v in m.items() if not np.isfinite(v)]
      if bad:
        where = (f'{ckpt.path(last_good)} (step {last_good}), left intact'
                 if last_good is not None else 'none (no checkpoint was written)')
        raise TrainingDiverged(f'training diverged: non-finite {", ".join(bad)} at step '
                               f'{first + i}; last good checkpoint: {where}')
    means = {k: float(np.mean([m[k] for m in history])) for k in history[0]}
    now = time.perf_counter()
    rate = (step - step_last) / max(now - t_last, 1e-9)
    eta = (total_steps - step) / max(rate, 1e-9)
    writer.write_scalars(step, {**means, 'images_per_sec': rate * images_per_step,
                                'eta_minutes': eta / 60,
                                **({'steps_per_sec': rate} if isinstance(progress, _NoProgress)
                                   else {})})
    progress(step)  # steps_per_sec, uptime
    logging.info('step %d/%d (epoch %d/%d) | %s | %.2f steps/s, %.0f img/s | ETA %s', step,
                 total_steps, (step - 1) // steps_per_epoch + 1, config.num_epochs,
                 ' '.join(f'{k} {v:.4f}' for k, v in means.items()), rate,
                 rate * images_per_step, time.strftime('%H:%M:%S', time.gmtime(eta)))
    pending, t_last, step_last = [], now, step

  def save() -> None:
    nonlocal last_good
    flush_metrics()
    if not bool(_all_finite(state)):
      raise TrainingDiverged(f'training diverged: non-finite parameters at step {step}; last '
                             f'good checkpoint: {ckpt.path(last_good) if last_good else "none"}')
    with progress.timed('checkpoint', wait_jax_async_dispatch=False):
      last_good = ckpt.save(state, meta)

  def write_samples(epoch: int) -> None:
    with progress.timed('samples', wait_jax_async_dispatch=False):
      grid = task.sample_grid(state)
    if jax.process_index() == 0:
      visualize.save_png(grid, os.path.join(workdir, 'samples', f'epoch_{epoch:04d}.png'))
    writer.write_images(step, {'samples': grid[None]})

  # Several processes on CPU: one dispatch in flight at a time. With steps queued ahead,
  # XLA:CPU's gloo collectives deadlocked intermittently (2-process loopback, 2 devices each:
  # one device of a process inside a step's all-reduce while its other device waited to
  # start that step; 3 of 3 one-epoch runs hung, 0 of 4 with this wait). Elsewhere the host
  # queues up to config.dispatch_ahead dispatches ahead.
  one_dispatch_in_flight = jax.process_count() > 1 and jax.default_backend() == 'cpu'
  ahead = DispatchWindow(0 if one_dispatch_in_flight else config.dispatch_ahead)
  stopping = False
  try:
    stop.prime(step)
    for epoch in range(step // steps_per_epoch, config.num_epochs):
      feed.start_epoch(epoch, step % steps_per_epoch)
      while step < (epoch + 1) * steps_per_epoch and not stopping:
        k = feed.chunk(_steps_to_next_event(step, (epoch + 1) * steps_per_epoch, config,
                                            profile.marks))
        state, metrics = feed.run(state, k)
        ahead.add(metrics)  # bounds what a stop signal waits for (queued steps cannot be undone)
        pending.append((k, metrics))
        step += k
        profile(step, state)
        if step % config.log_every_steps == 0:
          flush_metrics()
        if config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
          save()
        if periodic_fid and step % config.eval_every_steps == 0:
          flush_metrics()  # no FID (nor best checkpoint) of a diverged state
          with progress.timed('fid', wait_jax_async_dispatch=False):
            scores = periodic_fid(state)
          writer.write_scalars(step, scores)
          logging.info('step %d: FID %.3f (%d samples)', step, scores['fid'],
                       config.eval_num_samples)
          best.save(state, meta, metrics=scores)
        stopping = stop.reached(step - k + 1, step)  # every process: the same step
      if step == (epoch + 1) * steps_per_epoch:
        if last_good != step:
          save()
        if (epoch + 1) % config.sample_every_epochs == 0 or epoch + 1 == config.num_epochs:
          write_samples(epoch + 1)
      if stopping and step < total_steps:  # (a signal at the very end: simply done)
        if last_good != step:
          save()
        ckpt.wait()  # on disk before we say so
        raise Preempted(f'stopped by {stop.describe()} at step {step} of {total_steps}: '
                        f'checkpoint {ckpt.path(step)} saved; run the same command again to '
                        'resume', stop.exit_code())
  finally:
    ckpt.wait()  # the last good checkpoint is complete on disk, whatever happened
    if best:
      best.close()
    writer.flush()
  logging.info('Done: step %d; checkpoints in %s', step, ckpt.directory)
  return state
