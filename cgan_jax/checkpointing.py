"""A thin wrapper over orbax's CheckpointManager: the training state plus a JSON record of
the config that produced it (so resume, eval and generate can check and rebuild it).

Faults: a save that fails (disk full, permission lost) raises CheckpointWriteError naming
the step and the intact earlier checkpoints (orbax deletes old checkpoints only after a new
one is committed). Reading the latest checkpoint (`step=None`) skips damaged ones, loudly,
for the newest that restores; `set_aside` moves damaged ones out of orbax's reach (its
clean-up and a re-save of the same step), byte for byte.
"""

import os
from typing import Any, Callable, TypeVar

import flax.serialization
import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from cgan_jax import checkpoint_faults as faults
from cgan_jax import config_defaults
from cgan_jax import forks
from cgan_jax.errors import CheckpointDamaged, CheckpointWriteError, UserError
from cgan_jax.state import GANState

FORMAT_VERSION = 1
DAMAGED_SUBDIR = 'damaged_checkpoints'  # where the trainer moves checkpoints that fail to read
T = TypeVar('T')


class Checkpointer:
  """Saves/restores `GANState` + metadata under `workdir/checkpoints/<step>`."""

  def __init__(self, workdir: str, max_to_keep: int = 3, read_only: bool = False,
               subdir: str = 'checkpoints', best_metric: str | None = None):
    """`best_metric`: keep the `max_to_keep` checkpoints with the lowest such metric."""
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, subdir)
    self.damaged: dict[int, CheckpointDamaged] = {}  # found by the reads so far, by step
    self._pending: int | None = None  # the step of a save still being written
    self._write_failed = False
    if read_only and not os.path.isdir(self.directory):
      raise UserError(f'no checkpoints in {workdir} (expected {self.directory}); '
                      'train first with train.py --workdir=...')
    if read_only:
      options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                             save_interval_steps=0, max_to_keep=None)
    else:
      best = dict(best_fn=lambda m: m[best_metric], best_mode='min') if best_metric else {}
      options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             cleanup_tmp_directories=True, **best)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'meta'))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  # Writing.

  def save(self, state: GANState, meta: dict[str, Any],
           metrics: dict[str, float] | None = None) -> int:
    """Saves at `state.step` (asynchronously); returns that step."""
    self.wait()  # a failure of the previous save is reported as that step's
    step = int(jax.device_get(state.step))
    meta = {**meta, 'format_version': FORMAT_VERSION, 'step': step}
    faults.silence_abandoned_writes()  # a failed save is reported in one line, once
    try:
      self._manager.save(step, metrics=metrics, args=ocp.args.Composite(
          state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
          meta=ocp.args.JsonSave(meta)))
    except Exception as e:  # noqa: BLE001 - orbax and TensorStore raise many kinds
      raise self._write_error(step, e) from e
    self._pending = step
    return step

  def wait(self) -> None:
    """Blocks until the pending save is on disk; CheckpointWriteError if it failed."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      if self._write_failed:
        return  # orbax re-raises a failed save at every wait: it was reported once
      self._write_failed = True
      step, self._pending = self._pending, None
      raise self._write_error(step, e) from e
    self._pending = None

  def _write_error(self, step: int | None, e: BaseException) -> CheckpointWriteError:
    try:
      self._manager.reload()  # what is on disk now
      intact = [s for s in self._manager.all_steps() if s != step]
    except Exception:  # noqa: BLE001 - the directory itself may be gone
      intact = []
    kept = (f'the earlier checkpoints are intact (steps {", ".join(map(str, sorted(intact)))} '
            f'in {self.directory})' if intact else 'no earlier checkpoint exists')
    where = self.path(step) if step is not None else self.directory
    return CheckpointWriteError(f'cannot write checkpoint step {step} to {where}: '
                                f'{faults.root_cause(e)}; training stopped; {kept}')

  # Reading.

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    """The JSON record of `step`, or of the newest checkpoint whose record reads."""
    return self._read(step, self._read_meta)

  def restore_state(self, template: GANState, step: int | None = None,
                    extra_as_saved: bool = False) -> GANState:
    """Restores into the structure, dtypes and shardings of `template` (`step=None`: the
    newest checkpoint that restores). `extra_as_saved`: a forked step's arrays
    (GANState.extra) restored as the checkpoint holds them, whatever the template's, for
    readers that never import the fork (eval.py, generate.py)."""
    return self._read(step, lambda s: self._read_state(template, s, extra_as_saved))

  def _read_meta(self, step: int) -> dict[str, Any]:
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))['meta']
    except Exception as e:  # orbax raises many kinds; the user needs the path
      if faults.is_damage(e):
        raise self._damage(step, 'meta', e) from e
      raise UserError(f'cannot read checkpoint metadata at {self.path(step)}: '
                      f'{faults.root_cause(e)}') from e
    if isinstance(meta.get('config'), dict):
      # Written by an older version (a registry name for config.model, or a model group
      # without an option added since): today's form.
      meta['config'] = config_defaults.upgrade(meta['config'])
    return meta

  def _read_state(self, template: GANState, step: int, extra_as_saved: bool) -> GANState:
    target = flax.serialization.to_state_dict(template)
    saved_tree = self._saved_tree(step)
    saved = None if saved_tree is None else set(saved_tree)
    if extra_as_saved and saved_tree is not None and 'extra' in target:
      sharding = target['step'].sharding
      target['extra'] = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
          saved_tree.get('extra', {}))
    # A checkpoint written before a field existed (g_ema, an empty subtree in GANs without an
    # EMA; extra) lacks its key. Empty subtrees hold no arrays: those the checkpoint lacks are
    # left out of the read and put back empty.
    absent = set() if saved is None else {
        k for k, v in target.items() if isinstance(v, dict) and not v and k not in saved}
    faults.silence_aborted_reads()  # a failed read is reported in one line, not 60 per array
    try:
      restored = self._restore(step, {k: v for k, v in target.items() if k not in absent})
    except Exception as e:  # noqa: BLE001
      if faults.is_damage(e):
        raise self._damage(step, 'state', e) from e
      differs = '' if saved_tree is None else forks.tree_difference(
          saved_tree, {k: v for k, v in target.items() if k not in absent})
      why = (f'the saved state {differs} (a forked step\'s arrays, GANState.extra, come from '
             'its init_extra)' if differs else faults.root_cause(e))
      raise UserError(f'cannot restore checkpoint {self.path(step)} into this model: '
                      f'{why}') from e
    state = flax.serialization.from_state_dict(template, {**restored, **{k: {} for k in absent}})
    if extra_as_saved and 'extra' in restored:  # (from_state_dict keeps the template's keys)
      state = state.replace(extra=restored['extra'])
    return state

  def _saved_tree(self, step: int) -> dict[str, Any] | None:
    """The state saved at `step` as a dict of orbax array metadata (shape, dtype); None
    where its metadata does not read (the restore itself then says what is wrong)."""
    try:  # (the manager's item_metadata is None for items it has not handled yet)
      tree = ocp.StandardCheckpointHandler().metadata(epath.Path(self.path(step)) / 'state')
      return {k: tree[k] for k in tree.keys()}
    except Exception:  # noqa: BLE001 - damaged or foreign checkpoints raise many kinds
      return None

  def _restore(self, step: int, target: dict[str, Any]) -> dict[str, Any]:
    return self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))['state']

  def _damage(self, step: int, item: str, e: BaseException) -> CheckpointDamaged:
    damage = CheckpointDamaged(step, faults.failing_file(e, os.path.join(self.path(step), item)),
                               faults.root_cause(e))
    if step not in self.damaged:
      logging.warning('%s', damage)
    self.damaged[step] = damage
    return damage

  def _read(self, step: int | None, read: Callable[[int], T]) -> T:
    """read(step); for `step=None`, read(newest) falling back to older ones that read."""
    steps = self.all_steps()
    if step is not None:
      if step not in steps:
        have = ', '.join(map(str, steps)) or 'none'
        raise UserError(f'no checkpoint of step {step} in {self.directory} (its steps: {have})')
      return read(step)
    if not steps:
      raise UserError(f'no checkpoint found in {self.directory}')
    for s in reversed(steps):
      if s in self.damaged:  # e.g. its metadata did not read: the whole checkpoint is out
        continue
      try:
        value = read(s)
      except CheckpointDamaged:
        continue
      skipped = sorted(d for d in self.damaged if d > s)
      if skipped:
        logging.warning('using checkpoint step %d, the newest that restores (damaged: step %s)',
                        s, ', '.join(map(str, skipped)))
      return value
    found = '; '.join(f'step {d.step}: {d.file}: {d.reason}'
                      for d in sorted(self.damaged.values(), key=lambda d: -d.step))
    raise UserError(f'no checkpoint in {self.directory} restores, all are damaged ({found}); '
                    'they are left as they are')

  def set_aside(self, steps: list[int]) -> list[str]:
    """Moves damaged checkpoints to <workdir>/damaged_checkpoints/ (process 0 moves, the
    others wait); returns the new paths. Nothing is deleted or rewritten."""
    moved = []
    for step in sorted(steps) if jax.process_index() == 0 else []:
      dest = base = os.path.join(self.workdir, DAMAGED_SUBDIR, str(step))
      n = 0
      while os.path.exists(dest):  # never over an earlier one
        n += 1
        dest = f'{base}.{n}'
      os.makedirs(os.path.dirname(dest), exist_ok=True)
      os.rename(self.path(step), dest)
      logging.warning('moved damaged checkpoint step %d to %s, unchanged', step, dest)
      moved.append(dest)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices('cgan_jax:set_aside_damaged_checkpoints')
    self._manager.reload()
    return moved

  def close(self) -> None:
    """Finishes pending saves and orbax's start-up clean-up of interrupted saves."""
    try:
      self.wait()
    finally:
      try:
        self._manager.close()
      except Exception:  # noqa: BLE001
        if not self._write_failed:
          raise
      # orbax (0.12) does not wait for that clean-up thread in close(); an early exit
      # would otherwise kill it mid-way at interpreter shutdown.
      getattr(self._manager, '_maybe_await_cleanup_tmp_directory', lambda: None)()

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc) -> None:
    self.close()
