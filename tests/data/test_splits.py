"""Deterministic 80/10/10 splits and the mean-predictor baseline."""

from __future__ import annotations

import numpy as np
import pytest

from dtnn_jax.data import PROJECT_SEEDS, MeanPredictor, split_indices


@pytest.mark.parametrize("seed", PROJECT_SEEDS)
def test_split_disjoint_covering_80_10_10(seed):
    train, val, test = split_indices(1056, seed)
    assert (len(train), len(val), len(test)) == (845, 106, 105)
    joined = np.concatenate([train, val, test])
    np.testing.assert_array_equal(np.sort(joined), np.arange(1056))


def test_split_deterministic_and_seed_dependent():
    a = split_indices(1056, 3)
    b = split_indices(1056, 3)
    c = split_indices(1056, 4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])


def test_split_is_documented_permutation():
    order = np.random.default_rng(7).permutation(50)
    train, val, test = split_indices(50, 7)
    np.testing.assert_array_equal(train, np.sort(order[:40]))
    np.testing.assert_array_equal(val, np.sort(order[40:45]))
    np.testing.assert_array_equal(test, np.sort(order[45:]))


def test_split_rejects_bad_input():
    with pytest.raises(ValueError):
        split_indices(2, 0)
    with pytest.raises(ValueError):
        split_indices(10, 0, (0.5, 0.5, 0.5))


def test_mean_predictor():
    tensors = np.stack([np.eye(3) * 2.0, np.eye(3) * 4.0, np.full((3, 3), 3.0)])
    model = MeanPredictor.fit(tensors)
    expected = np.array([[3.0, 1.0, 1.0], [1.0, 3.0, 1.0], [1.0, 1.0, 3.0]])
    np.testing.assert_allclose(model.mean, expected)
    pred = model.predict(4)
    assert pred.shape == (4, 3, 3)
    np.testing.assert_allclose(pred, np.broadcast_to(expected, (4, 3, 3)))
    with pytest.raises(ValueError):
        MeanPredictor.fit(np.zeros((0, 3, 3)))


@pytest.mark.parametrize("n", [1056, 37])
def test_folds_validate_on_disjoint_tenths_and_train_on_the_rest(n):
    from dtnn_jax.data import fold_indices

    vals = []
    for k in range(5):
        train, val = fold_indices(n, k, 5)
        assert len(val) == round(0.1 * n)
        assert np.intersect1d(train, val).size == 0
        np.testing.assert_array_equal(np.union1d(train, val), np.arange(n))
        vals.append(val)
    assert len(np.unique(np.concatenate(vals))) == 5 * round(0.1 * n)  # disjoint folds


def test_folds_reject_what_does_not_fit():
    from dtnn_jax.data import fold_indices

    with pytest.raises(ValueError, match="do not fit"):
        fold_indices(20, 0, 11)
    with pytest.raises(ValueError, match=r"not in 0\.\.4"):
        fold_indices(100, 5, 5)
