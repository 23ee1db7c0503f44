"""Data parallelism: a 1-D ('data',) device mesh, the sharded step, host <-> global arrays."""

from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cgan_jax import distributed
from cgan_jax.steps import AXIS


def make_mesh(num_devices: int = 0) -> Mesh:
  """A ('data',) mesh over the first `num_devices` devices of each process (0: all)."""
  return Mesh(np.asarray(distributed.mesh_devices(num_devices)), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


# Batches are (micro_steps, batch, ...): the batch axis (1) is split over devices.
BATCH_SPEC = P(None, AXIS)


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, BATCH_SPEC)


def per_device(fn: Callable, mesh: Mesh, in_specs, out_specs) -> Callable:
  """`fn` written per device (collectives over AXIS), run over the mesh.

  Several devices: `jax.shard_map`. One device: the same function under a size-1 `vmap`
  named AXIS, so its pmeans and axis_index still mean what they mean per device, but no
  all-reduce is compiled (shard_map's autodiff leaves one per gradient in the 1-device
  step; tests/test_speed_paths.py checks the HLO). Outputs must be replicated (P()) or
  per-example along the batch axis; both are the same array on one device.
  """
  if mesh.size > 1:
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)
  lane = jax.vmap(fn, in_axes=None, out_axes=0, axis_name=AXIS, axis_size=1)
  return lambda *args: jax.tree.map(lambda x: x[0], lane(*args))


def data_parallel(step_fn: Callable, mesh: Mesh, donate: bool = True) -> Callable:
  """jit(per-device step_fn): replicated state, batch split along its batch axis (1)."""
  sharded = per_device(step_fn, mesh, in_specs=(P(), BATCH_SPEC), out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=(0,) if donate else ())


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's slice of the global batch -> global arrays sharded over the mesh."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local_batch.items()}
