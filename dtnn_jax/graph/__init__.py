"""Periodic neighbour graphs and their padded batches."""

from dtnn_jax.graph.batching import (
    BatchBudget,
    batch_indices,
    bucket_size,
    crystal_mean,
    edge_mask,
    graph_mask,
    node_graph_index,
    node_mask,
    pad_to_bucket,
    padded_batches,
)
from dtnn_jax.graph.neighbors import (
    GraphConstructionError,
    IsolatedAtomError,
    build_graph,
    edge_vectors,
    graph_from_structure,
    neighbor_list,
    safe_norm,
)

__all__ = [
    "BatchBudget",
    "GraphConstructionError",
    "IsolatedAtomError",
    "batch_indices",
    "bucket_size",
    "build_graph",
    "crystal_mean",
    "edge_mask",
    "edge_vectors",
    "graph_from_structure",
    "graph_mask",
    "neighbor_list",
    "node_graph_index",
    "node_mask",
    "pad_to_bucket",
    "padded_batches",
    "safe_norm",
]
