"""Data parallelism over local devices with `jax.jit` + `NamedSharding`.

A padded batch per device is stacked along a new leading axis, which is sharded over a 1-D
device mesh (axis ``"data"``); the per-device function is `jax.vmap`-ed over that axis, so XLA
runs one batch per device with no cross-device communication. On one device the leading axis
has length 1 and the same code runs. (`pmap` is in maintenance mode; this is its jit-native
replacement.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jraph
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dtnn_jax.graph.batching import BatchBudget, bucket_size

DATA_AXIS = "data"


@functools.cache
def data_mesh() -> Mesh:
    """A 1-D mesh over all local devices."""
    return Mesh(np.array(jax.local_devices()), (DATA_AXIS,))


def n_data_shards() -> int:
    return data_mesh().devices.size


def pad_groups_to_common_shape(
    groups: Sequence[Sequence[jraph.GraphsTuple]], budget: BatchBudget
) -> list[jraph.GraphsTuple]:
    """Pads each group of single-crystal graphs to one shared bucket shape.

    Every result has ``budget.max_graphs + 1`` graphs and the same node and edge counts (the
    largest bucket any group needs), so the results can be stacked for the devices.
    """
    batches = [jraph.batch_np(list(g)) for g in groups]
    max_nodes = max(int(np.sum(b.n_node)) for b in batches)
    max_edges = max(int(np.sum(b.n_edge)) for b in batches)
    n_node = bucket_size(max_nodes + 1, budget.min_nodes, budget.growth)
    n_edge = bucket_size(max_edges, budget.min_edges, budget.growth)
    n_graph = max(budget.max_graphs, max(len(g) for g in groups)) + 1
    return [jraph.pad_with_graphs(b, n_node, n_edge, n_graph) for b in batches]


def stack_for_devices(batches: Sequence[jraph.GraphsTuple], n_devices: int) -> jraph.GraphsTuple:
    """Stacks equally shaped batches on a leading [n_devices] axis and shards it.

    Fewer batches than devices are completed with copies of the last one (their results are
    discarded by the caller).
    """
    batches = list(batches) + [batches[-1]] * (n_devices - len(batches))
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *batches)
    sharding = NamedSharding(data_mesh(), PartitionSpec(DATA_AXIS))
    return jax.device_put(stacked, sharding)


def unstack(tree, n: int) -> list:
    """Inverse of the stacking: the first ``n`` per-device results as numpy pytrees."""
    host = jax.device_get(tree)
    return [jax.tree.map(lambda x, i=i: x[i], host) for i in range(n)]


def sharded_vmap(fn: Callable, static_argnums: tuple[int, ...] = ()) -> Callable:
    """``jax.jit(jax.vmap(fn))`` over the leading device axis of its *last* argument.

    All other arguments (parameters) are replicated.
    """

    def per_device(*args):
        *rest, batch = args
        return jax.vmap(lambda b: fn(*rest, b), spmd_axis_name=DATA_AXIS)(batch)

    return jax.jit(per_device, static_argnums=static_argnums)


def map_batches(
    apply: Callable,
    args: tuple,
    graphs: Sequence[jraph.GraphsTuple],
    budget: BatchBudget,
    progress: bool = False,
    desc: str = "batches",
):
    """Runs ``apply(*args, stacked_batch)`` over single-crystal graphs, device-parallel.

    Groups the graphs into budgeted batches (input order kept), pads each round of
    ``n_devices`` batches to one shared bucket shape, and yields ``(indices, result)`` per
    batch with ``result`` a host (numpy) pytree still carrying that batch's padding.
    ``apply`` is typically a `sharded_vmap` function.
    """
    from tqdm.auto import tqdm

    from dtnn_jax.graph.batching import batch_indices

    groups = batch_indices(
        [int(g.n_node[0]) for g in graphs], [int(g.n_edge[0]) for g in graphs], budget
    )
    n_dev = n_data_shards()
    with tqdm(total=len(graphs), disable=not progress, desc=desc, unit="crystal") as bar:
        for start in range(0, len(groups), n_dev):
            chunk = groups[start : start + n_dev]
            padded = pad_groups_to_common_shape([[graphs[i] for i in idx] for idx in chunk], budget)
            out = apply(*args, stack_for_devices(padded, n_dev))
            for idx, res in zip(chunk, unstack(out, len(chunk)), strict=True):
                yield idx, res
                bar.update(len(idx))
