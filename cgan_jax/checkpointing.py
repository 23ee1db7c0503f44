"""A thin wrapper over orbax's CheckpointManager: the training state plus a JSON record of
the config that produced it (so resume, eval and generate can check and rebuild it)."""

import os
from typing import Any

import flax.serialization
import jax
import orbax.checkpoint as ocp

from cgan_jax.errors import UserError
from cgan_jax.state import GANState

FORMAT_VERSION = 1


class Checkpointer:
  """Saves/restores `GANState` + metadata under `workdir/checkpoints/<step>`."""

  def __init__(self, workdir: str, max_to_keep: int = 3, read_only: bool = False,
               subdir: str = 'checkpoints', best_metric: str | None = None):
    """`best_metric`: keep the `max_to_keep` checkpoints with the lowest such metric."""
    self.directory = os.path.join(os.path.abspath(workdir), subdir)
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

  def save(self, state: GANState, meta: dict[str, Any],
           metrics: dict[str, float] | None = None) -> int:
    """Saves at `state.step` (asynchronously); returns that step."""
    step = int(jax.device_get(state.step))
    meta = {**meta, 'format_version': FORMAT_VERSION, 'step': step}
    self._manager.save(step, metrics=metrics, args=ocp.args.Composite(
        state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
        meta=ocp.args.JsonSave(meta)))
    return step

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    step = self._latest_or(step)
    try:
      return self._manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))['meta']
    except Exception as e:  # orbax raises many kinds; the user needs the path
      raise UserError(f'cannot read checkpoint metadata at {self.path(step)}: {e}') from e

  def restore_state(self, template: GANState, step: int | None = None) -> GANState:
    """Restores into the structure, dtypes and shardings of `template`."""
    step = self._latest_or(step)
    target = flax.serialization.to_state_dict(template)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target)))['state']
    except Exception as e:
      raise UserError(f'cannot restore checkpoint {self.path(step)} into this model: {e}') from e
    return flax.serialization.from_state_dict(template, restored)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Finishes pending saves and orbax's start-up clean-up of interrupted saves."""
    self._manager.close()
    # orbax (0.12) does not wait for that clean-up thread in close(); an early exit
    # would otherwise kill it mid-way at interpreter shutdown.
    getattr(self._manager, '_maybe_await_cleanup_tmp_directory', lambda: None)()

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _latest_or(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise UserError(f'no checkpoint found in {self.directory}')
    return step
