"""Error metrics for 3x3 dielectric tensors (DESIGN section 5).

All functions take true tensors ``E`` and predictions ``P`` of shape [n, 3, 3] and return
a float (mean over crystals). Inputs are NumPy or JAX arrays; results are Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_OFFDIAG = ~np.eye(3, dtype=bool)  # [3, 3]


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)  # [n, 3, 3]
    true = np.asarray(true, dtype=np.float64)  # [n, 3, 3]
    if pred.shape != true.shape or pred.shape[-2:] != (3, 3) or pred.ndim != 3:
        raise ValueError(f"expected matching [n, 3, 3] arrays, got {pred.shape} and {true.shape}")
    return pred, true


def mae_tensor(pred, true) -> float:
    """Mean over crystals of the mean over the 9 components of |P - E|."""
    pred, true = _pair(pred, true)
    return float(np.mean(np.abs(pred - true)))


def mae_mean_diag(pred, true) -> float:
    """Mean of |tr(P)/3 - tr(E)/3|: the error of the polycrystalline average eps_poly."""
    pred, true = _pair(pred, true)
    return float(np.mean(np.abs(eps_poly(pred) - eps_poly(true))))


def mae_diag(pred, true) -> float:
    """Mean over crystals and the 3 diagonal components of |P - E|."""
    pred, true = _pair(pred, true)
    return float(np.mean(np.abs(np.diagonal(pred - true, axis1=-2, axis2=-1))))


def mae_offdiag(pred, true) -> float:
    """Mean over crystals and the 6 off-diagonal components of |P - E|."""
    pred, true = _pair(pred, true)
    return float(np.mean(np.abs((pred - true)[:, _OFFDIAG])))


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


def all_metrics(pred, true) -> dict[str, float]:
    """The four DESIGN section 5 metrics as a dict."""
    return {
        "mae_tensor": mae_tensor(pred, true),
        "mae_mean_diag": mae_mean_diag(pred, true),
        "mae_diag": mae_diag(pred, true),
        "mae_offdiag": mae_offdiag(pred, true),
    }


def mae_tensor_by_crystal_system(
    pred, true, crystal_systems: Sequence[str]
) -> dict[str, tuple[float, int]]:
    """MAE_tensor per crystal system.

    Args:
        pred: predictions [n, 3, 3].
        true: true tensors [n, 3, 3].
        crystal_systems: crystal system name of each crystal, [n].

    Returns:
        ``{system: (mae_tensor, count)}`` for the systems present, in first-seen order.
    """
    pred, true = _pair(pred, true)
    systems = np.asarray(crystal_systems)
    if systems.shape != (len(pred),):
        raise ValueError(f"{systems.shape[0]} crystal systems for {len(pred)} tensors")
    out: dict[str, tuple[float, int]] = {}
    for name in dict.fromkeys(systems.tolist()):
        mask = systems == name
        out[name] = (mae_tensor(pred[mask], true[mask]), int(mask.sum()))
    return out
