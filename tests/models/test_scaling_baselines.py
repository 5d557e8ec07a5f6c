"""Target scaling and the ridge baseline."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtnn_jax.config import ReadoutConfig
from dtnn_jax.models.baselines import RidgeIsotropicBaseline, invariant_descriptor
from dtnn_jax.models.scaling import TargetScaler


def random_tensors(rng, n):
    a = rng.normal(size=(n, 3, 3))
    return 5.0 + np.einsum("nij,nkj->nik", a, a)  # symmetric positive definite


def test_standardize_round_trip_and_meaning(rng):
    eps = random_tensors(rng, 50)
    scaler = TargetScaler.fit(eps, "standardize")
    assert scaler.offset == pytest.approx(np.mean(np.trace(eps, axis1=1, axis2=2)) / 3)
    np.testing.assert_allclose(scaler.to_eps(scaler.from_eps(eps)), eps, rtol=1e-6)
    # The isotropic mean predictor (y = 0) has normalised L1 per component exactly 1.
    assert np.mean(np.abs(scaler.from_eps(eps))) == pytest.approx(1.0)


def test_matrix_exp_scaler_round_trip(rng):
    eps = random_tensors(rng, 20)
    scaler = TargetScaler.fit(eps, "standardize", "matrix_exp")
    y = scaler.from_eps(eps)
    np.testing.assert_allclose(y, np.swapaxes(y, 1, 2), atol=1e-12)
    np.testing.assert_allclose(scaler.to_eps(y.astype(np.float32)), eps, rtol=2e-5)
    # the affine inverse would be a different (wrong) network output here
    affine = TargetScaler.create(scaler.offset, scaler.scale, "affine")
    assert np.abs(affine.from_eps(eps) - y).max() > 0.1


def test_scaling_commutes_with_rotation(rng):
    eps = random_tensors(rng, 10)
    scaler = TargetScaler.fit(eps, "standardize")
    rot = np.asarray(e3nn.rand_matrix(jax.random.key(0), ()), np.float64)
    y = np.asarray(scaler.from_eps(eps))
    rotated = np.asarray(scaler.to_eps(rot @ y @ rot.T))
    np.testing.assert_allclose(rotated, rot @ eps @ rot.T, atol=1e-5)  # jnp float32


def test_none_is_identity_and_bad_method_fails(rng):
    eps = random_tensors(rng, 4)
    np.testing.assert_allclose(TargetScaler.fit(eps, "none").to_eps(eps), eps, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown target scaling"):
        TargetScaler.fit(eps, "log")
    with pytest.raises(ValueError):
        TargetScaler.create(offset=1.0, scale=0.0)


def test_invariant_descriptor_is_rotation_invariant(key):
    irreps = "3x0e+2x1e+2x2e"
    x = e3nn.normal(irreps, key, (4,))
    rot = e3nn.rand_matrix(key, ())
    d = invariant_descriptor(np.asarray(x.array), irreps)
    d_rot = invariant_descriptor(np.asarray(x.transform_by_matrix(rot).array), irreps)
    assert d.shape == (3 + 2 + 2,)
    np.testing.assert_allclose(d_rot, d, rtol=1e-5)


def test_ridge_recovers_linear_isotropic_target(rng):
    x = rng.normal(size=(80, 6))
    w = rng.normal(size=6)
    poly = 10.0 + x @ w
    eps = poly[:, None, None] * np.eye(3)
    model = RidgeIsotropicBaseline.fit(x[:60], eps[:60], x[60:], eps[60:])
    pred = model.predict(x[60:])
    assert model.alpha <= 1e-1  # noiseless: weak regularisation wins on validation
    np.testing.assert_allclose(pred, eps[60:], atol=1e-2)
    # and it is isotropic by construction
    np.testing.assert_array_equal(pred[:, 0, 1], 0.0)


@pytest.mark.parametrize("output_map", ["affine", "matrix_exp"])
def test_output_maps_are_equivariant_and_centred(output_map):
    from dtnn_jax.models.scaling import MAX_LOG_EPS_NORM, soft_clamp_norm, to_eps

    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 3, 3)).astype(np.float32)
    y = 0.5 * (a + np.swapaxes(a, 1, 2))  # [4, 3, 3] symmetric
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q.astype(np.float32)
    eps = np.asarray(to_eps(y, 5.0, 2.0, output_map))
    rotated = np.asarray(to_eps(q @ y @ q.T, 5.0, 2.0, output_map))
    np.testing.assert_allclose(rotated, q @ eps @ q.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(eps, np.swapaxes(eps, 1, 2), atol=1e-4)
    centre = np.asarray(to_eps(np.zeros((1, 3, 3), np.float32), 5.0, 2.0, output_map))
    np.testing.assert_allclose(centre[0], 5.0 * np.eye(3), atol=1e-5)
    if output_map == "matrix_exp":  # positive definite even for a large negative output
        big = np.asarray(to_eps(-10.0 * np.eye(3, dtype=np.float32)[None], 5.0, 2.0, output_map))
        assert np.all(np.linalg.eigvalsh(big) > 0)
        huge = 100.0 * np.stack([y[0], -y[0]])  # exp(100) would overflow float32
        value, grad = jax.value_and_grad(lambda x: jnp.sum(to_eps(x, 5.0, 2.0, output_map) ** 2))(
            huge
        )
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
        small = 0.1 * y  # the clamp is the identity to third order near 0
        np.testing.assert_allclose(soft_clamp_norm(small, MAX_LOG_EPS_NORM), small, rtol=1e-4)
        np.testing.assert_allclose(  # eigenvalues are exp(log(offset) + eig(y))
            np.linalg.eigvalsh(eps),
            5.0 * np.exp(np.linalg.eigvalsh(np.asarray(soft_clamp_norm(y, MAX_LOG_EPS_NORM)))),
            rtol=1e-4,
        )


def test_matrix_exp_needs_standardised_targets():
    with pytest.raises(ValueError, match="matrix_exp"):
        ReadoutConfig(output_map="matrix_exp", target_scaling="none")
    with pytest.raises(ValueError, match="output_map"):
        ReadoutConfig(output_map="log")
