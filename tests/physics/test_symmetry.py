"""Space-group maps: orbits, operations, and the identity fallback."""

from __future__ import annotations

import numpy as np

from dtnn_jax.physics.symmetry import identity_map, symmetry_map
from tests.physics.conftest import rattled


def test_orbits_of_symmetric_cells(caf2, rutile, cu):
    fluorite = symmetry_map(caf2)
    assert fluorite.n_operations == 48 and list(fluorite.representatives) == [0, 1]
    assert list(fluorite.slot_of_atom) == [0, 1, -1] and list(fluorite.source_slot) == [0, 1, 1]
    tio2 = symmetry_map(rutile)
    assert tio2.n_operations == 16 and tio2.n_slots == 2
    assert symmetry_map(cu).n_slots == 1


def test_operations_map_atoms_onto_atoms(rutile):
    """R_b (x_rep) lands on x_b up to a lattice vector, species kept, R_b orthogonal."""
    m = symmetry_map(rutile)
    species = [site.specie.Z for site in rutile]
    for b in range(len(rutile)):
        r = m.rotations_cart[b]
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-10)
        perm = m.permutations[b]
        assert sorted(perm) == list(range(len(rutile)))
        assert [species[j] for j in perm] == species
        assert perm[m.representatives[m.source_slot[b]]] == b


def test_no_symmetry_gives_identity(rutile):
    m = symmetry_map(rattled(rutile, seed=3))
    ident = identity_map(len(rutile))
    assert m.n_operations == 1
    for field in ("representatives", "slot_of_atom", "source_slot", "permutations"):
        np.testing.assert_array_equal(getattr(m, field), getattr(ident, field))
