"""Hypothesis strategies for random valid crystals and rotations, shared by the test suites.

``crystals()`` draws a triclinic lattice (angles 40-140 degrees, optionally given in a
Niggli-unreduced basis), a bounded volume per atom, atoms at least
``MIN_DISTANCE_ANGSTROM`` apart over all periodic images (checked with the package's
neighbour list), and elements from ``SEVENNET_ELEMENTS``. ``rotations()`` draws proper
rotation matrices; ``rotation_batches(k)`` stacks ``k`` of them for ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from dtnn_jax.graph import neighbor_list

# H (1) to Bi (83) without the noble gases: all are in SevenNet-0's type map (89 species).
SEVENNET_ELEMENTS: tuple[int, ...] = tuple(z for z in range(1, 84) if z not in (2, 10, 18, 36, 54))

# Closest allowed approach of two atoms (any images), angstrom.
MIN_DISTANCE_ANGSTROM = 1.0
# Volume per atom is drawn from this range, angstrom^3 (real crystals: ~5-60).
VOLUME_PER_ATOM_ANGSTROM3 = (12.0, 40.0)


@dataclasses.dataclass(frozen=True)
class Crystal:
    """One random crystal.

    Attributes:
        lattice: [3, 3] lattice vectors as rows, angstrom.
        frac_coords: [n_atoms, 3] fractional coordinates in ``lattice``, in [0, 1).
        atomic_numbers: [n_atoms] int, Z.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    atomic_numbers: np.ndarray

    @property
    def positions(self) -> np.ndarray:
        """[n_atoms, 3] Cartesian coordinates, angstrom."""
        return self.frac_coords @ self.lattice

    def __len__(self) -> int:
        return len(self.atomic_numbers)


def _lattice_from_parameters(lengths, angles_deg) -> np.ndarray | None:
    """[3, 3] rows from (a, b, c) and (alpha, beta, gamma); None if no such cell exists."""
    a, b, c = lengths
    alpha, beta, gamma = np.radians(angles_deg)
    ca, cb, cg = np.cos(alpha), np.cos(beta), np.cos(gamma)
    sg = np.sin(gamma)
    cz2 = 1.0 - cb**2 - ((ca - cb * cg) / sg) ** 2
    if cz2 <= 1e-3:
        return None
    return np.array(
        [
            [a, 0.0, 0.0],
            [b * cg, b * sg, 0.0],
            [c * cb, c * (ca - cb * cg) / sg, c * np.sqrt(cz2)],
        ]
    )


def cell_heights(lattice: np.ndarray) -> np.ndarray:
    """[3] distances between opposite faces of the cell, angstrom."""
    volume = abs(np.linalg.det(lattice))
    areas = np.linalg.norm(np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]]), axis=1)
    return volume / areas


def _images_min_distance(candidate, placed, lattice) -> float:
    """Minimum distance from a Cartesian point to placed points over images -2..2."""
    shifts = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    images = (placed[:, None, :] + (shifts @ lattice)[None]).reshape(-1, 3)  # [n*125, 3]
    return float(np.min(np.linalg.norm(images - candidate, axis=1)))


@st.composite
def crystals(
    draw,
    min_atoms: int = 1,
    max_atoms: int = 20,
    elements: tuple[int, ...] = SEVENNET_ELEMENTS,
    unreduced: bool = True,
) -> Crystal:
    """Random valid crystals (see the module docstring).

    Args:
        draw: supplied by hypothesis.
        min_atoms, max_atoms: number of atoms in the cell.
        elements: atomic numbers to draw from.
        unreduced: sometimes express the cell in a sheared, Niggli-unreduced basis.
    """
    n_atoms = draw(st.integers(min_atoms, max_atoms))
    ratios = draw(st.tuples(*[st.floats(0.6, 1.6)] * 3))
    angles = draw(st.tuples(*[st.floats(40.0, 140.0)] * 3))
    volume_per_atom = draw(st.floats(*VOLUME_PER_ATOM_ANGSTROM3))
    lattice = _lattice_from_parameters(ratios, angles)
    assume(lattice is not None)
    lattice *= (volume_per_atom * n_atoms / abs(np.linalg.det(lattice))) ** (1.0 / 3.0)
    assume(cell_heights(lattice).min() > 1.2 * MIN_DISTANCE_ANGSTROM)

    # Positions by sequential random insertion (a seeded generator, so the example is
    # reproducible); blind sampling of 20 atoms would be rejected most of the time.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    placed = np.zeros((0, 3))
    for _ in range(n_atoms):
        for _attempt in range(100):
            candidate = rng.random(3) @ lattice
            if len(placed) == 0 or (
                _images_min_distance(candidate, placed, lattice) >= MIN_DISTANCE_ANGSTROM
            ):
                placed = np.vstack([placed, candidate])
                break
        else:
            assume(False)
    frac = placed @ np.linalg.inv(lattice)

    if unreduced and draw(st.booleans()):
        # Same crystal, sheared basis: rows M @ L with an integer unimodular M.
        k1, k2, k3 = draw(st.tuples(*[st.integers(-3, 3)] * 3))
        shear = np.array([[1, 0, 0], [k1, 1, 0], [k2, k3, 1]], float)
        new_lattice = shear @ lattice
        frac = (frac @ lattice) @ np.linalg.inv(new_lattice)
        lattice = new_lattice
    frac = frac % 1.0

    numbers = np.array(
        draw(st.lists(st.sampled_from(elements), min_size=n_atoms, max_size=n_atoms)), np.int32
    )
    crystal = Crystal(lattice=lattice, frac_coords=frac, atomic_numbers=numbers)
    # The periodic minimum distance, checked with the package's neighbour list.
    _, _, _, distances = neighbor_list(
        crystal.positions, lattice, (True, True, True), MIN_DISTANCE_ANGSTROM
    )
    assume(len(distances) == 0)
    return crystal


def _quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """[3, 3] proper rotation matrix of a (not necessarily unit) quaternion (w, x, y, z)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


@st.composite
def rotations(draw) -> np.ndarray:
    """Random proper rotation matrices, [3, 3] float64 with det +1."""
    q = np.array(draw(st.tuples(*[st.floats(-1.0, 1.0)] * 4)))
    assume(np.linalg.norm(q) > 0.1)
    return _quaternion_to_matrix(q)


def rotation_batches(k: int) -> st.SearchStrategy[np.ndarray]:
    """``k`` random proper rotations stacked as [k, 3, 3] (for ``jax.vmap``)."""
    return st.lists(rotations(), min_size=k, max_size=k).map(np.stack)


def random_rotations(rng: np.random.Generator, k: int) -> np.ndarray:
    """[k, 3, 3] Haar-random proper rotations from a numpy generator (non-hypothesis tests)."""
    q = rng.normal(size=(k, 4))
    return np.stack([_quaternion_to_matrix(qi) for qi in q])


def euler_angles(rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """e3nn's (alpha, beta, gamma) of proper rotations [..., 3, 3], computed in float64.

    ``IrrepsArray.transform_by_matrix`` finds these angles in the array's dtype; in float32
    ``arccos`` near a rotation by ~0 or ~pi about y (hypothesis likes those) loses ~1e-4,
    which would be blamed on the model. With the angles from here the reference D(R) is
    accurate to float32 round-off: R = Y(alpha) X(beta) Y(gamma).
    """
    r = np.asarray(rotations, np.float64)
    y = r[..., :, 1] / np.linalg.norm(r[..., :, 1], axis=-1, keepdims=True)  # R e_y
    alpha = np.arctan2(y[..., 0], y[..., 2])
    beta = np.arccos(np.clip(y[..., 1], -1.0, 1.0))
    ca, sa, cb, sb = np.cos(alpha), np.sin(alpha), np.cos(beta), np.sin(beta)
    one, zero = np.ones_like(alpha), np.zeros_like(alpha)
    ry = np.stack([np.stack([ca, zero, sa], -1), np.stack([zero, one, zero], -1),
                   np.stack([-sa, zero, ca], -1)], -2)  # fmt: skip
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cb, -sb], -1),
                   np.stack([zero, sb, cb], -1)], -2)  # fmt: skip
    rest = np.swapaxes(ry @ rx, -1, -2) @ r  # = Y(gamma)
    gamma = np.arctan2(rest[..., 0, 2], rest[..., 0, 0])
    return alpha, beta, gamma
