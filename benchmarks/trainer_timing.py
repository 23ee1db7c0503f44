"""The trainer's own loop as a benchmark runner: train.py's code path, paused between steps.

`TrainerRun(config, ...)` runs `trainer.train_and_evaluate(config, workdir)` in a thread, in a
temporary workdir, with the config as given (num_epochs raised where the loop would end before
the steps asked for): its feed choice (`device_input.feed_choice`),
dispatch window, metric flushes and progress lines, checkpoints, sample grids, at the config's
cadences. Only two things are swapped: the feed is wrapped so that the loop waits, between
two steps, until it is allowed more, and SIGTERM/SIGINT handlers are not installed (Python
installs them only in the main thread; the loop still asks its `reached` after each step).
`run(first, n)` lets the loop train n more steps and returns the seconds from the go to the
end of the n-th step's work (the log line, checkpoint or grid due at that step included, the
device idle again): the same bracket as the bare step's runners, whose repeats it
interleaves with. `first` is ignored: the loop trains its steps in order.
"""

import collections
import logging
import shutil
import tempfile
import threading
import time

import jax


class _Stop(Exception):
  """Raised inside the paused loop to end it (close())."""


class _NoSignals:
  """preemption.StopSignals without handlers (a thread cannot install them); never stops."""

  def __init__(self):
    self.received = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    pass

  def prime(self, step):
    pass

  def reached(self, first, last):
    return False


class _GatedFeed:
  """The trainer's feed; `chunk` waits at the gate (never runs past the steps allowed)."""

  def __init__(self, inner, gate: 'TrainerRun'):
    self._inner, self._gate, self.last = inner, gate, None

  def __getattr__(self, name):
    return getattr(self._inner, name)

  def chunk(self, limit: int) -> int:
    return min(self._inner.chunk(limit), self._gate._wait(self.last))

  def run(self, state, num_steps: int):
    self.last = self._inner.run(state, num_steps)
    self._gate._took(num_steps)
    return self.last


_GATES: dict[int, 'TrainerRun'] = {}  # trainer thread -> its gate


def _install() -> None:
  """Wraps trainer._make_feed and preemption.StopSignals, for the gated threads only (the
  wrappers stay: each thread finds its own gate; any other caller gets the originals)."""
  from cgan_jax import preemption, trainer
  if getattr(trainer._make_feed, 'gated', False):
    return
  make_feed, stop_signals = trainer._make_feed, preemption.StopSignals

  def gated_feed(*args, **kwargs):
    feed, gate = make_feed(*args, **kwargs), _GATES.get(threading.get_ident())
    return _GatedFeed(feed, gate) if gate else feed

  def signals():
    return _NoSignals() if threading.get_ident() in _GATES else stop_signals()

  gated_feed.gated = True
  trainer._make_feed, preemption.StopSignals = gated_feed, signals


class TrainerRun:
  """run(first, n) -> seconds of n steps of trainer.train_and_evaluate; close() ends it."""

  def __init__(self, config, steps_per_epoch: int, steps_needed: int = 0):
    """steps_needed: the steps the benchmark will ask for; num_epochs is raised to hold
    them (a runtime field: the loop only ends later)."""
    from cgan_jax import device_input
    self.num_epochs_was = None
    if config.num_epochs * steps_per_epoch <= steps_needed:  # the loop must not end first
      config = config.copy_and_resolve_references()
      self.num_epochs_was = config.num_epochs
      config.num_epochs = steps_needed // steps_per_epoch + 1
    self._config, self.steps_per_epoch = config, steps_per_epoch
    self.pipeline, self.steps_per_dispatch = device_input.feed_choice(
        config.pipeline, config.steps_per_dispatch, jax.devices()[0].platform, steps_per_epoch)
    self.feed = (f'device:{self.steps_per_dispatch}' if self.pipeline == 'device' else
                 self.pipeline)  # as the benchmark names the bare step's runner
    self._cv = threading.Condition()
    self._allowed = 0  # steps the loop may still start
    self._paused_at = None  # perf_counter when the loop last paused (device idle)
    self._closing, self._error, self._thread = False, None, None
    self.step = 0  # steps trained so far
    self.windows: list[tuple[int, int]] = []  # timed (first step, steps)
    self.workdir = tempfile.mkdtemp(prefix='bench_trainer_')

  def _wait(self, last) -> int:
    """In the loop: the steps it may train now, waiting (device idle) while none."""
    with self._cv:
      if self._allowed == 0:
        if last is not None:
          jax.block_until_ready(last)
        self._paused_at = time.perf_counter()
        self._cv.notify_all()
        self._cv.wait_for(lambda: self._allowed or self._closing)
      if self._closing:
        raise _Stop()
      return self._allowed

  def _took(self, k: int) -> None:
    with self._cv:
      self._allowed -= k
      self.step += k

  def _main(self) -> None:
    _GATES[threading.get_ident()] = self
    _install()
    try:
      from cgan_jax import trainer
      trainer.train_and_evaluate(self._config, self.workdir)
      self._error = RuntimeError('the trainer finished its num_epochs: too few steps left')
    except _Stop:
      pass
    except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
      self._error = e
    finally:
      _GATES.pop(threading.get_ident(), None)
      with self._cv:
        self._paused_at = time.perf_counter()
        self._cv.notify_all()

  def __call__(self, first: int, n: int) -> float:
    del first
    with self._cv:
      if self._thread is None:
        self._thread = threading.Thread(target=self._main, name='trainer', daemon=True)
        self._thread.start()
      elif self._error is not None or not self._thread.is_alive():
        raise RuntimeError('the trainer thread has stopped') from self._error
      else:
        self.windows.append((self.step, n))
      self._paused_at = None
      start = time.perf_counter()
      self._allowed = n
      self._cv.notify_all()
      self._cv.wait_for(lambda: self._paused_at is not None)
      if self._error is not None:
        raise RuntimeError('the trainer thread failed') from self._error
      return self._paused_at - start

  def info(self) -> dict:
    """The loop's settings, and the log lines, checkpoints and sample grids that fell in the
    timed windows (the warm-up's steps are not timed)."""
    c, spe = self._config, self.steps_per_epoch
    count = collections.Counter(log_lines=0, checkpoints=0, sample_grids=0)
    for first, n in self.windows:
      for s in range(first + 1, first + n + 1):  # the step count after each step
        count['log_lines'] += s % c.log_every_steps == 0
        epoch_end = s % spe == 0
        count['checkpoints'] += epoch_end or bool(c.checkpoint_every_steps and
                                                  s % c.checkpoint_every_steps == 0)
        count['sample_grids'] += epoch_end and (s // spe) % c.sample_every_epochs == 0
    return dict(feed=self.feed, pipeline=self.pipeline, steps_per_dispatch=self.steps_per_dispatch,
                steps_per_epoch=spe, dispatch_ahead=c.dispatch_ahead,
                log_every_steps=c.log_every_steps,
                checkpoint_every_steps=c.checkpoint_every_steps,
                sample_every_epochs=c.sample_every_epochs,
                steps_timed=sum(n for _, n in self.windows), events_timed=dict(count),
                **({'num_epochs_raised': [self.num_epochs_was, c.num_epochs]}
                   if self.num_epochs_was is not None else {}))

  def close(self) -> None:
    """Ends the loop (its `finally`: pending checkpoint written) and removes the workdir."""
    if self._thread is not None:
      with self._cv:
        self._closing = True
        self._cv.notify_all()
      self._thread.join(timeout=120)
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, 'baseFilename', '').startswith(
        self.workdir)]:
      root.removeHandler(h)
      h.close()
    shutil.rmtree(self.workdir, ignore_errors=True)
