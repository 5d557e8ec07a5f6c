"""Data parallelism over devices with `jax.jit` + `NamedSharding`.

A round of padded batches, one per device, is stacked along a leading axis by the batcher
(`dtnn_jax.graph.padded_batches(..., shards=n)`); that axis is sharded over a 1-D device mesh
(axis ``"data"``) and the per-device function is `jax.vmap`-ed over it, so XLA runs one
batch per device with no cross-device communication (training adds one all-reduce of the
gradients, inserted by XLA). On one device the leading axis has length 1 and the same code
runs. (`pmap` is in maintenance mode; this is its jit-native replacement.)

Two meshes: inference (`data_mesh`, `shard`, `map_batches`) uses this process's own devices
(in a multi-process run each process works on its own shard of the inputs); training
(`global_mesh`, `shard_global`, `to_host`) uses every process's devices as one mesh: each
process computes the same round of batches, hands its devices' part to
`jax.make_array_from_process_local_data`, and XLA all-reduces the gradients across hosts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import jax
import jraph
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dtnn_jax.graph.batching import BatchBudget, padded_batches

DATA_AXIS = "data"


@functools.cache
def data_mesh() -> Mesh:
    """A 1-D mesh over all local devices."""
    return Mesh(np.array(jax.local_devices()), (DATA_AXIS,))


def n_data_shards() -> int:
    """Number of devices a round of batches is spread over."""
    return data_mesh().devices.size


def shard(stacked):
    """Puts a pytree with a leading [n_shards] axis on the mesh, split along that axis."""
    return jax.device_put(stacked, NamedSharding(data_mesh(), PartitionSpec(DATA_AXIS)))


@functools.cache
def global_mesh() -> Mesh:
    """A 1-D mesh over the devices of every process (= `data_mesh` for one process)."""
    return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def shard_global(stacked):
    """A round [n_shards, ...], the same on every process, as arrays over `global_mesh`.

    Each process contributes the shards of its own devices (the mesh lists process 0's
    devices first, then process 1's, ...).
    """
    sharding = NamedSharding(global_mesh(), PartitionSpec(DATA_AXIS))
    if jax.process_count() == 1:
        return jax.device_put(stacked, sharding)
    n = jax.tree.leaves(stacked)[0].shape[0]
    per = n // jax.process_count()
    mine = slice(jax.process_index() * per, (jax.process_index() + 1) * per)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)[mine]), stacked
    )


def to_host(array) -> np.ndarray:
    """A (possibly multi-process) array as one numpy array on every process."""
    if jax.process_count() == 1 or getattr(array, "is_fully_replicated", True):
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def unstack(tree, n: int) -> list:
    """The first ``n`` per-shard results of a stacked pytree, as numpy pytrees."""
    host = jax.device_get(tree)
    return [jax.tree.map(lambda x, i=i: x[i], host) for i in range(n)]


def sharded_vmap(fn: Callable, static_argnums: tuple[int, ...] = ()) -> Callable:
    """``jax.jit(jax.vmap(fn))`` over the leading shard axis of its *last* argument.

    All other arguments (parameters) are replicated.
    """

    def per_device(*args):
        *rest, batch = args
        return jax.vmap(lambda b: fn(*rest, b), spmd_axis_name=DATA_AXIS)(batch)

    return jax.jit(per_device, static_argnums=static_argnums)


def map_batches(
    apply: Callable,
    args: tuple,
    graphs: Iterable[jraph.GraphsTuple],
    budget: BatchBudget,
    progress: bool = False,
    desc: str = "batches",
    total: int | None = None,
):
    """Runs ``apply(*args, stacked_round)`` over single-crystal graphs, device-parallel.

    Yields ``(indices, result)`` per real batch (input order kept), ``result`` a host
    (numpy) pytree still carrying that batch's padding. ``apply`` is typically a
    `sharded_vmap` function.
    """
    from tqdm.auto import tqdm

    n_dev = n_data_shards()
    if total is None and hasattr(graphs, "__len__"):
        total = len(graphs)  # type: ignore[arg-type]
    with tqdm(total=total, disable=not progress, desc=desc, unit="crystal") as bar:
        for indices, stacked in padded_batches(graphs, budget, shards=n_dev):
            real = [idx for idx in indices if idx]
            out = apply(*args, shard(stacked))
            for idx, res in zip(real, unstack(out, len(real)), strict=True):
                yield idx, res
                bar.update(len(idx))
