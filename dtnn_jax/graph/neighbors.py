"""Periodic neighbour graphs: crystal arrays + cutoff -> `jraph.GraphsTuple`.

Conventions (used by every model in the package):

* lattice vectors are the *rows* of ``lattice`` (pymatgen / ASE convention);
* an edge ``e`` goes from ``senders[e] = j`` (the neighbour) to ``receivers[e] = i`` (the
  centre); its Cartesian vector is
  ``r_ij = positions[j] - positions[i] + shifts[e]`` with ``shifts[e] = offsets[e] @ lattice``;
* both directions of every pair are present; the zero-shift self pair is never present, but
  an atom *is* connected to its own periodic images when they lie within the cutoff.

The neighbour search is pymatgen's cell-list implementation
(``pymatgen.optimization.neighbors.find_points_in_spheres``, compiled, O(N) in the number of
atoms), tested against ASE's neighbour list in ``tests/graph``.
"""

from __future__ import annotations

import numpy as np
import jraph
from pymatgen.optimization.neighbors import find_points_in_spheres

# Pairs closer than this are treated as the same point (the excluded self pair).
_SELF_PAIR_TOL_ANGSTROM = 1e-8


class GraphConstructionError(ValueError):
    """A structure cannot be turned into a neighbour graph (the message says why)."""


class IsolatedAtomError(GraphConstructionError):
    """At least one atom has no neighbour within the cutoff."""


def neighbor_list(
    positions: np.ndarray,  # [n_atoms, 3] Cartesian, angstrom
    lattice: np.ndarray,  # [3, 3] lattice vectors as rows, angstrom
    pbc: tuple[bool, bool, bool] | np.ndarray,
    cutoff_angstrom: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (i, j, image) with |r_ij| <= cutoff, self pair excluded.

    Returns:
        receivers: [n_edges] int, the centre atom i.
        senders: [n_edges] int, the neighbour atom j.
        offsets: [n_edges, 3] int, the lattice image of j.
        distances: [n_edges] float64, angstrom.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    pbc_arr = np.ascontiguousarray(np.asarray(pbc, dtype=bool).astype(np.int64))
    if positions.shape[0] == 0:
        empty = np.zeros((0,), np.int64)
        return empty, empty, np.zeros((0, 3), np.int64), np.zeros((0,), np.float64)
    centers, neighbors, images, distances = find_points_in_spheres(
        positions,
        positions,
        r=float(cutoff_angstrom),
        pbc=pbc_arr,
        lattice=lattice,
        tol=_SELF_PAIR_TOL_ANGSTROM,
    )
    keep = distances > _SELF_PAIR_TOL_ANGSTROM
    # find_points_in_spheres uses a small numerical tolerance at the sphere's surface;
    # apply the cutoff exactly so the graph does not depend on it.
    keep &= distances <= cutoff_angstrom
    order = np.lexsort((neighbors[keep], centers[keep]))
    return (
        centers[keep][order].astype(np.int64),
        neighbors[keep][order].astype(np.int64),
        np.rint(images[keep][order]).astype(np.int64),
        distances[keep][order],
    )


def build_graph(
    positions: np.ndarray,  # [n_atoms, 3] Cartesian, angstrom
    atomic_numbers: np.ndarray,  # [n_atoms] int
    lattice: np.ndarray,  # [3, 3] rows, angstrom
    pbc: tuple[bool, bool, bool] | np.ndarray = (True, True, True),
    cutoff_angstrom: float = 5.0,
    allow_isolated: bool = False,
) -> jraph.GraphsTuple:
    """Builds the periodic neighbour graph of one crystal.

    A pure function of its inputs (host-side numpy; the result holds numpy arrays).

    Args:
        positions: Cartesian coordinates, angstrom.
        atomic_numbers: element of each atom (Z).
        lattice: lattice vectors as rows, angstrom.
        pbc: periodicity along each lattice vector.
        cutoff_angstrom: neighbour cutoff radius, angstrom.
        allow_isolated: if False (default) an atom without any neighbour within the cutoff
            raises `IsolatedAtomError`; if True it is kept as a node with no edge.

    Returns:
        A single-graph `jraph.GraphsTuple` with
        ``nodes = {"positions": [n_atoms, 3] float32, "species": [n_atoms] int32 (Z)}``,
        ``edges = {"shifts": [n_edges, 3] float32 (Cartesian, angstrom),
        "offsets": [n_edges, 3] int32 (lattice image of the sender)}``,
        ``globals = {"lattice": [1, 3, 3] float32}``, ``senders``/``receivers`` [n_edges] int32.

    Raises:
        GraphConstructionError: empty structure, shape mismatch, non-finite input, a
            degenerate lattice or a non-positive cutoff.
        IsolatedAtomError: an atom has no neighbour (unless ``allow_isolated``).
    """
    positions = np.asarray(positions, dtype=np.float64)
    atomic_numbers = np.asarray(atomic_numbers)
    lattice = np.asarray(lattice, dtype=np.float64)
    n_atoms = positions.shape[0] if positions.ndim == 2 else -1
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise GraphConstructionError(f"positions must have shape [n_atoms, 3], got {positions.shape}")
    if n_atoms == 0:
        raise GraphConstructionError("the structure has no atoms")
    if atomic_numbers.shape != (n_atoms,):
        raise GraphConstructionError(
            f"atomic_numbers must have shape [{n_atoms}], got {atomic_numbers.shape}"
        )
    if lattice.shape != (3, 3):
        raise GraphConstructionError(f"lattice must have shape [3, 3], got {lattice.shape}")
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(lattice))):
        raise GraphConstructionError("positions or lattice contain non-finite numbers (nan/inf)")
    if not np.isfinite(cutoff_angstrom) or cutoff_angstrom <= 0:
        raise GraphConstructionError(f"cutoff must be a positive number, got {cutoff_angstrom}")
    volume = abs(np.linalg.det(lattice))
    if np.any(pbc) and volume < 1e-6 * max(1.0, np.linalg.norm(lattice) ** 3):
        raise GraphConstructionError(
            f"the lattice is degenerate (cell volume {volume:.3g} A^3); lattice rows:\n{lattice}"
        )

    receivers, senders, offsets, _ = neighbor_list(positions, lattice, pbc, cutoff_angstrom)
    if not allow_isolated:
        has_neighbor = np.zeros(n_atoms, bool)
        has_neighbor[receivers] = True
        if not has_neighbor.all():
            lonely = np.flatnonzero(~has_neighbor)
            raise IsolatedAtomError(
                f"{len(lonely)} atom(s) have no neighbour within {cutoff_angstrom} A "
                f"(indices {lonely[:10].tolist()}{'...' if len(lonely) > 10 else ''}); "
                "the encoder cannot describe an isolated atom's environment"
            )
    shifts = offsets.astype(np.float64) @ lattice
    return jraph.GraphsTuple(
        nodes={
            "positions": positions.astype(np.float32),
            "species": atomic_numbers.astype(np.int32),
        },
        edges={"shifts": shifts.astype(np.float32), "offsets": offsets.astype(np.int32)},
        senders=senders.astype(np.int32),
        receivers=receivers.astype(np.int32),
        globals={"lattice": lattice.astype(np.float32)[None]},
        n_node=np.array([n_atoms], np.int32),
        n_edge=np.array([len(senders)], np.int32),
    )


def graph_from_structure(
    structure, cutoff_angstrom: float = 5.0, allow_isolated: bool = False
) -> jraph.GraphsTuple:
    """`build_graph` for a pymatgen ``Structure`` (or anything with the same attributes)."""
    return build_graph(
        positions=structure.cart_coords,
        atomic_numbers=np.array([site.specie.Z for site in structure], dtype=np.int32),
        lattice=structure.lattice.matrix,
        pbc=structure.lattice.pbc,
        cutoff_angstrom=cutoff_angstrom,
        allow_isolated=allow_isolated,
    )


def edge_vectors(graph: jraph.GraphsTuple):
    """Cartesian edge vectors r_ij = x_j - x_i + shift, [n_edges, 3] (numpy or jax)."""
    pos = graph.nodes["positions"]
    return pos[graph.senders] - pos[graph.receivers] + graph.edges["shifts"]
