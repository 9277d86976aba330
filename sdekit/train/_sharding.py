"""Device meshes, shardings and multi-host set-up for data-parallel training."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "make_mesh",
    "replicated_spec",
    "state_shardings",
    "shard_state",
    "per_device_batch_size",
    "batch_sharding",
    "make_global_batch",
    "maybe_initialize_distributed",
    "distributed_requested",
]

#: Name of the mesh axis the batch is split along.
DATA_AXIS = "data"

#: A function from an array leaf to its ``PartitionSpec`` (parameters and optimiser state).
SpecFn = Callable[[Any], PartitionSpec]


def make_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all devices of all processes).

    The axis type is given explicitly (``AxisType.Auto``): XLA propagates shardings through the
    jitted train step and inserts the gradient all-reduce.

    Args:
        devices: a sequence of devices, e.g. ``jax.devices()[:1]`` for a one-device mesh.

    Returns:
        A ``jax.sharding.Mesh``.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("argument `devices`: got an empty sequence, expected at least one device.")
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def replicated_spec(leaf: Any) -> PartitionSpec:
    """The default spec function: every parameter and optimiser-state leaf fully replicated.

    A different function (e.g. one sharding the largest axis of big matrices along ``"data"``,
    FSDP-style) can be passed wherever a ``spec_fn`` is accepted.
    """
    del leaf
    return PartitionSpec()


def state_shardings(tree: Any, mesh: Mesh, spec_fn: SpecFn = replicated_spec) -> Any:
    """A pytree of ``NamedSharding`` (``None`` for non-array leaves) mapping ``spec_fn`` over
    ``tree``."""
    return jax.tree.map(
        lambda x: NamedSharding(mesh, spec_fn(x)) if eqx.is_array(x) else None, tree
    )


def shard_state(tree: Any, mesh: Mesh, spec_fn: SpecFn = replicated_spec) -> Any:
    """Place the array leaves of ``tree`` (a module, a ``TrainState``...) by ``spec_fn``.

    Outside ``jit`` the array leaves are moved with one ``jax.device_put``; inside ``jit`` (traced
    leaves) this is a ``with_sharding_constraint``. Non-array leaves are left alone, so it works
    on equinox modules (where a plain ``jax.device_put`` of the whole module fails).
    """
    arrays, static = eqx.partition(tree, eqx.is_array)
    shardings = jax.tree.map(lambda x: NamedSharding(mesh, spec_fn(x)), arrays)
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(arrays)):
        arrays = jax.lax.with_sharding_constraint(arrays, shardings)
    else:
        arrays = jax.device_put(arrays, shardings)
    return eqx.combine(arrays, static)


def per_device_batch_size(batch_size: int, mesh: Mesh) -> int:
    """``batch_size // mesh.size``, with a clear error when the global batch does not divide."""
    n = int(mesh.size)
    if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
        raise ValueError(f"argument `batch_size`: got {batch_size!r}, expected a positive int.")
    if batch_size % n:
        raise ValueError(
            f"argument `batch_size`: got a global batch of {batch_size}, expected a multiple of "
            "the "
            f"number of devices in the mesh ({n}); the per-device batch is batch_size / {n}."
        )
    return int(batch_size) // n


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split along ``"data"``, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def make_global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Turn this process's part of a batch into global arrays sharded along ``"data"``.

    Each process passes its own rows (``global_batch / process_count`` of them); the result is a
    pytree of global ``jax.Array``s built with ``jax.make_array_from_process_local_data``.
    Non-array leaves are returned unchanged.
    """
    sharding = batch_sharding(mesh)
    nproc = jax.process_count()

    def _one(x):
        if isinstance(x, (str, bytes)) or x is None:
            return x
        x = np.asarray(x)
        if x.ndim == 0:
            return x
        global_shape = (x.shape[0] * nproc,) + x.shape[1:]
        per_device_batch_size(global_shape[0], mesh)
        return jax.make_array_from_process_local_data(sharding, x, global_shape)

    return jax.tree.map(_one, local_batch)


def distributed_requested(environ: Any = None) -> bool:
    """Whether the environment asks for a multi-process JAX run.

    True when ``JAX_COORDINATOR_ADDRESS`` is set, or when SLURM (``SLURM_NTASKS``) or Open MPI
    (``OMPI_COMM_WORLD_SIZE``) launched more than one process.
    """
    env = os.environ if environ is None else environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    for var in ("SLURM_NTASKS", "SLURM_NPROCS", "OMPI_COMM_WORLD_SIZE"):
        try:
            if int(env.get(var, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def maybe_initialize_distributed() -> bool:
    """Call ``jax.distributed.initialize()`` when the environment asks for a multi-process run.

    Must run before anything else touches JAX devices. With ``JAX_COORDINATOR_ADDRESS`` set, the
    process count and id come from ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (JAX reads them
    too); under SLURM or Open MPI, JAX's cluster auto-detection fills them in.

    Returns:
        ``True`` if this call initialised the distributed runtime, ``False`` otherwise (single
        process, or already initialised).
    """
    if not distributed_requested():
        return False
    if jax.distributed.is_initialized():
        return False
    kwargs: dict[str, Any] = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = os.environ["JAX_COORDINATOR_ADDRESS"]
        for env, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
            if os.environ.get(env):
                kwargs[arg] = int(os.environ[env])
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        raise RuntimeError(
            "jax.distributed.initialize() failed; call "
            "sdekit.train.maybe_initialize_distributed() at "
            f"the very start of the script, before any JAX computation ({e})."
        ) from e
    return True
