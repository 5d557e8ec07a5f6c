"""Periodic neighbour graphs, their geometry and the one batcher.

* `neighbors`: crystal arrays + cutoff -> single-crystal `jraph.GraphsTuple` (host).
* `geometry`: edge vectors, safe norms, masks, node -> crystal index, per-crystal means,
  attaching features; used by every model.
* `batching`: bucketed padding and `padded_batches`, for training, inference and sharding.
"""

from dtnn_jax.graph.batching import (
    BatchBudget,
    bucket_size,
    empty_like,
    group_indices,
    pad_to_bucket,
    padded_batches,
    stack,
)
from dtnn_jax.graph.geometry import (
    crystal_mean,
    crystal_sum,
    edge_mask,
    edge_vectors,
    graph_mask,
    node_graph_index,
    node_mask,
    safe_norm,
    select_fields,
    unit_vectors,
    with_features,
)
from dtnn_jax.graph.neighbors import (
    MIN_INTERATOMIC_DISTANCE_ANGSTROM,
    GraphConstructionError,
    IsolatedAtomError,
    build_graph,
    graph_from_structure,
    neighbor_list,
)

__all__ = [
    "MIN_INTERATOMIC_DISTANCE_ANGSTROM",
    "BatchBudget",
    "GraphConstructionError",
    "IsolatedAtomError",
    "bucket_size",
    "build_graph",
    "crystal_mean",
    "crystal_sum",
    "edge_mask",
    "edge_vectors",
    "empty_like",
    "graph_from_structure",
    "graph_mask",
    "group_indices",
    "neighbor_list",
    "node_graph_index",
    "node_mask",
    "pad_to_bucket",
    "padded_batches",
    "safe_norm",
    "select_fields",
    "stack",
    "unit_vectors",
    "with_features",
]
