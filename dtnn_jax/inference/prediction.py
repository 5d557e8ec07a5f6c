"""What `DielectricModel.predict_detailed` returns: tensors, spreads, errors, Born charges, K."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Predicted tensors for n crystals; rows of failed inputs are NaN.

    Attributes:
        mean: target -> [n, 3, 3] ensemble-mean tensor.
        std: target -> [n, 3, 3] ensemble standard deviation per component (population
            std over members; 0 for a single-member ensemble); the calibrated 1-sigma when
            the bundle carries a calibration (`dtnn_jax.inference.calibration`).
        eps_poly_std: target -> [n] ensemble standard deviation of eps_poly = tr/3.
        errors: [n] None, or the reason the input could not be predicted.
        sources: [n] a name for each crystal (file path or ``#index (formula)``).
        ids: [n] the row id of each crystal (file stem, ``file#k``, material id or
            ``#index``).
        warnings: [n] None, or why a prediction may not mean what it seems (e.g. a slab).
        born_charges: [n] with a physics ionic model: each crystal's ensemble-mean Born
            effective charges [n_atoms, 3, 3] (e; first index the field direction; the
            acoustic sum rule holds), None for failed inputs; empty otherwise.
        force_constants: [n] with a physics ionic model: each crystal's
            `dtnn_jax.physics.force_constants.ForceConstants` (K at the given geometry,
            residual forces), None for failed inputs; empty otherwise.
    """

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    eps_poly_std: dict[str, np.ndarray]
    errors: list[str | None]
    sources: list[str]
    ids: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str | None] = dataclasses.field(default_factory=list)
    born_charges: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    force_constants: list[Any] = dataclasses.field(default_factory=list)
    # [n] with a physics ionic model: each member's Born charges [n_members, n_atoms, 3, 3]
    # (what `dtnn_jax.spectra` averages the mode strengths over), None for failed inputs
    born_charge_members: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    # target -> [n, n_members, 3, 3] the raw ensemble std and every member's tensor (NaN rows
    # for failed inputs): what `dtnn_jax.inference.calibration` fits on
    ensemble_std: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    members: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """[n] bool, True where the prediction succeeded."""
        return np.array([e is None for e in self.errors])


def ensemble_statistics(
    members: dict[str, list], targets, n: int, good: list[int]
) -> tuple[dict, dict, dict, dict]:
    """(mean, std, eps_poly std, every member) per target: [n, 3, 3], [n, 3, 3], [n],
    [n, n_members, 3, 3]; NaN rows for the crystals not in ``good``.

    Args:
        members: target -> per good crystal [n_members, 3, 3] eps of every member.
        targets: the targets to summarise.
        n: crystals in all.
        good: the rows of the good crystals.
    """
    mean = {t: np.full((n, 3, 3), np.nan, np.float32) for t in targets}
    std = {t: np.full((n, 3, 3), np.nan, np.float32) for t in targets}
    poly_std = {t: np.full(n, np.nan, np.float32) for t in targets}
    size = {t: len(members[t][0]) if good else 0 for t in targets}
    every = {t: np.full((n, size[t], 3, 3), np.nan) for t in targets}
    for t in targets:
        for k, row in enumerate(good):
            eps = np.asarray(members[t][k], np.float64)  # [n_members, 3, 3]
            every[t][row] = eps
            mean[t][row] = eps.mean(0)
            std[t][row] = eps.std(0)
            poly_std[t][row] = (np.trace(eps, axis1=-2, axis2=-1) / 3.0).std()
    return mean, std, poly_std, every
