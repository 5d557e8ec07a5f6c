"""The static ionic dielectric tensor from force constants and Born effective charges.

In the harmonic approximation (Gonze & Lee, PRB 55, 10355 (1997), eq. 60, with the mode sum
written as a pseudo-inverse; masses cancel) the ionic (lattice) contribution is

    eps_ion[a, b] = (4 pi e^2 / Omega) * sum_{k, l} Z_k[a, :] . Kinv[(k, :), (l, :)] . Z_l[b, :]

with ``Omega`` the cell volume (A^3), ``K`` the 3N x 3N force-constant matrix at Gamma (eV/A^2,
the Hessian of the potential energy with respect to Cartesian positions, lattice fixed),
``Kinv`` its pseudo-inverse on the optical subspace (the 3 uniform translations projected
out) and ``Z_k`` the Born effective charge of atom ``k`` (units of e; the first index is the
field direction, the second the displacement direction). ``e^2 = 14.399645 eV A`` (Gaussian
units), so eps_ion is dimensionless.

Layout: row / column ``3 * k + beta`` of ``K`` and ``Kinv`` is atom ``k``, Cartesian direction
``beta`` (the order of the structure's sites). Z stacked as ``[3N, 3]`` has
``Zs[3 k + beta, a] = Z_k[a, beta]``, so ``eps_ion = C / Omega * Zs^T Kinv Zs``.

What the projection does: ``Kinv`` annihilates uniform translations, so only the part of Z
that obeys the acoustic sum rule (``sum_k Z_k = 0``) enters: ``Z_k -> Z_k + c`` (the same
3x3 ``c`` for every atom, an ASR violation such as a DFT Z* carries) leaves eps_ion
unchanged. In effect the ASR is imposed on Z by subtracting its mean over the atoms.

`optical_pseudo_inverse` and `ionic_dielectric` are numpy (float64) references;
`ionic_dielectric_jnp` is the same contraction in jax.numpy, batched and differentiable, for
losses on predicted Born charges with precomputed ``Kinv``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

COULOMB_EV_ANGSTROM = 14.399645
"""e^2 / (4 pi eps_0) in eV A (the square of the elementary charge in Gaussian units)."""

IONIC_PREFACTOR_EV_ANGSTROM = 4.0 * math.pi * COULOMB_EV_ANGSTROM
"""C of ``eps_ion = C / Omega * Zs^T Kinv Zs`` (eV A; Omega in A^3, Kinv in A^2/eV)."""

DEFAULT_FLOOR_EV_PER_A2 = 0.01
"""Default floor on the magnitude of optical eigenvalues of K (eV/A^2)."""

TREATMENTS: tuple[str, ...] = ("drop_negative", "abs", "signed")
"""How `optical_pseudo_inverse` inverts an optical eigenvalue ``lam`` of K:

* ``"drop_negative"``: ``lam < 0`` is discarded (weight 0), ``lam >= 0`` gives
  ``1 / max(lam, floor)``; PSD.
* ``"abs"``: ``1 / max(|lam|, floor)``; PSD.
* ``"signed"``: ``sign(lam) / max(|lam|, floor)``; not PSD when K has negative optical
  modes. With ``floor=0`` it is the exact pseudo-inverse of the projected K (the one in which
  masses cancel exactly, see `dtnn_jax.physics.phonons`).
"""


class OpticalInverse(NamedTuple):
    """The optical pseudo-inverse of a force-constant matrix and its spectrum.

    Attributes:
        kinv_a2_per_ev: [3N, 3N] symmetric, zero on the 3 uniform translations (A^2/eV).
        eigenvalues_ev_per_a2: [3N - 3] optical eigenvalues of the symmetrised, projected K,
            ascending (eV/A^2).
        negative: [3N - 3] bool, ``eigenvalues < 0``.
        weights_a2_per_ev: [3N - 3] the inverse eigenvalue each mode enters ``kinv`` with
            (0 where dropped).
        modes: [3N, 3N - 3] orthonormal optical eigenvectors (columns), orthogonal to the
            uniform translations; ``kinv = modes @ diag(weights) @ modes.T``.
        treatment: the treatment used (one of `TREATMENTS`).
        floor_ev_per_a2: the floor used.
    """

    kinv_a2_per_ev: np.ndarray
    eigenvalues_ev_per_a2: np.ndarray
    negative: np.ndarray
    weights_a2_per_ev: np.ndarray
    modes: np.ndarray
    treatment: str
    floor_ev_per_a2: float

    @property
    def n_negative(self) -> int:
        """Number of negative optical eigenvalues."""
        return int(np.count_nonzero(self.negative))


def translation_basis(n_atoms: int) -> np.ndarray:
    """[3N, 3] orthonormal uniform translations: column a moves every atom along axis a."""
    t = np.zeros((3 * n_atoms, 3))
    for a in range(3):
        t[a::3, a] = 1.0 / math.sqrt(n_atoms)
    return t


def optical_basis(n_atoms: int, weights: np.ndarray | None = None) -> np.ndarray:
    """[3N, 3N - 3] orthonormal basis of the complement of the (weighted) translations.

    Args:
        n_atoms: N.
        weights: [N] per-atom weights w_k of the translations to remove (columns
            ``w_k e_a`` for every atom k, normalised); None for uniform translations (the
            mass-weighted ones, ``sqrt(m_k)``, are the acoustic modes of the dynamical
            matrix).
    """
    t = np.zeros((3 * n_atoms, 3))
    w = np.ones(n_atoms) if weights is None else np.asarray(weights, np.float64)
    for a in range(3):
        t[a::3, a] = w / np.linalg.norm(w)
    u, _, _ = np.linalg.svd(t, full_matrices=True)  # [3N, 3N]
    return u[:, 3:]


def symmetrised(k: np.ndarray) -> np.ndarray:
    """(K + K^T) / 2 in float64."""
    k = np.asarray(k, np.float64)
    return 0.5 * (k + k.T)


def project_translations(k: np.ndarray) -> np.ndarray:
    """P K P with P = 1 - T T^T: the symmetrised K with the acoustic sum rule imposed exactly.

    The rows and columns of the result sum to zero over atoms; for a K that obeys the sum
    rule already (an exact Hessian of a translation-invariant energy) it is K itself.
    """
    ks = symmetrised(k)
    t = translation_basis(ks.shape[0] // 3)
    p = np.eye(ks.shape[0]) - t @ t.T
    return p @ ks @ p


def treated_inverse(eigenvalues: np.ndarray, treatment: str, floor: float) -> np.ndarray:
    """The weight 1/lam of each eigenvalue under ``treatment`` (see `TREATMENTS`)."""
    if treatment not in TREATMENTS:
        raise ValueError(f"unknown treatment {treatment!r}; expected one of {TREATMENTS}")
    if not floor >= 0:
        raise ValueError(f"floor must be >= 0, got {floor}")
    lam = np.asarray(eigenvalues, np.float64)
    magnitude = np.maximum(np.abs(lam), floor)
    with np.errstate(divide="ignore"):
        inverse = np.where(magnitude > 0, 1.0 / np.where(magnitude > 0, magnitude, 1.0), np.inf)
    if treatment == "drop_negative":
        return np.where(lam < 0, 0.0, inverse)
    if treatment == "abs":
        return inverse
    return np.where(lam < 0, -inverse, inverse)


def optical_pseudo_inverse(
    k: np.ndarray,
    treatment: str = "drop_negative",
    floor: float = DEFAULT_FLOOR_EV_PER_A2,
) -> OpticalInverse:
    """Pseudo-inverse of a Gamma-point force-constant matrix on its optical subspace.

    K is symmetrised, restricted to the orthogonal complement of the 3 uniform translations
    (exactly, by an orthonormal basis, so no eigenvalue threshold decides what is acoustic)
    and eigendecomposed there; each optical eigenvalue is inverted as ``treatment`` says.

    Args:
        k: [3N, 3N] force constants (eV/A^2), row / column ``3 * atom + direction``.
        treatment: one of `TREATMENTS`.
        floor: lower bound on ``|lam|`` before inversion (eV/A^2).

    Returns:
        `OpticalInverse`. A one-atom cell has no optical mode: ``kinv`` is the 3x3 zero.

    Raises:
        ValueError: K not square with a multiple of 3 rows, not finite, an unknown
            treatment or a negative floor.
    """
    k = np.asarray(k, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 3 or k.shape[0] == 0:
        raise ValueError(f"K must be [3N, 3N], got {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError("K has non-finite entries")
    n = k.shape[0] // 3
    q = optical_basis(n)  # [3N, 3N - 3]
    k_opt = q.T @ symmetrised(k) @ q  # [3N - 3, 3N - 3]
    lam, v = np.linalg.eigh(k_opt)  # ascending
    weights = treated_inverse(lam, treatment, floor)  # [3N - 3]
    modes = q @ v  # [3N, 3N - 3]
    kinv = (modes * weights) @ modes.T  # [3N, 3N]
    kinv = 0.5 * (kinv + kinv.T)
    return OpticalInverse(kinv, lam, lam < 0, weights, modes, treatment, float(floor))


def stacked_charges(born_charges: np.ndarray) -> np.ndarray:
    """Born charges [N, 3, 3] (field, displacement) -> Zs [3N, 3], ``Zs[3k + b, a] = Z_k[a, b]``."""
    z = np.asarray(born_charges, np.float64)
    if z.ndim != 3 or z.shape[1:] != (3, 3):
        raise ValueError(f"born_charges must be [N, 3, 3], got {z.shape}")
    return np.swapaxes(z, 1, 2).reshape(-1, 3)


def ionic_dielectric(born_charges: np.ndarray, kinv: np.ndarray, volume_A3: float) -> np.ndarray:
    """eps_ion = C / Omega * Zs^T Kinv Zs (numpy, float64 reference).

    Args:
        born_charges: [N, 3, 3] Born effective charges (e), first index the field direction.
        kinv: [3N, 3N] optical pseudo-inverse of K (A^2/eV), e.g.
            ``optical_pseudo_inverse(K).kinv_a2_per_ev``.
        volume_A3: cell volume (A^3).

    Returns:
        [3, 3] ionic dielectric tensor (dimensionless); positive semi-definite for a PSD
        ``kinv``, exactly 0 for one atom (``kinv`` = 0).
    """
    zs = stacked_charges(born_charges)  # [3N, 3]
    kinv = np.asarray(kinv, np.float64)
    if kinv.shape != (zs.shape[0], zs.shape[0]):
        raise ValueError(f"kinv must be [{zs.shape[0]}, {zs.shape[0]}], got {kinv.shape}")
    if not volume_A3 > 0:
        raise ValueError(f"volume must be positive, got {volume_A3}")
    return IONIC_PREFACTOR_EV_ANGSTROM / float(volume_A3) * (zs.T @ kinv @ zs)


def ionic_dielectric_jnp(born_charges, kinv, volume_A3):
    """`ionic_dielectric` in jax.numpy, batched over leading axes, differentiable.

    For a loss on predicted Born charges: padded atoms with zero charges (and zero rows /
    columns of ``kinv``) contribute nothing.

    Args:
        born_charges: [..., N, 3, 3] (e).
        kinv: [..., 3N, 3N] (A^2/eV), constant under differentiation in typical use.
        volume_A3: [...] cell volumes (A^3).

    Returns:
        [..., 3, 3] ionic dielectric tensors, in the dtype of the inputs.
    """
    import jax.numpy as jnp

    z = jnp.asarray(born_charges)
    zs = jnp.swapaxes(z, -1, -2).reshape((*z.shape[:-3], 3 * z.shape[-3], 3))  # [..., 3N, 3]
    eps = jnp.einsum("...ia,...ij,...jb->...ab", zs, kinv, zs)  # [..., 3, 3]
    return (IONIC_PREFACTOR_EV_ANGSTROM / jnp.asarray(volume_A3))[..., None, None] * eps
