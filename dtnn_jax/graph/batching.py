"""The one batcher: crystal graphs -> padded batches of a few fixed bucket shapes.

`jax.jit` compiles once per input shape. Graphs are therefore concatenated into batches
and padded (with `jraph.pad_with_graphs`) to sizes taken from a short geometric ladder of
buckets, so a whole dataset compiles a handful of shapes. The padding convention is
jraph's: one or more padding graphs at the end hold all padding nodes; padding edges join
padding nodes to themselves with zero shift (zero length), so every model must use safe
norms and mask padding out of sums, means and losses (`dtnn_jax.graph.geometry`).

`padded_batches` serves training, inference, device sharding and the benchmarks alike:

* ``shards=None``: one padded batch per group of crystals, each in its own bucket;
* ``shards=k``: rounds of ``k`` groups padded to one common bucket and stacked on a leading
  ``[k]`` axis, one group per device (`dtnn_jax.parallel`); a round with fewer than ``k``
  groups is completed with all-padding batches, which every mask treats as empty.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence

import jraph
import numpy as np

from dtnn_jax.validation import check_at_least


@dataclasses.dataclass(frozen=True)
class BatchBudget:
    """Limits of one padded batch.

    Attributes:
        max_graphs: real crystals per batch (the padded batch holds one more graph).
        max_nodes: real atoms per batch; a single larger crystal gets a batch of its own.
        max_edges: real edges per batch; likewise.
        growth: ratio between consecutive bucket sizes (>1). Smaller means less padding
            and more compiled shapes.
        min_nodes, min_edges: the smallest bucket.
    """

    max_graphs: int = 32
    max_nodes: int = 1024
    max_edges: int = 65536
    growth: float = 2.0
    min_nodes: int = 64
    min_edges: int = 2048

    def __post_init__(self):
        check_at_least(self, 1, "max_graphs", "max_nodes", "max_edges", "min_nodes", "min_edges")
        if self.growth <= 1.0:
            raise ValueError(f"BatchBudget.growth must be > 1, got {self.growth}")


def bucket_size(n: int, minimum: int, growth: float) -> int:
    """Smallest ``minimum * growth**k`` (rounded up to a multiple of 8) that is >= n."""
    size = minimum
    while size < n:
        size = int(math.ceil(size * growth / 8.0) * 8)
    return size


def pad_to_bucket(
    graphs: Sequence[jraph.GraphsTuple],
    budget: BatchBudget,
    min_nodes: int = 0,
    min_edges: int = 0,
) -> jraph.GraphsTuple:
    """Concatenates graphs and pads them to bucket sizes.

    The result has ``budget.max_graphs + 1`` graphs (the last ones are padding) and node
    and edge counts from the bucket ladder, at least ``min_nodes`` / ``min_edges`` (always
    at least one padding node).
    """
    batch = jraph.batch_np(list(graphs)) if len(graphs) > 1 else graphs[0]
    n_nodes = max(int(np.sum(batch.n_node)) + 1, min_nodes)
    n_edges = max(int(np.sum(batch.n_edge)), min_edges)
    return jraph.pad_with_graphs(
        batch,
        n_node=bucket_size(n_nodes, budget.min_nodes, budget.growth),
        n_edge=bucket_size(n_edges, budget.min_edges, budget.growth),
        n_graph=max(budget.max_graphs, len(graphs)) + 1,
    )


def group_indices(sizes: Iterable[tuple[int, int]], budget: BatchBudget) -> Iterator[list[int]]:
    """Greedy, order-preserving grouping of (n_nodes, n_edges) items within the budget.

    Lazy: a group is yielded once the first item of the next group has been seen.
    """
    current: list[int] = []
    nodes = edges = 0
    for i, (n, e) in enumerate(sizes):
        full = (
            len(current) == budget.max_graphs
            or nodes + n > budget.max_nodes
            or edges + e > budget.max_edges
        )
        if current and full:
            yield current
            current, nodes, edges = [], 0, 0
        current.append(i)
        nodes += n
        edges += e
    if current:
        yield current


def _size(graph: jraph.GraphsTuple) -> tuple[int, int]:
    return int(np.sum(graph.n_node)), int(np.sum(graph.n_edge))


def padded_batches(
    graphs: Iterable[jraph.GraphsTuple],
    budget: BatchBudget,
    order: Sequence[int] | None = None,
    shards: int | None = None,
) -> Iterator[tuple[list, jraph.GraphsTuple]]:
    """Streams padded batches over single-crystal graphs, input order kept.

    Holds at most one round of graphs in memory, so it works on pools larger than memory.

    Args:
        graphs: single-crystal graphs (any iterable; a sequence when ``order`` is given).
        budget: limits of one batch (per shard).
        order: visit the graphs in this order (e.g. a training epoch's permutation).
        shards: None for plain batches; k for rounds of k batches stacked on a leading
            [k] axis (one per device), padded to a common shape.

    Yields:
        ``(indices, batch)``. Plain: ``indices`` is the list of input positions of the
        batch's crystals and ``batch`` a padded `jraph.GraphsTuple`. Sharded: ``indices``
        is a list of k such lists (empty for a filler shard) and every leaf of ``batch``
        has a leading [k] axis.
    """
    if order is not None:
        source = [graphs[i] for i in order]  # type: ignore[index]
        positions = [int(i) for i in order]
    else:
        source, positions = graphs, None
    held: dict[int, jraph.GraphsTuple] = {}

    def sizes():
        for i, g in enumerate(source):
            held[i] = g
            yield _size(g)

    def take(group):
        return [held.pop(i) for i in group], [positions[i] if positions else i for i in group]

    groups = group_indices(sizes(), budget)
    if shards is None:
        for group in groups:
            members, idx = take(group)
            yield idx, pad_to_bucket(members, budget)
        return
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    round_: list[list[int]] = []
    for group in groups:
        round_.append(group)
        if len(round_) == shards:
            yield _stacked_round([take(g) for g in round_], budget, shards)
            round_ = []
    if round_:
        yield _stacked_round([take(g) for g in round_], budget, shards)


def _stacked_round(taken, budget: BatchBudget, shards: int) -> tuple[list, jraph.GraphsTuple]:
    """Pads a round of groups to one shape, completes it with empty batches and stacks it."""
    sizes = [[_size(g) for g in members] for members, _ in taken]
    min_nodes = max(sum(n for n, _ in s) for s in sizes) + 1
    min_edges = max(sum(e for _, e in s) for s in sizes)
    batches = [pad_to_bucket(members, budget, min_nodes, min_edges) for members, _ in taken]
    indices = [idx for _, idx in taken]
    while len(batches) < shards:
        batches.append(empty_like(batches[0]))
        indices.append([])
    return indices, stack(batches)


def stack(batches: Sequence[jraph.GraphsTuple]) -> jraph.GraphsTuple:
    """Equally shaped batches stacked on a new leading [len(batches)] axis (host numpy)."""
    import jax

    return jax.tree.map(lambda *xs: np.stack(xs), *batches)


def empty_like(batch: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """A batch of ``batch``'s shape with no real crystal: all nodes in the last graph."""
    import jax

    n_node = np.zeros_like(batch.n_node)
    n_node[-1] = int(np.sum(batch.n_node))
    n_edge = np.zeros_like(batch.n_edge)
    n_edge[-1] = int(np.sum(batch.n_edge))
    zeros = jax.tree.map(np.zeros_like, batch)
    return zeros._replace(n_node=n_node, n_edge=n_edge)
