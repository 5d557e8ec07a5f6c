"""The edge set of random crystals is invariant under rotation, permutation and translation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dtnn_jax.graph import build_graph, edge_vectors, neighbor_list
from tests.strategies import (
    MIN_DISTANCE_ANGSTROM,
    SEVENNET_ELEMENTS,
    VOLUME_PER_ATOM_ANGSTROM3,
    crystals,
    random_rotations,
    rotation_batches,
    rotations,
)

CUTOFF_ANGSTROM = 5.0
# Pairs this close to the cutoff may fall either side after a rotation's rounding.
BOUNDARY_TOL_ANGSTROM = 1e-6


def _edge_set(positions, lattice, atom_label=None) -> set[tuple[int, ...]]:
    """{(receiver, sender, *offset)} of pairs not within rounding of the cutoff."""
    r, s, offsets, d = neighbor_list(positions, lattice, (True,) * 3, CUTOFF_ANGSTROM)
    near_boundary = np.abs(d - CUTOFF_ANGSTROM) < BOUNDARY_TOL_ANGSTROM
    if atom_label is not None:
        r, s = atom_label[r], atom_label[s]
    edges = zip(r.tolist(), s.tolist(), offsets.tolist(), near_boundary, strict=True)
    return {(a, b, *o) for a, b, o, skip in edges if not skip}


@settings(max_examples=25, deadline=None)
@given(
    crystal=crystals(max_atoms=8),
    rotation=rotations(),
    translation=st.tuples(*[st.floats(-20.0, 20.0)] * 3),
    permutation_seed=st.integers(0, 2**16),
)
def test_edges_invariant_under_rotation_permutation_translation(
    crystal, rotation, translation, permutation_seed
):
    positions, lattice = crystal.positions, crystal.lattice  # [n, 3], [3, 3]
    reference = _edge_set(positions, lattice)
    assert reference, "a crystal in the strategy's density range always has neighbours"

    # Rotating positions and lattice rows together: the same (i, j, image) triples.
    assert _edge_set(positions @ rotation.T, lattice @ rotation.T) == reference
    # Translating every atom (without wrapping back into the cell).
    assert _edge_set(positions + np.asarray(translation), lattice) == reference
    # Permuting the atoms: the same edges once atoms are relabelled back.
    permutation = np.random.default_rng(permutation_seed).permutation(len(crystal))
    assert _edge_set(positions[permutation], lattice, atom_label=permutation) == reference

    # The graph's edge vectors rotate with the crystal.
    graph = build_graph(positions, crystal.atomic_numbers, lattice, cutoff_angstrom=5.0)
    rotated = build_graph(
        positions @ rotation.T, crystal.atomic_numbers, lattice @ rotation.T, cutoff_angstrom=5.0
    )
    if graph.senders.shape == rotated.senders.shape and np.array_equal(
        graph.senders, rotated.senders
    ):
        np.testing.assert_allclose(
            edge_vectors(rotated), edge_vectors(graph) @ rotation.T.astype(np.float32), atol=1e-4
        )


@settings(max_examples=20, deadline=None)
@given(crystal=crystals(min_atoms=1, max_atoms=20, elements=(1, 8, 14)))
def test_crystal_strategy_is_valid(crystal):
    n = len(crystal)
    assert 1 <= n <= 20
    assert set(crystal.atomic_numbers.tolist()) <= {1, 8, 14}
    assert np.all((crystal.frac_coords >= 0) & (crystal.frac_coords < 1))
    volume_per_atom = abs(np.linalg.det(crystal.lattice)) / n
    low, high = VOLUME_PER_ATOM_ANGSTROM3
    assert low * (1 - 1e-9) <= volume_per_atom <= high * (1 + 1e-9)
    _, _, _, d = neighbor_list(crystal.positions, crystal.lattice, (True,) * 3, 3.0)
    assert d.min(initial=np.inf) >= MIN_DISTANCE_ANGSTROM


@settings(max_examples=20, deadline=None)
@given(batch=rotation_batches(4))
def test_rotations_are_proper(batch):
    assert batch.shape == (4, 3, 3)
    np.testing.assert_allclose(
        batch @ batch.transpose(0, 2, 1), np.broadcast_to(np.eye(3), batch.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(batch), 1.0, atol=1e-12)


def test_random_rotations_are_proper(rng):
    batch = random_rotations(rng, 16)
    np.testing.assert_allclose(np.linalg.det(batch), 1.0, atol=1e-12)
    np.testing.assert_allclose(
        batch @ batch.transpose(0, 2, 1), np.broadcast_to(np.eye(3), batch.shape), atol=1e-12
    )


def test_default_elements_exclude_noble_gases():
    assert len(SEVENNET_ELEMENTS) == 78
    assert not {2, 10, 18, 36, 54} & set(SEVENNET_ELEMENTS)
