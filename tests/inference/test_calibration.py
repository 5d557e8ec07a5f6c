"""Calibrated uncertainty: the fit reads validation crystals only, hits its coverage, and the
predictor applies what the bundle stores."""

from __future__ import annotations

import numpy as np
import pytest

from dtnn_jax.inference.calibration import (
    Calibration,
    coverage,
    fit_target,
    held_out_ensembles,
)


def _ensemble(rng, n=600, hidden_scale=2.5):
    """Tensors whose true error is ``hidden_scale`` x the reported spread (Gaussian)."""
    base = rng.uniform(2.0, 20.0, n)
    true = base[:, None, None] * np.eye(3)
    std = 0.05 * base[:, None, None] * np.ones((3, 3))
    mean = true + hidden_scale * std * rng.normal(size=(n, 3, 3))
    return mean, std, true


def test_fit_reads_the_validation_crystals_only():
    rng = np.random.default_rng(0)
    mean, std, true = _ensemble(rng)
    val = np.sort(rng.choice(len(mean), 200, replace=False))
    reference = fit_target(mean, std, true, val)
    # every other row poisoned: a fit that read one of them would change or fail
    others = np.setdiff1d(np.arange(len(mean)), val)
    poisoned = [x.copy() for x in (mean, std, true)]
    for x, value in zip(poisoned, (np.nan, 0.0, 1e9), strict=True):
        x[others] = value
    assert fit_target(*poisoned, val) == reference
    # the scale it finds is the hidden one, one scale for every magnitude
    assert np.exp(reference.log_scale) == pytest.approx(2.5, rel=0.15)
    assert abs(reference.exponent) <= 0.2


def test_calibrated_coverage_on_held_out_crystals():
    rng = np.random.default_rng(1)
    mean, std, true = _ensemble(rng, n=1500)
    val, test = np.arange(0, 500), np.arange(500, 1500)
    cal = fit_target(mean, std, true, val)
    before = coverage(mean[test], std[test], true[test])
    factor = cal.scale(np.abs(np.trace(mean[test], axis1=1, axis2=2)) / 3)
    after = coverage(mean[test], std[test] * factor[:, None, None], true[test])
    assert before[0] < 0.4 and before[1] < 0.65  # too small a spread, as ensembles have
    assert 0.62 < after[0] < 0.75 and 0.91 < after[1] < 0.98


def test_magnitude_dependent_scale():
    """An error that grows faster than the spread with |eps| gets b > 0."""
    rng = np.random.default_rng(2)
    base = rng.uniform(1.0, 50.0, 1500)
    true = base[:, None, None] * np.eye(3)
    std = 0.1 * np.ones((len(base), 3, 3))
    mean = true + 0.02 * base[:, None, None] * rng.normal(size=(len(base), 3, 3))
    cal = fit_target(mean, std, true, np.arange(1500))
    assert cal.exponent > 0.6


def test_held_out_ensembles_use_validation_for_the_fit_and_test_for_the_check():
    rng = np.random.default_rng(3)
    n, m = 400, 5
    members = rng.normal(size=(n, m, 3, 3))
    splits = []
    for _ in range(m):
        order = rng.permutation(n)
        splits.append((order[:320], order[320:360], order[360:]))
    held = held_out_ensembles(members, splits)
    assert len(held.fit) > 5 and len(held.test) > 5
    for i in held.fit:
        held_by = [j for j, (train, _, _) in enumerate(splits) if i not in train]
        assert len(held_by) >= 2 and all(i in splits[j][1] for j in held_by)
        np.testing.assert_allclose(held.mean[i], members[i, held_by].mean(0))
    for i in held.test:
        assert all(i in splits[j][2] for j in range(m) if i not in splits[j][0])
    assert not set(held.fit) & set(held.test)


def test_bundle_metadata_round_trip_and_apply():
    rng = np.random.default_rng(4)
    mean, std, true = _ensemble(rng)
    cal = Calibration({"total": fit_target(mean, std, true, np.arange(300))})
    back = Calibration.from_metadata({"calibration": cal.to_metadata(fitted_on="x")})
    assert back == cal and Calibration.from_metadata({}) is None
    poly_std = {"total": np.ones(len(mean)), "ionic": np.ones(len(mean))}
    new_std, new_poly = back.apply(
        {"total": mean, "ionic": mean}, {"total": std, "ionic": std}, poly_std
    )
    factor = cal.targets["total"].scale(np.abs(np.trace(mean, axis1=1, axis2=2)) / 3)
    np.testing.assert_allclose(new_std["total"], std * factor[:, None, None])
    np.testing.assert_allclose(new_poly["total"], factor)
    assert new_std["ionic"] is std and new_poly["ionic"] is poly_std["ionic"]


def test_predict_return_std_is_the_calibrated_sigma():
    """A bundle with a calibration: predict's std = the raw ensemble spread x the scale."""
    import dataclasses

    from dtnn_jax.inference import DielectricModel
    from dtnn_jax.inference.calibration import TargetCalibration
    from tests.properties.tiny_model import tiny_model

    base = tiny_model()
    cal = TargetCalibration(np.log(3.0), 0.5, 10.0, 0.01, 1, (0.68, 0.95))
    meta = base.bundle.metadata | {"calibration": Calibration({"total": cal}).to_metadata()}
    model = DielectricModel(dataclasses.replace(base.bundle, metadata=meta), base.encoder)
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    detailed = model.predict_detailed([s])
    _, std = model.predict([s], "total", return_std=True)
    poly = abs(np.trace(detailed.mean["total"][0]) / 3)
    expected = detailed.ensemble_std["total"][0] * 3.0 * (max(poly, 0.01) / 10.0) ** 0.5
    np.testing.assert_allclose(std[0], expected, rtol=1e-5)
    assert detailed.members["total"].shape == (1, model.ensemble_size("total"), 3, 3)


def test_a_damaged_calibration_is_a_bundle_error(tmp_path):
    import json

    from dtnn_jax.inference import BundleError, load_bundle, save_bundle
    from tests.properties.tiny_model import tiny_model

    path = save_bundle(tiny_model().bundle, tmp_path / "b")
    meta = json.loads((path / "bundle.json").read_text())
    meta["calibration"] = {"targets": {"total": {"log_scale": 1.0}}}
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="calibration: unreadable"):
        load_bundle(path)
