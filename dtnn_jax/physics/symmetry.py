"""Space-group reduction of the force-constant columns a crystal needs (host, numpy + spglib).

K is invariant under the crystal's space group: if the operation g = (R, t) maps atom i to
g(i), then ``K[g(i), g(j)] = R_c K[i, j] R_c^T`` (3x3 blocks, R_c the Cartesian rotation).
So the three columns of one representative atom per orbit of symmetry-equivalent atoms
(Wyckoff orbit) determine all of K: for atom b = g(a) of a's orbit,
``K[:, b] = R_c K[g^-1(:), a] R_c^T``. On the 1,056 shipped crystals this displaces 2.4x
fewer atoms than all of them (symprec 1e-5 A; 3-4 of 10 atoms for most 10-atom crystals).

The operations are spglib's at a tight tolerance (`DEFAULT_SYMPREC_ANGSTROM`), so only
operations the structure obeys to ~1e-5 A are used: for a structure symmetric to that
tolerance the columns built by symmetry equal the computed ones to O(symprec x the third
derivatives of the energy). A structure with no symmetry (e.g. a rattled one) gets the
identity map: every atom is displaced.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_SYMPREC_ANGSTROM = 1e-5


@dataclasses.dataclass(frozen=True)
class SymmetryMap:
    """Which atoms to displace and how every column block of K follows from theirs.

    Attributes:
        representatives: [S] the displaced atoms (one per orbit, ascending); slot s is
            ``representatives[s]``.
        slot_of_atom: [N] the slot of each atom if it is displaced, else -1.
        source_slot: [N] the slot whose columns give atom b's columns.
        rotations_cart: [N, 3, 3] R_c of the operation g_b with g_b(representative) = b.
        permutations: [N, N] ``permutations[b, i] = g_b(i)``.
        n_operations: number of space-group operations found (1: identity only).
    """

    representatives: np.ndarray
    slot_of_atom: np.ndarray
    source_slot: np.ndarray
    rotations_cart: np.ndarray
    permutations: np.ndarray
    n_operations: int

    @property
    def n_slots(self) -> int:
        return int(self.representatives.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.slot_of_atom.shape[0])


def identity_map(n_atoms: int) -> SymmetryMap:
    """Every atom displaced (no symmetry used)."""
    n = int(n_atoms)
    atoms = np.arange(n)
    return SymmetryMap(
        representatives=atoms,
        slot_of_atom=atoms,
        source_slot=atoms,
        rotations_cart=np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
        permutations=np.broadcast_to(atoms, (n, n)).copy(),
        n_operations=1,
    )


def _atom_permutations(frac, lattice, rotations, translations, tol_angstrom):
    """[n_op, N] image of every atom under every operation, or None if one does not map."""
    images = np.einsum("oij,nj->oni", rotations, frac) + translations[:, None, :]  # [n_op, N, 3]
    delta = images[:, :, None, :] - frac[None, None, :, :]  # [n_op, N, N, 3]
    delta -= np.rint(delta)
    dist = np.linalg.norm(delta @ lattice, axis=-1)  # [n_op, N, N] Cartesian
    perm = np.argmin(dist, axis=2)  # [n_op, N]
    if np.take_along_axis(dist, perm[:, :, None], axis=2).max() > tol_angstrom:
        return None
    if any(len(set(p.tolist())) != frac.shape[0] for p in perm):
        return None
    return perm


def symmetry_map(structure, symprec: float = DEFAULT_SYMPREC_ANGSTROM) -> SymmetryMap:
    """The space-group reduction of a pymatgen Structure (identity map if none is found).

    Args:
        structure: the crystal (its site order is K's atom order).
        symprec: spglib's position tolerance (A).
    """
    import spglib

    n = len(structure)
    if n == 1:
        return identity_map(1)
    lattice = np.asarray(structure.lattice.matrix, np.float64)  # rows
    frac = np.asarray(structure.frac_coords, np.float64)  # [N, 3]
    numbers = [site.specie.Z for site in structure]
    try:
        dataset = spglib.get_symmetry_dataset((lattice, frac, numbers), symprec=symprec)
    except Exception:  # spglib raises or returns None on failure, by version
        dataset = None
    if dataset is None:
        return identity_map(n)
    rotations = np.asarray(dataset.rotations, np.float64)  # [n_op, 3, 3] fractional
    translations = np.asarray(dataset.translations, np.float64)  # [n_op, 3]
    perm = _atom_permutations(frac, lattice, rotations, translations, 10 * symprec + 1e-8)
    if perm is None:
        return identity_map(n)
    # Cartesian rotations: positions are rows r = x L, so R_c = L^T R_f L^-T
    rot_cart = np.einsum("ji,ojk,kl->oil", lattice, rotations, np.linalg.inv(lattice).T)
    if np.abs(np.einsum("oij,okj->oik", rot_cart, rot_cart) - np.eye(3)).max() > 1e-6:
        return identity_map(n)
    equivalent = np.asarray(dataset.equivalent_atoms)
    representatives = np.unique(equivalent)
    slot_of_atom = np.full(n, -1)
    slot_of_atom[representatives] = np.arange(len(representatives))
    source_slot = np.zeros(n, np.int64)
    rotations_b = np.zeros((n, 3, 3))
    permutations = np.zeros((n, n), np.int64)
    for b in range(n):
        a = int(equivalent[b])
        source_slot[b] = slot_of_atom[a]
        if a == b:  # a representative: its own computed columns
            rotations_b[b], permutations[b] = np.eye(3), np.arange(n)
            continue
        ops = np.flatnonzero(perm[:, a] == b)
        if len(ops) == 0:
            return identity_map(n)
        rotations_b[b], permutations[b] = rot_cart[ops[0]], perm[ops[0]]
    return SymmetryMap(
        representatives=representatives,
        slot_of_atom=slot_of_atom,
        source_slot=source_slot,
        rotations_cart=rotations_b,
        permutations=permutations,
        n_operations=len(rotations),
    )


def expand_columns(columns: np.ndarray, smap: SymmetryMap) -> np.ndarray:
    """K [3N, 3N] from the columns of the displaced atoms.

    Args:
        columns: [3N, 3S] column ``3 s + d`` = dF/d(x of representative s, direction d)
            with a minus sign, i.e. K's columns of the representatives.
        smap: the crystal's `SymmetryMap`.

    Returns:
        [3N, 3N] K, with ``K[g_b(i), b] = R_b K[i, rep_b] R_b^T`` for every atom b (the
        representatives' own columns copied as computed).
    """
    n, s = smap.n_atoms, smap.n_slots
    blocks = np.asarray(columns).reshape(n, 3, s, 3)  # [N, 3, S, 3]
    k = np.zeros((n, 3, n, 3), blocks.dtype)
    for b in range(n):
        source = blocks[:, :, smap.source_slot[b], :]  # [N, 3, 3] K[i, rep]
        r = smap.rotations_cart[b]
        k[smap.permutations[b], :, b, :] = np.einsum("ij,njk,lk->nil", r, source, r)
    return k.reshape(3 * n, 3 * n)
