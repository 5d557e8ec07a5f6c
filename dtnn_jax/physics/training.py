"""Training graphs of the physics ionic model: encoder features, nominal charges and Kinv.

`ionic_graphs` gives, per labelled crystal, the single-crystal graph the Born-charge head
reads (the feature encoder's layer features and radial basis at its cutoff) carrying what
the contraction needs: ``nodes["charge_nominal"]`` [n_atoms] (e), ``globals["kinv"]``
[1, 3L, 3L] (the optical pseudo-inverse of the frozen potential's force constants at the
given geometry, A^2/eV, zero-padded to L atoms, the largest crystal of the set) and
``globals["volume"]`` [1] (A^3). K comes from `dtnn_jax.physics.force_constants` (cached by
content hash, per crystal), so building these graphs twice costs nothing. The neighbour
search runs once per crystal, at the larger of the two encoders' cutoffs; the other graph
is derived from it by edge length (`dtnn_jax.physics.force_constant_pass.graph_at_cutoff`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jraph
import numpy as np

from dtnn_jax.constants import PHYSICS_ENCODER as DEFAULT_PHYSICS_ENCODER
from dtnn_jax.encoder.features import graphs_with_features
from dtnn_jax.encoder.registry import get_encoder
from dtnn_jax.graph import with_features
from dtnn_jax.inputs import crystal_graph
from dtnn_jax.physics.born import nominal_charges
from dtnn_jax.physics.force_constant_pass import graph_at_cutoff
from dtnn_jax.physics.force_constants import force_constants


def padded_kinv(kinv: np.ndarray, slots: int) -> np.ndarray:
    """[3N, 3N] -> [3 slots, 3 slots], zero-padded (the padded atoms have no charge)."""
    out = np.zeros((3 * slots, 3 * slots), np.float32)
    out[: kinv.shape[0], : kinv.shape[1]] = kinv
    return out


def ionic_graphs(
    structures: Sequence,
    layer: int,
    feature_encoder: str = DEFAULT_PHYSICS_ENCODER,
    k_encoder: str = DEFAULT_PHYSICS_ENCODER,
    treatment: str = "drop_negative",
    floor: float = 0.01,
    slots: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[jraph.GraphsTuple]:
    """The Born-charge head's input graphs (see the module docstring).

    Args:
        structures: validated pymatgen Structures.
        layer: the feature encoder's layer.
        feature_encoder: whose node features the head reads.
        k_encoder: whose force constants give Kinv (phonon fine-tuned by default).
        treatment, floor: how negative and near-zero optical modes enter Kinv
            (`dtnn_jax.physics.optical_pseudo_inverse`).
        slots: atoms Kinv is padded to (default: the largest structure).
        cache_dir: the feature and force-constant cache.
        progress: progress bars.
    """
    feature_encoder, k_encoder = get_encoder(feature_encoder), get_encoder(k_encoder)
    # one neighbour search per crystal: at the larger cutoff, the other derived from it
    wide = max((feature_encoder, k_encoder), key=lambda e: e.cutoff_angstrom)
    wide_graphs = [
        crystal_graph(s, wide, source=f"#{i} ({s.formula})") for i, s in enumerate(structures)
    ]
    cutoff = wide.cutoff_angstrom
    graphs = graphs_with_features(
        structures,
        layer,
        cache_dir=cache_dir,
        progress=progress,
        encoder=feature_encoder,
        graphs=[
            g
            if feature_encoder.cutoff_angstrom == cutoff
            else graph_at_cutoff(g, feature_encoder.cutoff_angstrom)
            for g in wide_graphs
        ],
    )
    fcs = force_constants(
        structures,
        k_encoder,
        cache_dir=cache_dir,
        progress=progress,
        graphs=wide_graphs,
        graphs_cutoff=cutoff,
    )
    slots = slots or max(len(s) for s in structures)
    out = []
    for graph, fc, structure in zip(graphs, fcs, structures, strict=True):
        if len(structure) > slots:
            raise ValueError(f"{structure.formula}: {len(structure)} atoms exceed {slots} slots")
        kinv = fc.optical_pseudo_inverse(treatment, floor).kinv_a2_per_ev
        out.append(
            with_features(
                graph,
                nodes={"charge_nominal": nominal_charges(structure).astype(np.float32)},
                globals_={
                    "kinv": padded_kinv(kinv, slots)[None],
                    "volume": np.array([structure.volume], np.float32),
                },
            )
        )
    return out
