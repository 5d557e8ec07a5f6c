"""Batching and padding of crystal graphs into a few fixed bucket shapes.

`jax.jit` compiles once per input shape. Graphs are therefore concatenated into batches
and padded (with `jraph.pad_with_graphs`) to sizes taken from a short geometric ladder of
buckets, so a whole dataset compiles a handful of shapes. The padding convention is
jraph's: one or more padding graphs at the end hold all padding nodes; padding edges join
padding nodes to themselves with zero shift (zero length), so every model must use safe
norms and mask padding out of sums, means and losses (`node_mask`, `graph_mask`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence

import jraph
import numpy as np


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
        if self.max_graphs < 1 or self.max_nodes < 1 or self.max_edges < 1:
            raise ValueError(f"batch limits must be positive: {self}")
        if self.growth <= 1.0:
            raise ValueError(f"growth must be > 1, got {self.growth}")


def bucket_size(n: int, minimum: int, growth: float) -> int:
    """Smallest ``minimum * growth**k`` (rounded up to a multiple of 8) that is >= n."""
    size = minimum
    while size < n:
        size = int(math.ceil(size * growth / 8.0) * 8)
    return size


def pad_to_bucket(graphs: Sequence[jraph.GraphsTuple], budget: BatchBudget) -> jraph.GraphsTuple:
    """Concatenates graphs and pads to bucket sizes.

    The result has ``budget.max_graphs + 1`` graphs (the last ones are padding), node and
    edge counts from the bucket ladder (always at least one padding node).
    """
    batch = jraph.batch_np(list(graphs)) if len(graphs) > 1 else graphs[0]
    n_nodes = int(np.sum(batch.n_node))
    n_edges = int(np.sum(batch.n_edge))
    n_graph = max(budget.max_graphs, len(graphs)) + 1
    return jraph.pad_with_graphs(
        batch,
        n_node=bucket_size(n_nodes + 1, budget.min_nodes, budget.growth),
        n_edge=bucket_size(n_edges, budget.min_edges, budget.growth),
        n_graph=n_graph,
    )


def _group(sizes: Iterable[tuple[int, int]], budget: BatchBudget) -> Iterator[list[int]]:
    """Greedy, order-preserving grouping of (n_nodes, n_edges) items within the budget."""
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


def batch_indices(
    n_nodes: Sequence[int], n_edges: Sequence[int], budget: BatchBudget
) -> list[list[int]]:
    """Groups graph indices into batches within the budget (order kept)."""
    return list(_group(zip(n_nodes, n_edges, strict=True), budget))


def padded_batches(
    graphs: Iterable[jraph.GraphsTuple], budget: BatchBudget
) -> Iterator[tuple[list[int], jraph.GraphsTuple]]:
    """Streams ``(indices, padded_batch)`` over an iterable of single-crystal graphs.

    Holds at most one batch of graphs in memory, so it works on pools larger than memory.
    ``indices`` are the positions of the batch's graphs in the input stream.
    """
    held: dict[int, jraph.GraphsTuple] = {}

    def sizes():
        for i, g in enumerate(graphs):
            held[i] = g
            yield int(np.sum(g.n_node)), int(np.sum(g.n_edge))

    # _group yields a batch only after it has seen the first graph of the next one.
    for idx in _group(sizes(), budget):
        yield idx, pad_to_bucket([held.pop(i) for i in idx], budget)


def node_mask(graph: jraph.GraphsTuple):
    """[n_nodes] bool, True for real atoms (works under jit)."""
    return jraph.get_node_padding_mask(graph)


def edge_mask(graph: jraph.GraphsTuple):
    """[n_edges] bool, True for real edges (works under jit)."""
    return jraph.get_edge_padding_mask(graph)


def graph_mask(graph: jraph.GraphsTuple):
    """[n_graphs] bool, True for real crystals (works under jit)."""
    return jraph.get_graph_padding_mask(graph)


def node_graph_index(graph: jraph.GraphsTuple, total_nodes: int | None = None):
    """[n_nodes] int, the graph each node belongs to (jit-safe with static total)."""
    import jax.numpy as jnp

    n_graph = graph.n_node.shape[0]
    total = total_nodes if total_nodes is not None else graph.nodes["species"].shape[0]
    return jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=total)


def crystal_mean(per_atom, graph: jraph.GraphsTuple):
    """[n_graph, ...] mean of per-atom values [n_nodes, ...] over each crystal's real atoms.

    The dielectric tensor is intensive, so models average (not sum) their per-atom
    contributions; padding atoms are masked out and padding graphs get zeros.
    """
    import jax
    import jax.numpy as jnp

    n_node = per_atom.shape[0]
    n_graph = graph.n_node.shape[0]
    real = node_mask(graph).astype(per_atom.dtype)  # [n]
    expand = (slice(None),) + (None,) * (per_atom.ndim - 1)
    graph_of_node = node_graph_index(graph, n_node)  # [n]
    summed = jax.ops.segment_sum(per_atom * real[expand], graph_of_node, n_graph)
    count = jax.ops.segment_sum(real, graph_of_node, n_graph)  # [n_graph]
    return summed / jnp.maximum(count, 1.0)[expand]
