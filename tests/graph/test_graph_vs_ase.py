"""The periodic neighbour list equals ASE's, on every shipped crystal and on edge cases.

ASE's ``neighbor_list("ijdS", atoms, cutoff, self_interaction=False)`` is the oracle: ``i``
is the centre (our receiver), ``j`` the neighbour (our sender), ``S`` the lattice image of
``j`` (our offset), ``d`` the distance. Edges are compared as sets of integer keys
(i, j, S), exactly, and the distances of matching keys to 1e-6 A (rounding distances to a
grid and comparing multisets would fail spuriously on high-symmetry crystals, whose
distances often lie exactly halfway between grid points).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list

from dtnn_jax.graph import build_graph, edge_vectors, graph_from_structure, neighbor_list

DISTANCE_TOL_ANGSTROM = 1e-6


def _sorted_keys(
    crystal_index: np.ndarray,  # [n_edges]
    i: np.ndarray,  # [n_edges]
    j: np.ndarray,  # [n_edges]
    images: np.ndarray,  # [n_edges, 3]
    distances: np.ndarray,  # [n_edges]
) -> tuple[np.ndarray, np.ndarray]:
    """Edge keys [n_edges, 6] (crystal, i, j, S) in lexicographic order, with distances."""
    keys = np.column_stack([crystal_index, i, j, images]).astype(np.int64)
    order = np.lexsort(keys.T[::-1])
    return keys[order], distances[order]


def _assert_same_edges(ours, theirs) -> None:
    ours_keys, ours_d = _sorted_keys(*ours)
    ase_keys, ase_d = _sorted_keys(*theirs)
    assert ours_keys.shape == ase_keys.shape, f"{len(ours_keys)} edges here, {len(ase_keys)} in ASE"
    differs = np.any(ours_keys != ase_keys, axis=1)
    assert not differs.any(), f"first differing edge: ours {ours_keys[differs][0]}, " + (
        f"ASE {ase_keys[differs][0]}"
    )
    np.testing.assert_allclose(ours_d, ase_d, rtol=0, atol=DISTANCE_TOL_ANGSTROM)


def _ase_edges(atoms: Atoms, cutoff_angstrom: float):
    i, j, d, shifts = ase_neighbor_list("ijdS", atoms, cutoff_angstrom, self_interaction=False)
    return np.zeros_like(i), i, j, shifts, d


def _our_edges(atoms: Atoms, cutoff_angstrom: float):
    r, s, offsets, d = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff_angstrom)
    return np.zeros_like(r), r, s, offsets, d


# Every shipped crystal at the encoder's 5 A cutoff; at 6 A (more images, a check of the
# search beyond the production cutoff) every third one. ASE is the cost: on this 2-core
# machine it takes ~3 s CPU for all 1056 crystals at 5 A and ~5 s at 6 A, and the wall time
# doubles when other suites share the cores, so the 6 A pass is subsampled deterministically.
@pytest.mark.parametrize(("cutoff_angstrom", "stride"), [(5.0, 1), (6.0, 3)])
def test_shipped_crystals_match_ase(shipped_structures, cutoff_angstrom, stride):
    structures = shipped_structures[::stride]
    ours, theirs = [], []
    for n, structure in enumerate(structures):
        graph = graph_from_structure(structure, cutoff_angstrom)
        # build_graph keeps neighbor_list's edge order; its float64 distances are compared.
        r, s, offsets, distances = neighbor_list(
            structure.cart_coords, structure.lattice.matrix, (True,) * 3, cutoff_angstrom
        )
        assert np.array_equal(graph.receivers, r) and np.array_equal(graph.senders, s)
        assert np.array_equal(graph.edges["offsets"], offsets)
        ours.append((np.full(len(r), n), r, s, offsets, distances))
        atoms = Atoms(
            numbers=[site.specie.Z for site in structure],
            positions=structure.cart_coords,
            cell=structure.lattice.matrix,
            pbc=True,
        )
        i, j, d, shifts = ase_neighbor_list("ijdS", atoms, cutoff_angstrom, self_interaction=False)
        theirs.append((np.full(len(i), n), i, j, shifts, d))
    assert len(ours) == len(structures) >= 1056 // stride
    _assert_same_edges(
        [np.concatenate(columns) for columns in zip(*ours, strict=True)],
        [np.concatenate(columns) for columns in zip(*theirs, strict=True)],
    )


def _skewed_triclinic() -> Atoms:
    cell = [[3.0, 0.0, 0.0], [2.6, 1.5, 0.0], [-2.4, 0.7, 1.9]]  # gamma ~30, beta ~140 degrees
    return Atoms(
        "SiO2", scaled_positions=[[0, 0, 0], [0.3, 0.2, 0.1], [0.6, 0.7, 0.55]], cell=cell, pbc=True
    )


EDGE_CASES = {
    "one_atom_fcc_cu": (bulk("Cu", "fcc", a=3.61), 5.0),
    "cutoff_over_twice_cell": (bulk("Cu", "fcc", a=3.61), 9.0),
    "tiny_cubic_many_images": (
        Atoms("H", positions=[[0.1, 0.2, 0.3]], cell=np.eye(3) * 1.1, pbc=True),
        4.0,
    ),
    "skewed_triclinic": (_skewed_triclinic(), 5.0),
    "niggli_unreduced": (
        Atoms(
            "NaCl",
            scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]],
            cell=np.array([[1.0, 0, 0], [5.0, 1.0, 0], [0, 0, 1.0]]) * 2.8,
            pbc=True,
        ),
        6.0,
    ),
    "positions_outside_cell": (
        Atoms(
            "NaCl", positions=[[-3.0, 7.5, 11.0], [1.0, -2.0, 0.3]], cell=np.eye(3) * 4.0, pbc=True
        ),
        5.0,
    ),
    "molecule_no_pbc": (
        Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], pbc=False),
        5.0,
    ),
    "slab_no_pbc_along_c": (
        Atoms(
            "Cu2",
            positions=[[0, 0, 0], [1.3, 1.3, 1.8]],
            cell=[2.6, 2.6, 0.0],
            pbc=[True, True, False],
        ),
        5.0,
    ),
    "cell_exactly_cutoff": (Atoms("H", positions=[[0, 0, 0]], cell=np.eye(3) * 5.0, pbc=True), 5.0),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_match_ase(name):
    atoms, cutoff_angstrom = EDGE_CASES[name]
    _assert_same_edges(_our_edges(atoms, cutoff_angstrom), _ase_edges(atoms, cutoff_angstrom))


def test_cutoff_is_strict_like_ase():
    # A simple cubic cell of edge 5 A: the six nearest images sit exactly at the cutoff.
    atoms = EDGE_CASES["cell_exactly_cutoff"][0]
    assert len(_our_edges(atoms, 5.0)[1]) == 0
    assert len(_our_edges(atoms, 5.0 + 1e-9)[1]) == 6


def test_many_images_when_cutoff_exceeds_cell():
    atoms, cutoff_angstrom = EDGE_CASES["tiny_cubic_many_images"]
    _, r, s, offsets, _ = _our_edges(atoms, cutoff_angstrom)
    # Every lattice point of the 1.1 A cubic lattice within 4 A, but the origin.
    grid = np.stack(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    expected = int(np.sum(np.linalg.norm(grid * 1.1, axis=1) < 4.0)) - 1
    assert len(r) == expected > 100
    assert np.all(r == 0) and np.all(s == 0)
    assert np.abs(offsets).max() == 3


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edges_come_in_reversed_pairs_without_self_loop(name):
    atoms, cutoff_angstrom = EDGE_CASES[name]
    _, r, s, offsets, _ = _our_edges(atoms, cutoff_angstrom)
    forward = {(a, b, *o) for a, b, o in zip(r.tolist(), s.tolist(), offsets.tolist(), strict=True)}
    backward = {(b, a, *(-np.asarray(o)).tolist()) for a, b, *o in forward}
    assert forward == backward
    assert not any(a == b and o == [0, 0, 0] for a, b, *o in forward)


def test_triclinic_graph_vectors(triclinic):
    graph = graph_from_structure(triclinic, 5.0)
    vectors = edge_vectors(graph)  # [n_edges, 3]
    expected = (
        triclinic.cart_coords[graph.senders]
        - triclinic.cart_coords[graph.receivers]
        + graph.edges["offsets"] @ triclinic.lattice.matrix
    )
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    assert np.all(np.linalg.norm(vectors, axis=1) < 5.0 + 1e-4)


def test_molecule_graph_has_zero_shifts():
    atoms, cutoff_angstrom = EDGE_CASES["molecule_no_pbc"]
    graph = build_graph(
        atoms.positions, atoms.numbers, np.zeros((3, 3)), (False,) * 3, cutoff_angstrom
    )
    assert int(graph.n_edge[0]) == 6
    assert not np.any(graph.edges["offsets"]) and not np.any(graph.edges["shifts"])
