"""Device-resident input (`config.pipeline = 'device'`): no host round-trip per step.

For datasets that fit in device memory (Fashion-MNIST/MNIST: 47 MB of uint8), the whole
split is put on every device once. Each epoch, the same permutation as the host pipelines
(`input_pipeline.epoch_permutation`) goes to the devices as an index array, and one
dispatch runs up to `config.steps_per_dispatch` train steps in a device loop, each
gathering its batch on device. On XLA:CPU a step inside a loop runs several times slower
(docs/perf_notes.md), so there the default ('auto', `feed_choice`) is host batches, one step
per dispatch; on GPU/TPU it is this feed, a whole epoch per dispatch. Device i gathers
exactly the rows the host pipeline would have sent it,
so the model trained is the same (tests/test_speed_paths.py). Needs no TensorFlow.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cgan_jax import input_pipeline, parallel
from cgan_jax.steps import AXIS

StepFn = Callable  # (state, batch) -> (state, metrics), per device


def epoch_order(seed: int, epoch: int, n: int, global_batch: int,
                micro_steps: int = 1) -> np.ndarray:
  """(steps, micro_steps, global_batch) int32 example indices of an epoch's steps, in the
  layout of `input_pipeline.batches`."""
  steps = input_pipeline.steps_per_epoch(n, global_batch * micro_steps)
  perm = input_pipeline.epoch_permutation(seed, epoch, n)[:steps * micro_steps * global_batch]
  return perm.reshape(steps, micro_steps, global_batch).astype(np.int32)


def _global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from a value every process holds in full (works across hosts)."""
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def multi_step(step_fn: StepFn, mesh: Mesh, max_steps: int) -> Callable:
  """jit(shard_map(...)) running `num_steps` (<= max_steps, traced) steps in one dispatch.

  (state, images, labels, order, start, num_steps) -> (state, metrics), where step i
  trains on rows order[start + i] and each metric is a (max_steps,) array whose first
  num_steps entries are the per-step values. A traced trip count means one compilation
  for every chunk length. max_steps = 1 compiles the bare step (no loop), which is the
  faster choice on CPU (docs/perf_notes.md).
  """

  def one(state, images_NHWC, labels_N, order_TSB, start, num_steps):
    del num_steps  # always 1
    rows_SB = lax.dynamic_index_in_dim(order_TSB, start, keepdims=False)
    state, metrics = step_fn(state, _batch(images_NHWC, labels_N, rows_SB))
    return state, jax.tree.map(lambda m: m[None], metrics)

  def run(state, images_NHWC, labels_N, order_TSB, start, num_steps):
    _, metric_shapes = jax.eval_shape(step_fn, state,
                                      _batch(images_NHWC, labels_N, order_TSB[0]))
    buffers = jax.tree.map(lambda s: jnp.zeros((max_steps, *s.shape), s.dtype), metric_shapes)

    def body(i, carry):
      state, buffers = carry
      rows_SB = lax.dynamic_index_in_dim(order_TSB, start + i, keepdims=False)
      state, metrics = step_fn(state, _batch(images_NHWC, labels_N, rows_SB))
      buffers = jax.tree.map(lambda b, m: lax.dynamic_update_index_in_dim(b, m, i, 0),
                             buffers, metrics)
      return state, buffers

    return lax.fori_loop(0, num_steps, body, (state, buffers))

  sharded = parallel.per_device(one if max_steps == 1 else run, mesh,
                               in_specs=(P(), P(), P(), P(None, None, AXIS), P(), P()),
                               out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=(0,))


def _batch(images_NHWC: jax.Array, labels_N: jax.Array, rows_SB: jax.Array) -> dict:
  """The batch layout of input_pipeline.batches: image (S, B, H, W, C), label (S, B)."""
  return {'image': jnp.take(images_NHWC, rows_SB, axis=0),
          'label': jnp.take(labels_N, rows_SB, axis=0)}


def feed_choice(pipeline: str, steps_per_dispatch: int, platform: str,
                steps_per_epoch: int) -> tuple[str, int]:
  """(pipeline, steps per dispatch) for config values that may be 'auto' / 0.

  On XLA:CPU host batches one step per dispatch were fastest (docs/perf_notes.md); on an
  accelerator the per-step dispatch and host transfer dominate a small model, so the split
  lives on the device and a whole epoch of steps is one dispatch.
  """
  on_cpu = platform == 'cpu'
  if pipeline == 'auto':
    pipeline = 'numpy' if on_cpu else 'device'
  if steps_per_dispatch == 0:
    steps_per_dispatch = 1 if on_cpu else max(steps_per_epoch, 1)
  return pipeline, steps_per_dispatch


class DeviceFeed:
  """Runs training steps in chunks over a device-resident split."""

  def __init__(self, step_fn: StepFn, images: np.ndarray, labels: np.ndarray, mesh: Mesh, *,
               global_batch: int, seed: int, steps_per_dispatch: int, micro_steps: int = 1):
    if steps_per_dispatch < 1:
      raise input_pipeline.DataError(f'steps_per_dispatch must be >= 1, got {steps_per_dispatch}')
    self._mesh, self._seed, self._global_batch = mesh, seed, global_batch
    self._micro_steps = micro_steps
    self.max_steps = steps_per_dispatch
    replicated = NamedSharding(mesh, P())
    self._images = _global(np.asarray(images, np.uint8), replicated)
    self._labels = _global(np.asarray(labels, np.int32), replicated)
    self._run = multi_step(step_fn, mesh, steps_per_dispatch)
    self._order, self._next = None, 0

  def start_epoch(self, epoch: int, start_step: int = 0) -> None:
    """Puts the epoch's permutation on the devices; the next step trained is `start_step`."""
    order = epoch_order(self._seed, epoch, len(self._labels), self._global_batch,
                        self._micro_steps)
    self._order = _global(order, NamedSharding(self._mesh, P(None, None, AXIS)))
    self._next = start_step

  def chunk(self, limit: int) -> int:
    """Steps the next `run` trains, given the steps left before the next event (log,
    checkpoint, epoch end): never past it."""
    return min(self.max_steps, limit)

  def run(self, state, num_steps: int):
    """Trains the next `num_steps` steps of the epoch: (state, {metric: (max_steps,)})."""
    if not 1 <= num_steps <= self.max_steps:
      raise ValueError(f'num_steps {num_steps} outside [1, {self.max_steps}]')
    state, metrics = self._run(state, self._images, self._labels, self._order,
                               np.int32(self._next), np.int32(num_steps))
    self._next += num_steps
    return state, metrics
