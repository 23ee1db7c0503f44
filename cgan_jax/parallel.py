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
  """`fn` written per device (collectives over AXIS), run over the mesh with `jax.shard_map`.

  On a one-device mesh shard_map's autodiff would still insert an all-reduce per gradient
  (the transpose of replicating the parameters) and the steps' `pmean`s would compile to
  one-participant all-reduces; there it runs without that typing (`check_vma=False`: one
  device's gradient is already the global one), `steps.pmean` is the identity, and the
  trainer builds BatchNorm without an axis (`batch_norm_axis`), so the compiled step has no
  collective (tests/test_accelerator_paths.py reads the HLO).
  """
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                       check_vma=mesh.size > 1)


def batch_norm_axis(mesh: Mesh) -> str | None:
  """The axis BatchNorm averages its statistics over: AXIS, or none on one device."""
  return AXIS if mesh.size > 1 else None


def data_parallel(step_fn: Callable, mesh: Mesh, donate: bool = True) -> Callable:
  """jit(per-device step_fn): replicated state, batch split along its batch axis (1)."""
  sharded = per_device(step_fn, mesh, in_specs=(P(), BATCH_SPEC), out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=(0,) if donate else ())


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's slice of the global batch -> global arrays sharded over the mesh."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local_batch.items()}
