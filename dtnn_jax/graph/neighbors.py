"""Periodic neighbour graphs: crystal arrays + cutoff -> `jraph.GraphsTuple`.

Conventions (used by every model in the package):

* lattice vectors are the *rows* of ``lattice`` (pymatgen / ASE convention);
* an edge ``e`` goes from ``senders[e] = j`` (the neighbour) to ``receivers[e] = i`` (the
  centre); its Cartesian vector is
  ``r_ij = positions[j] - positions[i] + shifts[e]`` with ``shifts[e] = offsets[e] @ lattice``;
* both directions of every pair are present; the zero-shift self pair is never present, but
  an atom *is* connected to its own periodic images when they lie within the cutoff;
* the cutoff is strict, ``|r_ij| < cutoff``, as in ASE and SevenNet's own graph builder.

The neighbour search is pymatgen's cell-list implementation
(``pymatgen.optimization.neighbors.find_points_in_spheres``, compiled, O(N) in the number of
atoms), tested against ASE's neighbour list in ``tests/graph``.
"""

from __future__ import annotations

import jraph
import numpy as np
from pymatgen.optimization.neighbors import find_points_in_spheres

from dtnn_jax.errors import InputError

# Two atoms (periodic images included) closer than this are overlapping, an input error: no
# relaxed crystal has such a bond (the shortest, H-H in H2, is 0.74 A), so this catches
# duplicated sites and unit mix-ups (bohr or fractional coordinates read as angstrom) before
# a near-zero edge gives the encoder meaningless directions. The only overlap threshold of
# the package: checked on the neighbour list the graph is built from (no second search).
MIN_INTERATOMIC_DISTANCE_ANGSTROM = 0.5


class GraphConstructionError(InputError):
    """A structure cannot be turned into a neighbour graph (the message says why)."""


class IsolatedAtomError(GraphConstructionError):
    """At least one atom has no neighbour within the cutoff."""


def neighbor_list(
    positions: np.ndarray,  # [n_atoms, 3] Cartesian, angstrom
    lattice: np.ndarray,  # [3, 3] lattice vectors as rows, angstrom
    pbc: tuple[bool, bool, bool] | np.ndarray,
    cutoff_angstrom: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (i, j, image) with |r_ij| < cutoff, the self pair excluded.

    Equal, as a set, to ASE's ``neighbor_list("ijdS", atoms, cutoff,
    self_interaction=False)`` (tested on every shipped crystal). Non-periodic directions
    never produce images, and their lattice rows may be zero. Distinct atoms at the same
    place are reported (at distance 0); `build_graph` rejects them.

    Returns:
        receivers: [n_edges] int, the centre atom i.
        senders: [n_edges] int, the neighbour atom j.
        offsets: [n_edges, 3] int, the lattice image of j.
        distances: [n_edges] float64, angstrom.

        Sorted by (i, j, image).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc_bool = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if positions.shape[0] == 0:
        empty = np.zeros((0,), np.int64)
        return empty, empty, np.zeros((0, 3), np.int64), np.zeros((0,), np.float64)
    search_lattice = _search_lattice(np.asarray(lattice, np.float64), pbc_bool, positions)
    centers, neighbors, images, distances = find_points_in_spheres(
        positions,
        positions,
        r=float(cutoff_angstrom),
        pbc=np.ascontiguousarray(pbc_bool.astype(np.int64)),
        lattice=search_lattice,
        tol=1e-8,
    )
    centers = np.asarray(centers, np.int64).reshape(-1)
    neighbors = np.asarray(neighbors, np.int64).reshape(-1)
    images = np.rint(np.asarray(images, np.float64).reshape(-1, 3)).astype(np.int64)
    distances = np.asarray(distances, np.float64).reshape(-1)
    # The self pair is excluded by identity (same atom, zero image), as in ASE, not by
    # distance, so two distinct atoms at the same place stay visible to the caller.
    keep = ~((centers == neighbors) & np.all(images == 0, axis=1))
    # find_points_in_spheres has a small tolerance at the sphere's surface; apply the cutoff
    # exactly and strictly (|r| < cutoff), like ASE and SevenNet's own graph builder.
    keep &= distances < cutoff_angstrom
    centers, neighbors, images, distances = (
        centers[keep],
        neighbors[keep],
        images[keep],
        distances[keep],
    )
    order = np.lexsort((images[:, 2], images[:, 1], images[:, 0], neighbors, centers))
    return centers[order], neighbors[order], images[order], distances[order]


def _search_lattice(
    lattice: np.ndarray,  # [3, 3] rows, angstrom
    pbc: np.ndarray,  # [3] bool
    positions: np.ndarray,  # [n_atoms, 3] angstrom
) -> np.ndarray:
    """The lattice handed to the cell-list search: non-periodic rows replaced.

    Along a non-periodic direction no image is ever generated, so that lattice row only
    matters to the search as a basis vector; it may be zero (a molecule or slab given
    without a cell), which the search cannot invert. It is replaced by a vector orthogonal
    to the periodic rows and longer than the structure, so the result never depends on it.
    """
    if pbc.all():
        return np.ascontiguousarray(lattice)
    extent = float(np.ptp(positions, axis=0).max()) + 1.0
    periodic = lattice[pbc]  # [n_periodic, 3]
    # Orthonormal basis whose first rows span the periodic rows, the rest their complement.
    basis = np.linalg.svd(
        np.vstack([periodic, np.zeros((3 - len(periodic), 3))]), full_matrices=True
    )[2]  # [3, 3], rows orthonormal
    complement = basis[len(periodic) :]  # [n_non_periodic, 3]
    length = extent + float(np.abs(lattice[pbc]).sum()) + 1.0
    out = lattice.copy()
    out[~pbc] = complement * length
    return np.ascontiguousarray(out)


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
        pbc: periodicity along each lattice vector; a non-periodic row may be zero (a
            molecule or slab without a cell).
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
            degenerate lattice (linearly dependent periodic rows), a non-positive cutoff,
            or two atoms closer than `MIN_INTERATOMIC_DISTANCE_ANGSTROM` (0.5 A).
        IsolatedAtomError: an atom has no neighbour (unless ``allow_isolated``).
    """
    positions = np.asarray(positions, dtype=np.float64)
    atomic_numbers = np.asarray(atomic_numbers)
    lattice = np.asarray(lattice, dtype=np.float64)
    n_atoms = positions.shape[0] if positions.ndim == 2 else -1
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise GraphConstructionError(
            f"positions must have shape [n_atoms, 3], got {positions.shape}"
        )
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
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    _check_periodic_rows(lattice, pbc)

    receivers, senders, offsets, distances = neighbor_list(positions, lattice, pbc, cutoff_angstrom)
    overlapping = distances < MIN_INTERATOMIC_DISTANCE_ANGSTROM
    if overlapping.any():
        k = int(np.flatnonzero(overlapping)[0])
        i, j = int(receivers[k]), int(senders[k])
        image = "" if not offsets[k].any() else f", image {offsets[k].tolist()}"
        raise GraphConstructionError(
            f"overlapping atoms: sites {i} ({_symbol(atomic_numbers[i])}) and {j} "
            f"({_symbol(atomic_numbers[j])}{image}) are {distances[k]:.3f} A apart "
            f"(< {MIN_INTERATOMIC_DISTANCE_ANGSTROM} A): a duplicated site or a unit mix-up"
        )
    if not allow_isolated:
        has_neighbor = np.zeros(n_atoms, bool)
        has_neighbor[receivers] = True
        if not has_neighbor.all():
            lonely = np.flatnonzero(~has_neighbor)
            first = int(lonely[0])
            raise IsolatedAtomError(
                f"{len(lonely)} atom(s) have no neighbour within the cutoff of "
                f"{cutoff_angstrom} A: atom {first} (Z={int(atomic_numbers[first])}) at "
                f"{np.round(positions[first], 4).tolist()} A"
                + (f" and atoms {lonely[1:10].tolist()}" if len(lonely) > 1 else "")
                + ("..." if len(lonely) > 10 else "")
                + "; the encoder cannot describe an isolated atom's environment "
                "(pass allow_isolated=True to keep it as a node without edges)"
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


def _check_periodic_rows(lattice: np.ndarray, pbc: np.ndarray) -> None:
    """Raises `GraphConstructionError` unless the periodic lattice rows are independent."""
    periodic = lattice[pbc]  # [n_periodic, 3]
    if len(periodic) == 0:
        return
    lengths = np.linalg.norm(periodic, axis=1)  # [n_periodic]
    if np.any(lengths < 1e-6):
        raise GraphConstructionError(
            f"the lattice is degenerate: a periodic lattice vector has zero length; "
            f"lattice rows:\n{lattice}"
        )
    unit = periodic / lengths[:, None]
    # Gram determinant of the unit rows: 1 for orthogonal rows, 0 for dependent ones.
    gram_det = float(np.linalg.det(unit @ unit.T))
    if gram_det < 1e-8:
        raise GraphConstructionError(
            f"the lattice is degenerate (periodic lattice vectors are linearly dependent, "
            f"normalised Gram determinant {gram_det:.3g}); lattice rows:\n{lattice}"
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


def _symbol(z) -> str:
    """Element symbol of atomic number ``z`` (``Z=<z>`` if out of range)."""
    from ase.data import chemical_symbols

    z = int(z)
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"
