"""Scalar properties of dielectric tensors, in one place.

eps_poly = tr(eps) / 3 (the polycrystalline average, equal to the mean eigenvalue), the
principal permittivities (eigenvalues), the anisotropy ratio lambda_max / lambda_min, the
refractive index sqrt(eps_poly) of an electronic tensor and the screening figure of merit
FOM = band gap x eps_poly. Used by the metrics, `dtnn predict`, `dtnn screen` and the
benchmarks alike.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def eps_poly(tensors) -> np.ndarray:
    """Polycrystalline average tr(T)/3 of [..., 3, 3] tensors -> [...]."""
    tensors = np.asarray(tensors, dtype=np.float64)
    return np.trace(tensors, axis1=-2, axis2=-1) / 3.0


def refractive_index(electronic_tensors) -> np.ndarray:
    """Polycrystalline refractive index n = sqrt(eps_poly) of electronic tensors [..., 3, 3].

    Raises:
        ValueError: if some eps_poly is negative (unphysical for an electronic tensor).
    """
    poly = eps_poly(electronic_tensors)
    if np.any(poly < 0):
        raise ValueError("negative eps_poly: refractive index undefined")
    return np.sqrt(poly)


def figure_of_merit(band_gap_ev, eps_poly_values) -> np.ndarray:
    """FOM = band gap (eV) x eps_poly, the paper's screening score (NaN where unknown)."""
    return np.asarray(band_gap_ev, np.float64) * np.asarray(eps_poly_values, np.float64)


ANISOTROPY_MIN_EIGENVALUE = 0.05
"""Smallest principal permittivity for which lambda_max / lambda_min is reported. Below it the
ratio is noise: the ionic tensor of a crystal without IR-active modes (Si) or of a molecule
in a box is ~0, and its ratio of two near-zero eigenvalues swings between runs (1.03 to
2.15 for Si, 4.4e31 for water in a box). Electronic and total tensors are >= 1."""


@dataclasses.dataclass(frozen=True)
class TensorProperties:
    """Scalar properties of n dielectric tensors (NaN rows stay NaN).

    Attributes:
        eigenvalues: [n, 3] principal permittivities, ascending.
        eps_poly: [n] polycrystalline average tr(eps) / 3 (= mean eigenvalue).
        anisotropy: [n] lambda_max / lambda_min; NaN (n/a) where lambda_min <
            `ANISOTROPY_MIN_EIGENVALUE` (a ~0 tensor, or an unphysical negative one).
        refractive_index: [n] sqrt(eps_poly), meaningful for the electronic tensor only;
            NaN where eps_poly < 0.
    """

    eigenvalues: np.ndarray  # [n, 3]
    eps_poly: np.ndarray  # [n]
    anisotropy: np.ndarray  # [n]
    refractive_index: np.ndarray  # [n]


def tensor_properties(eps) -> TensorProperties:
    """Eigenvalues, eps_poly, anisotropy ratio and refractive index of [n, 3, 3] tensors.

    The tensor is symmetrised first ((T + T^T) / 2), as a dielectric tensor is symmetric.
    """
    eps = np.asarray(eps, np.float64)
    if eps.ndim != 3 or eps.shape[1:] != (3, 3):
        raise ValueError(f"expected tensors of shape [n, 3, 3], got {eps.shape}")
    sym = 0.5 * (eps + np.swapaxes(eps, 1, 2))  # [n, 3, 3]
    finite = np.all(np.isfinite(sym), axis=(1, 2))  # [n]
    eigenvalues = np.full((len(eps), 3), np.nan)  # [n, 3]
    if finite.any():
        eigenvalues[finite] = np.linalg.eigvalsh(sym[finite])
    poly = eps_poly(sym)  # [n]
    lam_min, lam_max = eigenvalues[:, 0], eigenvalues[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        defined = lam_min >= ANISOTROPY_MIN_EIGENVALUE
        anisotropy = np.where(defined, lam_max / np.where(defined, lam_min, 1.0), np.nan)
        refractive = np.where(poly >= 0, np.sqrt(np.abs(poly)), np.nan)
    return TensorProperties(eigenvalues, poly, anisotropy, refractive)
