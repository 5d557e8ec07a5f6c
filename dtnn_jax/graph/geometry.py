"""Geometry and bookkeeping on (padded) crystal graphs, shared by every model.

Everything that reads a `jraph.GraphsTuple` asks this module for edge vectors, safe norms,
masks, the node -> crystal index and per-crystal means, and attaches per-node / per-edge
features to a graph through `with_features`; nothing re-derives them by hand.

Conventions (`dtnn_jax.graph.neighbors`): ``senders[e] = j`` is the neighbour and
``receivers[e] = i`` the centre, ``r_ij = x_j - x_i + shifts[e]``. Padding follows jraph:
the last graph(s) of a batch hold the padding nodes, padding edges join a padding node to
itself with zero shift (zero length). The functions work on numpy arrays (host) and on jax
arrays / tracers (device) alike unless they say otherwise.
"""

from __future__ import annotations

from typing import Any

import jraph
import numpy as np


def _array_module(array):
    """numpy for numpy arrays, jax.numpy for everything else (jax arrays, tracers)."""
    if isinstance(array, np.ndarray | np.generic):
        return np
    import jax.numpy as jnp

    return jnp


def edge_vectors(graph: jraph.GraphsTuple):
    """[n_edge, 3] Cartesian edge vectors r_ij = x_j - x_i + shift (angstrom)."""
    pos = graph.nodes["positions"]  # [n_node, 3]
    return pos[graph.senders] - pos[graph.receivers] + graph.edges["shifts"]


def safe_norm(vectors, axis: int | tuple[int, ...] = -1, keepdims: bool = False):
    """Euclidean norm whose gradient is zero, not NaN, at the zero vector (numpy or jax).

    Padding edges have zero length; ``jnp.linalg.norm`` has an undefined (NaN) gradient
    there, and a NaN times a zero mask is still NaN. Squared norms of zero vectors are
    replaced by 1 before the square root and the result set back to 0, so the value and
    the derivatives of every order are finite everywhere.

    Args:
        vectors: [..., 3] (or any shape) array.
        axis: the axis (or axes) to reduce.
        keepdims: keep the reduced axis with size 1.

    Returns:
        The norms, shape of ``vectors`` without ``axis`` (or with size 1 if ``keepdims``).
    """
    xp = _array_module(vectors)
    squared = xp.sum(vectors * vectors, axis=axis, keepdims=keepdims)
    is_zero = squared == 0
    return xp.where(is_zero, 0.0, xp.sqrt(xp.where(is_zero, 1.0, squared)))


def unit_vectors(vectors, lengths):
    """[n_edge, 3] ``vectors / lengths``, the zero vector where the length is 0 (padding)."""
    xp = _array_module(vectors)
    return vectors / xp.where(lengths > 0, lengths, 1.0)[:, None]


def node_mask(graph: jraph.GraphsTuple):
    """[n_node] bool, True for real atoms (works under jit)."""
    return jraph.get_node_padding_mask(graph)


def edge_mask(graph: jraph.GraphsTuple):
    """[n_edge] bool, True for real edges (works under jit)."""
    return jraph.get_edge_padding_mask(graph)


def graph_mask(graph: jraph.GraphsTuple):
    """[n_graph] bool, True for real crystals (works under jit).

    A real crystal has at least one atom, so graphs with no node are padding too: this
    keeps an all-padding batch (the filler of an incomplete round of device shards, see
    `dtnn_jax.graph.padded_batches`) out of every loss and mean.
    """
    return jraph.get_graph_padding_mask(graph) & (graph.n_node > 0)


def node_graph_index(graph: jraph.GraphsTuple, total_nodes: int | None = None):
    """[n_node] int, the graph each node belongs to (jit-safe: the total is static)."""
    import jax.numpy as jnp

    n_graph = graph.n_node.shape[0]
    total = total_nodes if total_nodes is not None else graph.nodes["species"].shape[0]
    return jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=total)


def crystal_sum(per_atom, graph: jraph.GraphsTuple):
    """[n_graph, ...] sum of per-atom values [n_node, ...] over each crystal (padding masked)."""
    import jax

    n_node = per_atom.shape[0]
    real = node_mask(graph).astype(per_atom.dtype)  # [n_node]
    expand = (slice(None),) + (None,) * (per_atom.ndim - 1)
    graph_of_node = node_graph_index(graph, n_node)  # [n_node]
    return jax.ops.segment_sum(per_atom * real[expand], graph_of_node, graph.n_node.shape[0])


def crystal_mean(per_atom, graph: jraph.GraphsTuple):
    """[n_graph, ...] mean of per-atom values [n_node, ...] over each crystal's real atoms.

    The dielectric tensor is intensive, so models average (not sum) their per-atom
    contributions; padding atoms are masked out and padding graphs get zeros.
    """
    import jax.numpy as jnp

    expand = (slice(None),) + (None,) * (per_atom.ndim - 1)
    count = crystal_sum(jnp.ones(per_atom.shape[:1], per_atom.dtype), graph)  # [n_graph]
    return crystal_sum(per_atom, graph) / jnp.maximum(count, 1.0)[expand]


def with_features(
    graph: jraph.GraphsTuple,
    nodes: dict[str, Any] | None = None,
    edges: dict[str, Any] | None = None,
    globals_: dict[str, Any] | None = None,
) -> jraph.GraphsTuple:
    """A copy of ``graph`` with extra node, edge or global fields (existing keys replaced).

    This is how encoder features (``nodes["features"]`` [n_node, D], ``edges["radial"]``
    [n_edge, n_basis]) and training targets (``globals["target"]`` [n_graph, 3, 3]) travel
    with a graph; the arrays must have the graph's node / edge / graph count as first axis.
    """
    return graph._replace(
        nodes={**graph.nodes, **(nodes or {})},
        edges={**graph.edges, **(edges or {})},
        globals={**(graph.globals or {}), **(globals_ or {})},
    )


def select_fields(graph: jraph.GraphsTuple, nodes=(), edges=(), globals_=()) -> jraph.GraphsTuple:
    """A copy of ``graph`` holding only the named fields (less host -> device traffic)."""
    return graph._replace(
        nodes={k: graph.nodes[k] for k in nodes if k in graph.nodes},
        edges={k: graph.edges[k] for k in edges if k in graph.edges},
        globals={k: v for k, v in (graph.globals or {}).items() if k in globals_},
    )


def invert(batch: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """The inverted crystal -x: positions, edge shifts and lattice negated.

    Every bond vector r_ij = pos[j] - pos[i] + shift flips sign; the integer cell offsets
    stay (shift = offset @ lattice with the negated lattice), so the neighbour list is the
    same and the graph needs no rebuild.
    """
    glob = dict(batch.globals or {})
    if "lattice" in glob:
        glob["lattice"] = -glob["lattice"]
    return batch._replace(
        nodes={**batch.nodes, "positions": -batch.nodes["positions"]},
        edges={**batch.edges, "shifts": -batch.edges["shifts"]},
        globals=glob,
    )
