"""Stopping on SIGTERM or SIGINT at a step boundary every process agrees on.

SIGTERM is what `timeout`, SLURM, Kubernetes and preemptible GPU/TPU machines send before they
reclaim a machine; SIGINT is Ctrl-C. On either, the trainer finishes the steps already queued
on the device (at most `config.dispatch_ahead` + 1 dispatches: trainer.DispatchWindow), saves a
checkpoint and exits with 128 + the signal's number (143, 130).

One process: a Python handler sets a flag the loop reads after each step.
Several processes: JAX's preemption sync manager (started by `jax.distributed.initialize`)
owns SIGTERM; when any process gets one it tells the others and they all pick the same step
(the fastest one's next), which `multihost_utils.reached_preemption_sync_point` reports.
SIGINT is forwarded to it as a SIGTERM to this process. A second SIGINT stops at once,
without saving (a repeated SIGTERM does not: schedulers resend it; SIGKILL always works).
"""

import os
import signal
from typing import Any

from absl import logging


def _sync_manager_running() -> bool:
  """Whether JAX's preemption sync manager runs (multi-process runs, service enabled)."""
  try:
    from jax._src import distributed  # no public accessor exists for this
    return distributed.global_state.preemption_sync_manager is not None
  except (ImportError, AttributeError):
    return False


class StopSignals:
  """Catches SIGTERM/SIGINT while training; `reached(first, last)` says whether to stop after
  the steps first..last (the last dispatch)."""

  def __init__(self):
    self.received: int | None = None  # the first signal this process got
    self._previous: dict[int, Any] = {}
    self._coordinated = False

  def __enter__(self) -> 'StopSignals':
    import jax
    caught = (signal.SIGTERM, signal.SIGINT)
    if jax.process_count() > 1:
      self._coordinated = _sync_manager_running()
      if not self._coordinated:
        logging.warning('JAX preemption service is off (jax_enable_preemption_service): a '
                        'signal ends only the process that gets it, without a checkpoint')
        return self
      caught = (signal.SIGINT,)  # SIGTERM: JAX's notifier
    for s in caught:
      self._previous[s] = signal.signal(s, self._on_signal)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()

  def _on_signal(self, signum: int, frame) -> None:
    name = signal.Signals(signum).name
    if self.received is not None:
      if signum == signal.SIGINT:
        raise KeyboardInterrupt  # the second Ctrl-C: stop now
      logging.warning('%s again: still saving the checkpoint (SIGKILL stops at once)', name)
      return
    self.received = signum
    logging.warning('%s received: finishing the steps already queued, then saving a checkpoint '
                    '(a second Ctrl-C stops at once, without one)', name)
    if self._coordinated:
      os.kill(os.getpid(), signal.SIGTERM)  # JAX's notifier tells every process

  def prime(self, step: int) -> None:
    """Tells JAX's sync manager the step training starts from (multi-process runs)."""
    self.reached(step, step)

  def reached(self, first: int, last: int) -> bool:
    """Whether to stop now, after training steps first..last."""
    if not self._coordinated:
      return self.received is not None
    from jax.experimental import multihost_utils
    # Every process passes every step number once, in order: the protocol's contract.
    hits = [multihost_utils.reached_preemption_sync_point(s) for s in range(first, last + 1)]
    return any(hits)

  def exit_code(self) -> int:
    """128 + the signal: 143 for SIGTERM (also a peer's notice), 130 for SIGINT."""
    return 128 + (self.received or signal.SIGTERM)

  def describe(self) -> str:
    if self.received is not None:
      return signal.Signals(self.received).name
    return 'a preemption notice (SIGTERM to a process of this run)'
