"""Calibrated ensemble uncertainty: the member spread scaled so that 1 sigma means 1 sigma.

An ensemble's standard deviation over members is too small (the members share their data,
encoder and architecture, so they share much of their error). Per target the calibrated
1-sigma of a component is

    sigma = std * exp(a) * (m / m_0) ** b,     m = max(|eps_poly(mean)|, m_floor)

a scale that depends on the predicted magnitude (the crystal's eps_poly; ``b = 0`` is one
scale per target). a and b are fitted on *validation* crystals only (`fit_target`): b makes
the coverage the same across the magnitude tertiles, a puts 68.3 % of the |error| / sigma of
the diagonal components within 1 and 95.4 % within 2 (least squares over both, so a
heavy-tailed error cannot be matched at both exactly). Off-diagonal components are not fitted
(where symmetry makes them zero the spread and the error are both ~0) but scaled alike.

The fit is stored in ``bundle.json`` (metadata key ``"calibration"``) and applied inside the
predictor (`dtnn_jax.inference.predictor`): ``predict(..., return_std=True)`` then returns
the calibrated sigma; `Prediction.ensemble_std` keeps the raw spread.
`experiments/calibrate.py BUNDLE_DIR` fits it for a bundle.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

METADATA_KEY = "calibration"
ONE_SIGMA, TWO_SIGMA = 0.6827, 0.9545
_DIAG = np.arange(3)


@dataclasses.dataclass(frozen=True)
class TargetCalibration:
    """sigma = std * exp(log_scale) * (max(|eps_poly|, floor) / reference) ** exponent.

    Attributes:
        log_scale: a.
        exponent: b (0: one scale for every magnitude).
        reference: m_0, the median magnitude of the fitted crystals.
        floor: m_floor, the smallest magnitude used (eps_poly near 0: a one-atom ionic).
        n_fit: diagonal components the fit used.
        coverage_fit: (within 1 sigma, within 2 sigma) on the fitted components.
        note: where the fit came from (validation set, ensemble).
    """

    log_scale: float
    exponent: float
    reference: float
    floor: float
    n_fit: int
    coverage_fit: tuple[float, float]
    note: str = ""

    def scale(self, magnitude: np.ndarray) -> np.ndarray:
        """[n] the factor on the spread of crystals with |eps_poly| ``magnitude`` [n]."""
        m = np.maximum(np.abs(np.asarray(magnitude, np.float64)), self.floor)
        return math.exp(self.log_scale) * (m / self.reference) ** self.exponent

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"coverage_fit": list(self.coverage_fit)}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per-target calibrations of a bundle (targets without one keep the raw spread)."""

    targets: dict[str, TargetCalibration]

    @classmethod
    def from_metadata(cls, metadata: dict) -> Calibration | None:
        """The bundle's calibration, or None if it has none."""
        raw = metadata.get(METADATA_KEY)
        if not raw:
            return None
        targets = {}
        for t, v in raw.get("targets", {}).items():
            targets[t] = TargetCalibration(**(v | {"coverage_fit": tuple(v["coverage_fit"])}))
        return cls(targets)

    def to_metadata(self, **provenance) -> dict:
        """The ``bundle.json`` entry (with free-form provenance: data, cost, coverage)."""
        return {"targets": {t: c.as_dict() for t, c in self.targets.items()}, **provenance}

    def apply(self, mean: dict, std: dict, poly_std: dict) -> tuple[dict, dict]:
        """Calibrated (std, eps_poly std) dicts from the raw ones (target -> [n, 3, 3], [n])."""
        std, poly_std = dict(std), dict(poly_std)
        for t, cal in self.targets.items():
            if t in std:
                factor = cal.scale(_magnitude(mean[t]))  # [n]
                std[t] = (std[t] * factor[:, None, None]).astype(std[t].dtype)
                poly_std[t] = (poly_std[t] * factor).astype(poly_std[t].dtype)
        return std, poly_std


def _magnitude(mean: np.ndarray) -> np.ndarray:
    """[n] |eps_poly| of [n, 3, 3] tensors."""
    return np.abs(np.trace(np.asarray(mean, np.float64), axis1=-2, axis2=-1) / 3.0)


def diagonal_z(mean, std, true) -> tuple[np.ndarray, np.ndarray]:
    """(|error| / std [n * 3] of the diagonal components, the crystal's magnitude [n * 3])."""
    mean, std, true = (np.asarray(x, np.float64) for x in (mean, std, true))
    err = np.abs(mean - true)[:, _DIAG, _DIAG]  # [n, 3]
    s = std[:, _DIAG, _DIAG]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, err / np.where(s > 0, s, 1.0), np.where(err > 0, np.inf, 0.0))
    return z.reshape(-1), np.repeat(_magnitude(mean), 3)


def coverage(mean, std, true) -> tuple[float, float]:
    """Fractions of the diagonal components within 1 and 2 std of the mean."""
    z, _ = diagonal_z(mean, std, true)
    return float(np.mean(z <= 1.0)), float(np.mean(z <= 2.0))


def _best_scale(u: np.ndarray) -> tuple[float, float]:
    """(c, loss): the c minimising (P(u <= c) - 0.683)^2 + (P(u <= 2c) - 0.954)^2."""
    finite = np.sort(u[np.isfinite(u)])
    if len(finite) == 0:
        return 1.0, math.inf
    candidates = np.unique(np.concatenate([finite, finite / 2.0]))
    candidates = candidates[candidates > 0]
    if len(candidates) == 0:
        return 1.0, 0.0
    n = len(u)
    within1 = np.searchsorted(finite, candidates, side="right") / n
    within2 = np.searchsorted(finite, 2.0 * candidates, side="right") / n
    loss = (within1 - ONE_SIGMA) ** 2 + (within2 - TWO_SIGMA) ** 2
    best = int(np.argmin(loss))
    return float(candidates[best]), float(loss[best])


def fit_target(
    mean: np.ndarray,
    std: np.ndarray,
    true: np.ndarray,
    indices: np.ndarray,
    exponents: np.ndarray | None = None,
    note: str = "",
) -> TargetCalibration:
    """Fits a target's calibration on the crystals ``indices`` of the arrays only.

    Args:
        mean, std, true: [n, 3, 3] held-out ensemble mean, ensemble std and label of each
            crystal; rows outside ``indices`` are never read (pass NaN there).
        indices: [k] the validation crystals.
        exponents: the grid of b (default -1 .. 1.5 in steps of 0.1; [0.0]: one scale).
        note: provenance stored with the fit.
    """
    idx = np.asarray(indices, np.int64)
    if len(idx) == 0:
        raise ValueError("no validation crystals to fit the calibration on")
    z, m = diagonal_z(mean[idx], std[idx], true[idx])
    ok = np.isfinite(z) & np.isfinite(m)
    z, m = z[ok], m[ok]
    floor = max(1e-2, 0.05 * float(np.median(m)))
    m = np.maximum(m, floor)
    reference = float(np.median(m))
    tertiles = np.quantile(m, [1 / 3, 2 / 3])
    bins = np.digitize(m, tertiles)
    grid = np.round(np.arange(-1.0, 1.51, 0.1), 6) if exponents is None else exponents
    best = None
    for b in grid:
        u = z / (m / reference) ** b
        c, loss = _best_scale(u)
        # b: the same coverage in every magnitude tertile (a small pull towards b = 0)
        spread = 0.0
        for k in range(3):
            uk = u[bins == k]
            if len(uk):
                spread += (np.mean(uk <= c) - ONE_SIGMA) ** 2 + (
                    np.mean(uk <= 2 * c) - TWO_SIGMA
                ) ** 2
        total = loss + spread / 3.0 + 1e-4 * abs(b)
        if best is None or total < best[0]:
            best = (total, float(b), c, u)
    _, b, c, u = best
    return TargetCalibration(
        log_scale=math.log(c),
        exponent=b,
        reference=reference,
        floor=floor,
        n_fit=len(z),
        coverage_fit=(float(np.mean(u <= c)), float(np.mean(u <= 2 * c))),
        note=note,
    )


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Each crystal's ensemble over the members that never trained on it.

    Attributes:
        mean: [n, 3, 3] mean over the held-out members (NaN where fewer than 2).
        std: [n, 3, 3] their spread, rescaled to the full ensemble's size (population std of
            h members -> of M: x sqrt(h / (h - 1) * (M - 1) / M)).
        n_held_out: [n] how many members never trained on the crystal.
        fit: the crystals every held-out member validated on (>= 2 of them): the fit's.
        test: the crystals every held-out member kept for test (>= 2): the check's.
    """

    mean: np.ndarray
    std: np.ndarray
    n_held_out: np.ndarray
    fit: np.ndarray
    test: np.ndarray


def held_out_ensembles(members: np.ndarray, splits: list[tuple], min_members: int = 2) -> HeldOut:
    """Held-out sub-ensembles of an ensemble whose members trained on different crystals.

    Args:
        members: [n, M, 3, 3] every member's prediction for every crystal.
        splits: per member (train, validation, test) index arrays (test may be empty).
        min_members: the fewest held-out members that make a spread.
    """
    members = np.asarray(members, np.float64)
    n, m_total = members.shape[:2]
    role = np.zeros((n, m_total), np.int8)  # 0 train, 1 validation, 2 test, 3 unused
    role[:] = 3
    for j, (train, val, test) in enumerate(splits):
        role[np.asarray(test, np.int64), j] = 2
        role[np.asarray(val, np.int64), j] = 1
        role[np.asarray(train, np.int64), j] = 0
    held = role != 0  # [n, M]
    h = held.sum(1)
    mean = np.full((n, 3, 3), np.nan)
    std = np.full((n, 3, 3), np.nan)
    for i in np.flatnonzero(h >= min_members):
        x = members[i, held[i]]  # [h, 3, 3]
        mean[i] = x.mean(0)
        std[i] = x.std(0) * math.sqrt(h[i] / (h[i] - 1) * (m_total - 1) / m_total)
    enough = h >= min_members
    fit = np.flatnonzero(enough & np.all(np.where(held, role == 1, True), axis=1))
    test = np.flatnonzero(enough & np.all(np.where(held, role == 2, True), axis=1))
    return HeldOut(mean, std, h, fit, test)
