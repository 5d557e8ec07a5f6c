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


def _atom_images(frac, lattice, rotations, translations, atoms, tol_angstrom):
    """[n_op, len(atoms)] the atom each of ``atoms`` goes to under each operation, or None
    if an image is farther than ``tol_angstrom`` from every atom.

    Memory O(n_op x len(atoms)): each image is matched to its nearest atom with a periodic
    k-d tree in fractional coordinates, and the match is checked in Cartesian distance. (A
    supercell of N atoms has ~N / n_primitive times its primitive cell's operations, so an
    [n_op, N, N] distance table is O(N^3): 5.4 GiB for a 216-atom Si supercell.)
    """
    from scipy.spatial import cKDTree

    wrapped = np.mod(frac, 1.0) % 1.0  # [N, 3] in [0, 1) (the second mod: round-off 1.0)
    tree = cKDTree(wrapped, boxsize=1.0)
    out = np.empty((len(rotations), len(atoms)), np.int64)  # [n_op, A]
    block = max(1, 1_000_000 // max(len(atoms), 1))  # operations per query (temporaries)
    for start in range(0, len(rotations), block):
        rot, trans = rotations[start : start + block], translations[start : start + block]
        images = np.einsum("oij,nj->oni", rot, frac[atoms]) + trans[:, None, :]  # [op, A, 3]
        images = np.mod(images, 1.0) % 1.0
        _, index = tree.query(images.reshape(-1, 3))
        index = index.reshape(images.shape[:2])  # [op, A]
        delta = images - wrapped[index]  # [op, A, 3]
        delta -= np.rint(delta)
        if np.linalg.norm(delta @ lattice, axis=-1).max() > tol_angstrom:
            return None
        out[start : start + block] = index
    return out


def _operation_per_atom(rep_images, representatives, equivalent) -> np.ndarray | None:
    """[N] an operation taking each atom's representative to it (-1 for representatives),
    or None if some atom is reached by none."""
    n = len(equivalent)
    chosen = np.full(n, -1)
    for s, a in enumerate(representatives):
        targets, first = np.unique(rep_images[:, s], return_index=True)  # first op per target
        op_of = dict(zip(targets.tolist(), first.tolist(), strict=True))
        for b in np.flatnonzero(equivalent == a):
            if b == a:
                continue
            if int(b) not in op_of:
                return None
            chosen[b] = op_of[int(b)]
    return chosen


def symmetry_map(structure, symprec: float = DEFAULT_SYMPREC_ANGSTROM) -> SymmetryMap:
    """The space-group reduction of a pymatgen Structure (identity map if none is found).

    Memory and time O(n_op x (S + N)) + O(N^2) for the map itself (S orbits, N atoms):
    only the representatives' images under every operation are matched, and the full
    permutation only for the (at most N) operations the map uses, each checked to be a
    bijection.

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
    tol = 10 * symprec + 1e-8
    equivalent = np.asarray(dataset.equivalent_atoms)
    representatives = np.unique(equivalent)
    rep_images = _atom_images(frac, lattice, rotations, translations, representatives, tol)
    if rep_images is None:
        return identity_map(n)
    chosen = _operation_per_atom(rep_images, representatives, equivalent)  # [N]
    if chosen is None:
        return identity_map(n)
    used = np.unique(chosen[chosen >= 0])  # the operations the map needs
    if len(used) == 0:  # every atom its own orbit
        return dataclasses.replace(identity_map(n), n_operations=len(rotations))
    perm = _atom_images(frac, lattice, rotations[used], translations[used], np.arange(n), tol)
    if perm is None or not np.array_equal(
        np.sort(perm, axis=1), np.tile(np.arange(n), (len(used), 1))
    ):
        return identity_map(n)  # an operation that is not a bijection of the atoms
    # Cartesian rotations: positions are rows r = x L, so R_c = L^T R_f L^-T
    rot_cart = np.einsum("ji,ojk,kl->oil", lattice, rotations[used], np.linalg.inv(lattice).T)
    if np.abs(np.einsum("oij,okj->oik", rot_cart, rot_cart) - np.eye(3)).max() > 1e-6:
        return identity_map(n)
    slot_of_atom = np.full(n, -1)
    slot_of_atom[representatives] = np.arange(len(representatives))
    row = np.searchsorted(used, chosen)  # [N] row of each atom's operation in ``used``
    is_rep = chosen < 0
    rotations_b = np.where(is_rep[:, None, None], np.eye(3), rot_cart[np.where(is_rep, 0, row)])
    permutations = np.where(is_rep[:, None], np.arange(n), perm[np.where(is_rep, 0, row)])
    return SymmetryMap(
        representatives=representatives,
        slot_of_atom=slot_of_atom,
        source_slot=slot_of_atom[equivalent],
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
