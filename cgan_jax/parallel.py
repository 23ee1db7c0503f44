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


def data_parallel(step_fn: Callable, mesh: Mesh, donate: bool = True) -> Callable:
  """jit(shard_map(step_fn)): replicated state, batch split along its batch axis (1)."""
  sharded = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), BATCH_SPEC),
                          out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=(0,) if donate else ())


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's slice of the global batch -> global arrays sharded over the mesh."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local_batch.items()}
