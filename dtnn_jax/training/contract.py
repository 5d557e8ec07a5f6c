"""The training input contract: single-crystal graphs with features and a target tensor.

A training graph is a single-crystal `jraph.GraphsTuple` (from
`dtnn_jax.encoder.graphs_with_features`) carrying ``nodes["features"]`` [n_atoms, D],
``edges["radial"]`` [n_edges, n_radial] (unless the readout is DTNN-simple) and
``globals["target"]`` [1, 3, 3] in units of eps. `check_graphs` says clearly what is wrong
before anything is compiled.
"""

from __future__ import annotations

from collections.abc import Sequence

import jraph
import numpy as np

from dtnn_jax.config import ReadoutConfig
from dtnn_jax.graph import select_fields, with_features

# The fields a model may read; everything else stays on the host. The physics ionic model
# (`dtnn_jax.physics.born`) also reads nominal charges, Kinv and the cell volume.
MODEL_NODE_FIELDS = ("positions", "species", "features", "charge_nominal")
MODEL_EDGE_FIELDS = ("shifts", "radial")
MODEL_GLOBAL_FIELDS = ("target", "kinv", "volume")


def model_inputs(batch: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Only the fields a model reads, and the target (less host -> device traffic)."""
    return select_fields(batch, MODEL_NODE_FIELDS, MODEL_EDGE_FIELDS, MODEL_GLOBAL_FIELDS)


def targets_of(graphs: Sequence[jraph.GraphsTuple]) -> np.ndarray:
    """[n, 3, 3] the ``globals["target"]`` of single-crystal graphs."""
    return np.stack([np.asarray(g.globals["target"], np.float32).reshape(3, 3) for g in graphs])


def with_targets(graphs: Sequence[jraph.GraphsTuple], targets: np.ndarray) -> list:
    """Copies of single-crystal graphs with ``globals["target"]`` [1, 3, 3] set."""
    targets = np.asarray(targets, np.float32)
    if targets.shape != (len(graphs), 3, 3):
        raise ValueError(f"need [{len(graphs)}, 3, 3] targets, got {targets.shape}")
    return [
        with_features(g, globals_={"target": t[None]}) for g, t in zip(graphs, targets, strict=True)
    ]


def check_graphs(
    graphs: Sequence[jraph.GraphsTuple], cfg: ReadoutConfig | None, name: str, need_target: bool
):
    """Checks single-crystal graphs against the readout's input contract (clear errors).

    ``cfg=None`` checks only what every model needs (single crystals, finite targets).
    """
    import e3nn_jax as e3nn

    if len(graphs) == 0:
        raise ValueError(f"{name}: no graphs")
    dim = None if cfg is None else e3nn.Irreps(cfg.input_irreps).dim
    for i, g in enumerate(graphs):
        if len(np.asarray(g.n_node)) != 1:
            raise ValueError(f"{name}[{i}]: expected a single-crystal graph, got {g.n_node}")
        if cfg is not None:
            _check_dtnn_inputs(g, cfg, dim, f"{name}[{i}]")
        if need_target:
            target = (g.globals or {}).get("target")
            if target is None or np.shape(target) != (1, 3, 3):
                raise ValueError(f"{name}[{i}]: globals['target'] must be [1, 3, 3]")
            if not np.all(np.isfinite(target)):
                raise ValueError(f"{name}[{i}]: non-finite target")


def _check_dtnn_inputs(g: jraph.GraphsTuple, cfg: ReadoutConfig, dim: int, name: str) -> None:
    """The DTNN readout reads node ``features`` [n, dim] and (with edges) ``radial``."""
    feats = g.nodes.get("features") if isinstance(g.nodes, dict) else None
    if feats is None or feats.shape != (int(g.n_node[0]), dim):
        shape = None if feats is None else feats.shape
        raise ValueError(
            f"{name}: nodes['features'] must be [n_atoms, {dim}] for irreps "
            f"{cfg.input_irreps}, got {shape}"
        )
    if cfg.use_edges:
        radial = g.edges.get("radial") if isinstance(g.edges, dict) else None
        if radial is None or radial.shape != (int(g.n_edge[0]), cfg.n_radial):
            raise ValueError(
                f"{name}: edges['radial'] must be [n_edges, {cfg.n_radial}], got "
                f"{None if radial is None else radial.shape}"
            )
