"""Metrics of DESIGN section 5 on hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from dtnn_jax.metrics import (
    all_metrics,
    eps_poly,
    mae_diag,
    mae_mean_diag,
    mae_offdiag,
    mae_tensor,
    mae_tensor_by_crystal_system,
)
from dtnn_jax.properties import refractive_index


@pytest.fixture
def pair():
    # Crystal 1: diagonal error (+1, -2, +3), no off-diagonal error.
    # Crystal 2: off-diagonal xy/yx error 0.6 each, diagonal exact.
    true = np.stack([np.diag([2.0, 3.0, 4.0]), np.eye(3) * 5.0])
    pred = np.stack([np.diag([3.0, 1.0, 7.0]), np.eye(3) * 5.0])
    pred[1, 0, 1] = pred[1, 1, 0] = 0.6
    return pred, true


def test_mae_tensor(pair):
    # crystal 1: (1+2+3)/9 = 2/3; crystal 2: 1.2/9 = 2/15; mean = (2/3 + 2/15)/2 = 0.4
    assert mae_tensor(*pair) == pytest.approx(0.4)


def test_mae_mean_diag(pair):
    # crystal 1: tr error (1 - 2 + 3)/3 = 2/3; crystal 2: 0 -> mean 1/3
    assert mae_mean_diag(*pair) == pytest.approx(1.0 / 3.0)


def test_mae_diag(pair):
    # crystal 1: (1+2+3)/3 = 2; crystal 2: 0 -> mean 1
    assert mae_diag(*pair) == pytest.approx(1.0)


def test_mae_offdiag(pair):
    # crystal 1: 0; crystal 2: 1.2/6 = 0.2 -> mean 0.1
    assert mae_offdiag(*pair) == pytest.approx(0.1)


def test_all_metrics_and_components_consistent(pair, rng):
    assert all_metrics(*pair) == {
        "mae_tensor": mae_tensor(*pair),
        "mae_mean_diag": mae_mean_diag(*pair),
        "mae_diag": mae_diag(*pair),
        "mae_offdiag": mae_offdiag(*pair),
    }
    # 9 * MAE_tensor = 3 * MAE_diag + 6 * MAE_offdiag for any data.
    p, t = rng.normal(size=(2, 5, 3, 3))
    assert 9 * mae_tensor(p, t) == pytest.approx(3 * mae_diag(p, t) + 6 * mae_offdiag(p, t))


def test_eps_poly_and_refractive_index():
    tensors = np.stack([np.diag([1.0, 4.0, 7.0]), np.eye(3) * 9.0])
    np.testing.assert_allclose(eps_poly(tensors), [4.0, 9.0])
    np.testing.assert_allclose(refractive_index(tensors), [2.0, 3.0])
    with pytest.raises(ValueError):
        refractive_index(-np.eye(3))


def test_by_crystal_system(pair):
    pred, true = pair
    pred3 = np.concatenate([pred, pred[:1]])
    true3 = np.concatenate([true, true[:1]])
    out = mae_tensor_by_crystal_system(pred3, true3, ["cubic", "hexagonal", "cubic"])
    assert out["cubic"] == (pytest.approx(2.0 / 3.0), 2)
    assert out["hexagonal"] == (pytest.approx(2.0 / 15.0), 1)


def test_shape_errors():
    with pytest.raises(ValueError):
        mae_tensor(np.zeros((2, 3, 3)), np.zeros((3, 3, 3)))
    with pytest.raises(ValueError):
        mae_tensor_by_crystal_system(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), ["cubic"])
