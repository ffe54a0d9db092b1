"""Devices, hosts and shardings for data-parallel training.

We compile train steps with ``jax.jit`` over a one-axis ``Mesh`` named
``data``: the batch is sharded along it with ``NamedSharding`` and the train
state is replicated. XLA then inserts the gradient all-reduce itself and,
because batch-norm statistics are means over a sharded batch axis, computes
them over the global batch (synchronized batch norm) with no extra code.
``jax.pmap`` is in maintenance mode in current JAX and would need explicit
``pmean`` calls and per-device state; ``shard_map`` is the tool for
hand-written collectives, which these models do not need.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from data_pipeline.errors import InvalidValueError
from urbangen.settings import distributed_requested, int_from_env


#: Environment variables that mean "this process is one of several hosts".
def maybe_initialize_distributed(force: bool = False) -> None:
    """Join a multi-host run when asked to (``force``) or when the environment says so.

    On Cloud TPU pods and SLURM ``jax.distributed.initialize()`` finds its
    peers by itself; elsewhere set ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
    """
    if force or distributed_requested():
        if not jax.distributed.is_initialized():
            # JAX reads the coordinator address from the environment but not these two.
            jax.distributed.initialize(num_processes=int_from_env("JAX_NUM_PROCESSES"),
                                       process_id=int_from_env("JAX_PROCESS_ID"))



def make_mesh() -> Mesh:
    """A mesh over every device of every host, with one axis: ``data``."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This host's share of the global batch, with a clear error when it does not divide."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    if global_batch_size % n_dev:
        raise InvalidValueError(f"batch_size {global_batch_size} must be a multiple of the {n_dev} devices")
    return global_batch_size // n_proc


def to_global(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble each host's share of a batch into one global array sharded on ``data``."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree (the train state) on every device."""
    return jax.device_put(tree, replicated(mesh))
