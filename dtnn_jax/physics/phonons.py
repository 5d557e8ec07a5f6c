"""Gamma-point phonons from force constants: frequencies, IR activity, mode contributions.

The dynamical matrix at Gamma is ``D = M^-1/2 K M^-1/2`` (eV / (A^2 amu)), K first
symmetrised and projected onto the acoustic sum rule (`dtnn_jax.physics.dielectric.
project_translations`). Its 3 acoustic modes are the mass-weighted uniform translations
``e ~ sqrt(m_k)``, taken out exactly (an orthonormal basis of their complement), so no
threshold decides what is acoustic; the 3N - 3 optical modes are the eigenvectors of D on
that complement.

Sign convention: ``frequency_cm1 = sign(w2) * sqrt(|w2|) * CM1_PER_SQRT_EV_PER_A2_AMU``, so a
negative frequency is an imaginary one (an unstable mode, ``w2 < 0``).

Given Born charges Z [N, 3, 3] (first index the field direction), the ASR is imposed on them
(the mean over atoms subtracted, what the translation projection of `optical_pseudo_inverse`
does implicitly) and each mode m gets the mode effective charge
``Zm[a] = sum_{k, b} Z_k[a, b] e_m[3k + b] / sqrt(m_k)`` (e / sqrt(amu)), the IR activity
``|Zm|^2`` (e^2 / amu) and, with the cell volume, its contribution to the ionic dielectric
tensor ``eps_m = C / Omega * Zm Zm^T * g(w2_m)`` with ``g`` the treated inverse of w2
(`TREATMENTS`, a floor on |frequency| in cm^-1). They sum to
``ionic_dielectric(Z, phonons.kinv_a2_per_ev, Omega)`` for every treatment.

Masses cancel from the total only when no treatment acts (all optical modes positive and
above the floors): then ``phonons.kinv_a2_per_ev`` equals
``optical_pseudo_inverse(K).kinv_a2_per_ev``; with ``treatment="signed"`` and zero floors
they agree with negative modes too (both are generalised inverses of the projected K). With
negative modes, ``"drop_negative"`` on phonons drops the imaginary *phonon* modes, on K the
negative eigenvectors of K: different subspaces, so different tensors.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from dtnn_jax.physics.dielectric import (
    IONIC_PREFACTOR_EV_ANGSTROM,
    optical_basis,
    project_translations,
    stacked_charges,
    translation_basis,
    treated_inverse,
)

_EV_J = 1.602176634e-19
_AMU_KG = 1.66053906660e-27
_ANGSTROM_M = 1e-10
_C_CM_PER_S = 2.99792458e10

CM1_PER_SQRT_EV_PER_A2_AMU = math.sqrt(_EV_J / _AMU_KG) / _ANGSTROM_M / (2 * math.pi * _C_CM_PER_S)
"""Wavenumber (cm^-1) of an angular frequency of sqrt(1 eV / (A^2 amu)): 521.47."""

DEFAULT_FLOOR_CM1 = 5.0
"""Default floor on |frequency| before inverting w2 (cm^-1)."""


@dataclasses.dataclass(frozen=True, repr=False)
class GammaPhonons:
    """Phonon modes at Gamma; mode index 0..2 are the acoustic modes, then the optical ones
    ascending in w2 (imaginary modes first).

    Attributes:
        frequencies_cm1: [3N] (negative: imaginary; acoustic modes exactly 0).
        eigenvalues_ev_per_a2_amu: [3N] w2, the eigenvalues of D (acoustic: 0).
        eigenvectors: [3N, 3N] orthonormal eigenvectors of D (columns; mass-weighted, row
            ``3k + b`` is atom k, direction b). The Cartesian displacement pattern of mode m
            is ``eigenvectors[:, m] / sqrt(m_k)``.
        acoustic: [3N] bool.
        masses_amu: [N].
        mode_charges_e_per_sqrt_amu: [3N, 3] Zm (None without Born charges; acoustic: 0).
        ir_activity_e2_per_amu: [3N] |Zm|^2 (None without Born charges).
        weights_a2_amu_per_ev: [3N] g(w2) each mode enters with (acoustic and dropped: 0).
        contributions: [3N, 3, 3] each mode's part of eps_ion (None without Born charges
            and volume).
        kinv_a2_per_ev: [3N, 3N] the pseudo-inverse of K these modes make (masses in),
            projected onto the ASR: ``ionic_dielectric(Z, kinv, Omega) == contributions.sum(0)``.
        treatment, floor_cm1: the inversion used.
    """

    frequencies_cm1: np.ndarray
    eigenvalues_ev_per_a2_amu: np.ndarray
    eigenvectors: np.ndarray
    acoustic: np.ndarray
    masses_amu: np.ndarray
    mode_charges_e_per_sqrt_amu: np.ndarray | None
    ir_activity_e2_per_amu: np.ndarray | None
    weights_a2_amu_per_ev: np.ndarray
    contributions: np.ndarray | None
    kinv_a2_per_ev: np.ndarray
    treatment: str
    floor_cm1: float

    def __repr__(self) -> str:
        n_imag = int(np.count_nonzero(self.frequencies_cm1 < 0))
        return f"GammaPhonons({len(self.frequencies_cm1)} modes, {n_imag} imaginary)"

    @property
    def imaginary(self) -> np.ndarray:
        """[3N] bool: optical modes with w2 < 0."""
        return (self.eigenvalues_ev_per_a2_amu < 0) & ~self.acoustic

    @property
    def ionic_dielectric(self) -> np.ndarray | None:
        """[3, 3] sum of the mode contributions (None without Born charges and volume)."""
        return None if self.contributions is None else self.contributions.sum(axis=0)


class _Spectrum(NamedTuple):
    w2: np.ndarray  # [3N]
    vectors: np.ndarray  # [3N, 3N]
    acoustic: np.ndarray  # [3N] bool


def _spectrum(k: np.ndarray, masses: np.ndarray) -> _Spectrum:
    n = masses.shape[0]
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)  # [3N]
    d = inv_sqrt_m[:, None] * project_translations(k) * inv_sqrt_m[None, :]  # [3N, 3N]
    q = optical_basis(n, weights=np.sqrt(masses))  # [3N, 3N - 3]
    w2, v = np.linalg.eigh(q.T @ d @ q)
    acoustic_vectors = translation_basis(n) * np.repeat(np.sqrt(masses), 3)[:, None]
    acoustic_vectors /= np.linalg.norm(acoustic_vectors, axis=0)  # [3N, 3]
    vectors = np.concatenate([acoustic_vectors, q @ v], axis=1)  # [3N, 3N]
    acoustic = np.arange(3 * n) < 3
    return _Spectrum(np.concatenate([np.zeros(3), w2]), vectors, acoustic)


def gamma_phonons(
    k: np.ndarray,
    masses_amu: np.ndarray,
    born_charges: np.ndarray | None = None,
    volume_A3: float | None = None,
    treatment: str = "drop_negative",
    floor_cm1: float = DEFAULT_FLOOR_CM1,
) -> GammaPhonons:
    """Gamma-point frequencies, eigenvectors and (given Z) IR activity and eps_ion per mode.

    Args:
        k: [3N, 3N] force constants (eV/A^2), row / column ``3 * atom + direction``.
        masses_amu: [N] atomic masses (amu), e.g. ``[site.specie.atomic_mass for site in s]``.
        born_charges: [N, 3, 3] Born effective charges (e), first index the field direction.
        volume_A3: cell volume (A^3), for the mode contributions to eps_ion.
        treatment: inversion of w2 for the contributions (`dtnn_jax.physics.TREATMENTS`).
        floor_cm1: floor on |frequency| before inversion (cm^-1).

    Returns:
        `GammaPhonons` (see its attributes and the module docstring).
    """
    k = np.asarray(k, np.float64)
    masses = np.asarray(masses_amu, np.float64).reshape(-1)
    n = masses.shape[0]
    if k.shape != (3 * n, 3 * n):
        raise ValueError(f"K must be [{3 * n}, {3 * n}] for {n} masses, got {k.shape}")
    if not np.all(masses > 0):
        raise ValueError("masses must be positive")
    spectrum = _spectrum(k, masses)
    w2 = spectrum.w2
    frequencies = np.sign(w2) * np.sqrt(np.abs(w2)) * CM1_PER_SQRT_EV_PER_A2_AMU
    frequencies[spectrum.acoustic] = 0.0
    floor_w2 = (float(floor_cm1) / CM1_PER_SQRT_EV_PER_A2_AMU) ** 2
    weights = np.where(spectrum.acoustic, 0.0, treated_inverse(w2, treatment, floor_w2))
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)  # [3N]
    displacements = inv_sqrt_m[:, None] * spectrum.vectors  # [3N, 3N]
    t = translation_basis(n)
    p = np.eye(3 * n) - t @ t.T  # the ASR projection
    optical = displacements[:, ~spectrum.acoustic]  # [3N, 3N - 3]
    kinv = p @ ((optical * weights[~spectrum.acoustic]) @ optical.T) @ p  # [3N, 3N]
    charges = activity = contributions = None
    if born_charges is not None:
        zs = p @ stacked_charges(born_charges)  # [3N, 3], ASR imposed
        if zs.shape[0] != 3 * n:
            raise ValueError(f"born_charges must be [{n}, 3, 3], got {np.shape(born_charges)}")
        charges = displacements.T @ zs  # [3N, 3]
        charges[spectrum.acoustic] = 0.0
        activity = np.sum(charges**2, axis=1)  # [3N]
        if volume_A3 is not None:
            if not volume_A3 > 0:
                raise ValueError(f"volume must be positive, got {volume_A3}")
            outer = charges[:, :, None] * charges[:, None, :]  # [3N, 3, 3]
            contributions = IONIC_PREFACTOR_EV_ANGSTROM / float(volume_A3) * outer
            contributions = contributions * weights[:, None, None]
    return GammaPhonons(
        frequencies_cm1=frequencies,
        eigenvalues_ev_per_a2_amu=w2,
        eigenvectors=spectrum.vectors,
        acoustic=spectrum.acoustic,
        masses_amu=masses,
        mode_charges_e_per_sqrt_amu=charges,
        ir_activity_e2_per_amu=activity,
        weights_a2_amu_per_ev=weights,
        contributions=contributions,
        kinv_a2_per_ev=0.5 * (kinv + kinv.T),
        treatment=treatment,
        floor_cm1=float(floor_cm1),
    )
