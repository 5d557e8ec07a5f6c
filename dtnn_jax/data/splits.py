"""Deterministic train/validation/test splits and the mean-predictor baseline."""

from __future__ import annotations

import dataclasses

import numpy as np

PROJECT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""Split seeds used for the project's reported mean +- std over 5 splits."""


def split_indices(
    n: int, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(n)`` into train, validation and test index arrays.

    The permutation is ``np.random.default_rng(seed).permutation(n)``; the first
    ``round(0.8 n)`` indices are train, the next ``round(0.1 n)`` validation, the rest test.
    Each part is returned sorted. Same ``(n, seed)`` -> same split on every platform.

    Args:
        n: number of records.
        seed: split seed (the project uses 0..4).
        fractions: train, validation, test fractions summing to 1.

    Returns:
        (train [n_train], val [n_val], test [n_test]) int64 arrays.
    """
    if n < 3:
        raise ValueError(f"need at least 3 records to split, got {n}")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be 3 positive numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    train, val, test = np.split(order, [n_train, n_train + n_val])
    return np.sort(train), np.sort(val), np.sort(test)


def fold_indices(
    n: int, fold: int, n_folds: int, seed: int = 0, val_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices of fold ``fold`` of ``n_folds`` (no test split).

    For a model that is to learn from every labelled crystal (the shipped ensemble): one
    permutation (``np.random.default_rng(seed)``) is cut into disjoint validation blocks of
    ``round(val_fraction n)`` crystals; fold k validates (early stopping) on block k and
    trains on the rest. With 5 folds of 10 % each crystal is in the training set of at least
    4 members and no crystal is left unused.

    Returns:
        (train [n - n_val], val [n_val]) sorted int64 arrays.
    """
    n_val = round(val_fraction * n)
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} not in 0..{n_folds - 1}")
    if n_val < 1 or n_folds * n_val > n:
        raise ValueError(
            f"{n_folds} disjoint validation folds of {val_fraction:.0%} do not fit in {n} records"
        )
    order = np.random.default_rng(seed).permutation(n)
    val = order[fold * n_val : (fold + 1) * n_val]
    train = np.setdiff1d(order, val)
    return np.sort(train), np.sort(val)


@dataclasses.dataclass(frozen=True)
class MeanPredictor:
    """Baseline that predicts the mean training tensor for every crystal.

    Attributes:
        mean: the mean training tensor, [3, 3].
    """

    mean: np.ndarray  # [3, 3]

    @classmethod
    def fit(cls, tensors) -> MeanPredictor:
        """Fit on training tensors [n, 3, 3]."""
        tensors = np.asarray(tensors, dtype=np.float64)
        if tensors.ndim != 3 or tensors.shape[1:] != (3, 3) or len(tensors) == 0:
            raise ValueError(f"expected [n, 3, 3] tensors with n > 0, got {tensors.shape}")
        return cls(tensors.mean(axis=0))

    def predict(self, n: int) -> np.ndarray:  # [n, 3, 3]
        """The mean tensor repeated ``n`` times."""
        return np.broadcast_to(self.mean, (n, 3, 3)).copy()
