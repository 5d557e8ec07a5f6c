"""Optical constants from the electronic (clamped-ion, high-frequency) dielectric tensor.

Below the band gap and above the phonons a transparent crystal's refractive indices are the
square roots of the principal values of eps_inf, along its principal axes (the eigenvectors,
in the Cartesian frame of the input). With n_1 <= n_2 <= n_3:

* isotropic (n_1 = n_2 = n_3, cubic crystals), uniaxial (two equal: n_o the double one,
  n_e the single one; tetragonal, trigonal, hexagonal), or biaxial (all different);
* birefringence n_3 - n_1;
* optic sign: uniaxial "+" when n_e > n_o; biaxial "+" when the acute bisectrix of the two
  optic axes is the n_3 axis, i.e. V_z < 45 deg with
  ``cos^2 V_z = n_1^2 (n_3^2 - n_2^2) / (n_2^2 (n_3^2 - n_1^2))``; the optic angle 2V is
  the acute angle between the optic axes.

Indices closer than ``rtol`` (relative) count as equal: an equivariant model gives a
symmetric crystal's degenerate values to round-off, so the default is tight.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

DEFAULT_RTOL = 1e-4


@dataclasses.dataclass(frozen=True)
class OpticalConstants:
    """Optical constants of n crystals (NaN / "" rows where eps_inf is not positive definite).

    Attributes:
        refractive_indices: [n, 3] principal refractive indices, ascending.
        principal_axes: [n, 3, 3] the axis of each index (columns), Cartesian frame.
        birefringence: [n] n_3 - n_1.
        optic_class: [n] "isotropic", "uniaxial" or "biaxial" ("" if undefined).
        optic_sign: [n] "+", "-" or "" (isotropic or undefined).
        optic_angle_deg: [n] 2V, the acute angle between the optic axes (0 for uniaxial,
            NaN for isotropic).
    """

    refractive_indices: np.ndarray  # [n, 3]
    principal_axes: np.ndarray  # [n, 3, 3]
    birefringence: np.ndarray  # [n]
    optic_class: list[str]
    optic_sign: list[str]
    optic_angle_deg: np.ndarray  # [n]

    def record(self, k: int) -> dict:
        """Crystal k as a JSON-ready dict (NaN as None)."""

        def finite(x):
            return float(x) if math.isfinite(x) else None

        return {
            "refractive_indices": [finite(x) for x in self.refractive_indices[k]],
            "principal_axes": self.principal_axes[k].T.tolist(),  # one row per index
            "birefringence": finite(self.birefringence[k]),
            "optic_class": self.optic_class[k] or None,
            "optic_sign": self.optic_sign[k] or None,
            "optic_angle_deg": finite(self.optic_angle_deg[k]),
        }


def optical_constants(electronic_tensors, rtol: float = DEFAULT_RTOL) -> OpticalConstants:
    """Refractive indices, axes, birefringence and optic sign of [n, 3, 3] eps_inf tensors."""
    eps = np.asarray(electronic_tensors, np.float64)
    if eps.ndim == 2:
        eps = eps[None]
    if eps.shape[1:] != (3, 3):
        raise ValueError(f"expected tensors of shape [n, 3, 3], got {eps.shape}")
    n_crystals = len(eps)
    sym = 0.5 * (eps + np.swapaxes(eps, 1, 2))
    indices = np.full((n_crystals, 3), np.nan)
    axes = np.full((n_crystals, 3, 3), np.nan)
    angle = np.full(n_crystals, np.nan)
    classes, signs = [""] * n_crystals, [""] * n_crystals
    for k in range(n_crystals):
        if not np.all(np.isfinite(sym[k])):
            continue
        values, vectors = np.linalg.eigh(sym[k])
        if values[0] <= 0:
            continue
        n = np.sqrt(values)
        indices[k], axes[k] = n, vectors
        same_low = n[1] - n[0] <= rtol * n[1]
        same_high = n[2] - n[1] <= rtol * n[2]
        if same_low and same_high:
            classes[k] = "isotropic"
        elif same_low or same_high:
            classes[k], angle[k] = "uniaxial", 0.0
            n_o, n_e = (n[0], n[2]) if same_low else (n[2], n[0])
            signs[k] = "+" if n_e > n_o else "-"
        else:
            classes[k] = "biaxial"
            cos2 = n[0] ** 2 * (n[2] ** 2 - n[1] ** 2) / (n[1] ** 2 * (n[2] ** 2 - n[0] ** 2))
            v_z = math.degrees(math.acos(math.sqrt(min(max(cos2, 0.0), 1.0))))
            signs[k] = "+" if v_z < 45.0 else "-"
            angle[k] = 2.0 * min(v_z, 90.0 - v_z)
    return OpticalConstants(indices, axes, indices[:, 2] - indices[:, 0], classes, signs, angle)
