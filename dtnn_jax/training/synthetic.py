"""Synthetic featurised crystal graphs for tests and timing runs.

The graphs follow the readout's input contract exactly (see `dtnn_jax.models.readout`) but
their features are random; the target is an equivariant function of the features
(isotropic part from the l = 0 channels, anisotropy from the l = 2 channels), so a readout
can learn it and a rotated copy of a crystal has the rotated target.
"""

from __future__ import annotations

import e3nn_jax as e3nn
import jraph
import numpy as np

from dtnn_jax.models.cartesian import split_irreps


def synthetic_target(features: np.ndarray, irreps: str) -> np.ndarray:
    """[3, 3] a smooth, rotation-equivariant function of one crystal's node features."""
    parts = split_irreps(np.asarray(features, np.float32), irreps)
    iso = 4.0 + 2.0 * np.tanh(np.mean(np.asarray(parts.scalars)[:, 0]))
    aniso = np.zeros((3, 3))
    if parts.tensors.shape[1] > 0:
        aniso = 0.5 * np.mean(np.asarray(parts.tensors)[:, 0], axis=0)
    return (iso * np.eye(3) + aniso).astype(np.float32)


def synthetic_graph(
    rng: np.random.Generator,
    irreps: str,
    n_atoms: int,
    edges_per_atom: int,
    n_radial: int = 8,
) -> jraph.GraphsTuple:
    """One random single-crystal graph with features, radial features and a target."""
    irreps = str(e3nn.Irreps(irreps))
    lattice = np.diag(rng.uniform(3.0, 6.0, size=3)).astype(np.float32)  # [3, 3] rows
    positions = (rng.uniform(size=(n_atoms, 3)) @ lattice).astype(np.float32)  # [n, 3]
    n_edges = n_atoms * edges_per_atom
    receivers = np.repeat(np.arange(n_atoms), edges_per_atom).astype(np.int32)  # [e]
    senders = rng.integers(0, n_atoms, size=n_edges).astype(np.int32)  # [e]
    offsets = rng.integers(-1, 2, size=(n_edges, 3)).astype(np.int32)  # [e, 3]
    # A self pair with zero offset would have zero length: push it to the next cell.
    offsets[(senders == receivers) & ~offsets.any(axis=1), 0] = 1
    shifts = (offsets @ lattice).astype(np.float32)  # [e, 3]
    features = rng.normal(size=(n_atoms, e3nn.Irreps(irreps).dim)).astype(np.float32)
    radial = rng.uniform(size=(n_edges, n_radial)).astype(np.float32)
    return jraph.GraphsTuple(
        nodes={
            "positions": positions,
            "species": rng.integers(1, 90, size=n_atoms).astype(np.int32),
            "features": features,
        },
        edges={"shifts": shifts, "offsets": offsets, "radial": radial},
        senders=senders,
        receivers=receivers,
        n_node=np.array([n_atoms], np.int32),
        n_edge=np.array([n_edges], np.int32),
        globals={
            "lattice": lattice[None],
            "target": synthetic_target(features, irreps)[None],  # [1, 3, 3]
        },
    )


def synthetic_graphs(
    n_graphs: int,
    irreps: str,
    atoms_range: tuple[int, int] = (2, 6),
    edges_per_atom: int = 6,
    n_radial: int = 8,
    seed: int = 0,
) -> list[jraph.GraphsTuple]:
    """``n_graphs`` random graphs with ``atoms_range[0] <= n_atoms <= atoms_range[1]``."""
    rng = np.random.default_rng(seed)
    lo, hi = atoms_range
    return [
        synthetic_graph(rng, irreps, int(rng.integers(lo, hi + 1)), edges_per_atom, n_radial)
        for _ in range(n_graphs)
    ]
