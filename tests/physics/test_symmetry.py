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


def _si_supercell(n: int):
    from pymatgen.core import Lattice, Structure

    conventional = Structure(
        Lattice.cubic(5.431),
        ["Si"] * 8,
        [
            [0, 0, 0],
            [0, 0.5, 0.5],
            [0.5, 0, 0.5],
            [0.5, 0.5, 0],
            [0.25, 0.25, 0.25],
            [0.25, 0.75, 0.75],
            [0.75, 0.25, 0.75],
            [0.75, 0.75, 0.25],
        ],
    )
    conventional.make_supercell([n, n, n])
    return conventional


def test_large_supercell_map_in_small_memory():
    """216-atom Si (5,184 operations): the old [n_op, N, N, 3] table needed 5.4 GiB."""
    import tracemalloc

    si = _si_supercell(3)
    tracemalloc.start()
    m = symmetry_map(si)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"
    assert m.n_operations == 5184 and m.n_slots == 1 and len(si) == 216
    for b in range(0, 216, 7):  # R_b x_rep + t lands on x_b; the permutation is a bijection
        perm = m.permutations[b]
        assert sorted(perm) == list(range(216)) and perm[m.representatives[0]] == b
        np.testing.assert_allclose(
            m.rotations_cart[b] @ m.rotations_cart[b].T, np.eye(3), atol=1e-10
        )
    # every bond vector maps onto a bond vector of the same length under the map's operation
    cart = si.cart_coords
    b = 101
    r, perm = m.rotations_cart[b], m.permutations[b]
    d = cart[5] - cart[0]
    d_img = cart[perm[5]] - cart[perm[0]]
    lattice = si.lattice.matrix
    delta = (d_img - r @ d) @ np.linalg.inv(lattice)
    np.testing.assert_allclose(delta - np.rint(delta), 0, atol=1e-8)
