"""Error metrics for 3x3 dielectric tensors (DESIGN section 5) and for rankings.

The tensor metrics take true tensors ``E`` and predictions ``P`` of shape [n, 3, 3] and
return a float (mean over crystals). The ranking metrics (`recall_at_top_fraction`,
`spearman`) score a predicted ranking of crystals against the true one, as a screen would
use it. Inputs are NumPy or JAX arrays; results are Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats

from dtnn_jax.properties import eps_poly

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


def rank_order(scores) -> np.ndarray:
    """Indices sorting ``scores`` [n] from best (largest) to worst; NaN last, ties stable."""
    scores = np.asarray(scores, np.float64)
    key = np.where(np.isnan(scores), np.inf, -scores)
    return np.argsort(key, kind="stable")


def top_k_size(n: int, fraction: float) -> int:
    """Number of crystals in the top ``fraction`` of ``n`` (at least 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * n))


def recall_at_top_fraction(true_scores, predicted_scores, fraction: float = 0.1) -> float:
    """Share of the truly best ``fraction`` of crystals found in the predicted best ``fraction``.

    Both sets have k = round(fraction * n) members, so this is also the precision. A random
    ranking scores ``fraction`` in expectation; the perfect one scores 1.
    """
    true_scores = np.asarray(true_scores, np.float64)
    predicted_scores = np.asarray(predicted_scores, np.float64)
    if true_scores.shape != predicted_scores.shape or true_scores.ndim != 1:
        raise ValueError(
            f"expected two [n] score arrays, got {true_scores.shape} and {predicted_scores.shape}"
        )
    k = top_k_size(len(true_scores), fraction)
    true_top = set(rank_order(true_scores)[:k].tolist())
    predicted_top = set(rank_order(predicted_scores)[:k].tolist())
    return len(true_top & predicted_top) / k


def spearman(x, y) -> float:
    """Spearman rank correlation of two [n] arrays (average ranks for ties).

    Returns NaN when either array is constant (the correlation is undefined).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"expected two [n] arrays with n >= 2, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("spearman: non-finite values")
    if np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(scipy.stats.spearmanr(x, y).statistic)
