"""The shipped Petousis 2017 set and screening pool load and are physically sane."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from dtnn_jax.data import CRYSTAL_SYSTEMS, TARGETS, load_petousis2017, load_screening_pool
from dtnn_jax.data.records import crystal_system_from_number
from dtnn_jax.data.shipped import DATA_DIR, FORMAT_VERSION, PETOUSIS_FILE, read_payload

DIELECTRIC_SHA256 = "ecbd410d33c95d5b05822cff6c7c0ba809a024b4ede3855ec5efc48d5e29ea77"


@pytest.fixture(scope="module")
def records():
    return load_petousis2017()


def test_count_and_unique_ids(records):
    assert len(records) == 1056
    assert len({r.material_id for r in records}) == 1056


def test_metadata_versioned_with_source_hash():
    payload = read_payload(DATA_DIR / PETOUSIS_FILE)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["source_sha256"] == DIELECTRIC_SHA256
    assert payload["symprec_angstrom"] == 0.1


def test_tensors_finite_symmetric_and_additive(records):
    for r in records:
        for t in TARGETS:
            tensor = r.target(t)
            assert tensor.shape == (3, 3)
            assert np.all(np.isfinite(tensor)), r.material_id
            np.testing.assert_array_equal(tensor, tensor.T)
        np.testing.assert_allclose(r.e_ionic, r.e_total - r.e_electronic, atol=2e-8)


def test_electronic_tensors_positive_definite(records):
    # eps_inf >= 1 physically; all eigenvalues must exceed 1 (vacuum).
    eig = np.array([np.linalg.eigvalsh(r.e_electronic) for r in records])
    assert eig.min() > 1.0


def test_band_gaps_and_symmetry_fields(records):
    for r in records:
        assert np.isfinite(r.band_gap_ev) and r.band_gap_ev >= 0
        assert r.crystal_system in CRYSTAL_SYSTEMS
        assert crystal_system_from_number(r.spacegroup_number) == r.crystal_system
        assert r.formula == r.structure.composition.reduced_formula


def test_records_are_frozen_and_read_only(records):
    r = records[0]
    with pytest.raises(AttributeError):
        r.band_gap_ev = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        r.e_total[0, 0] = 1.0


def test_known_record_rb2te(records):
    # mp-441 (Rb2Te, Fm-3m) from the first row of dielectric_constant.csv.
    r = next(r for r in records if r.material_id == "mp-441")
    assert r.spacegroup_number == 225 and r.crystal_system == "cubic"
    assert r.e_electronic[0, 0] == pytest.approx(3.44115795)
    assert r.band_gap_ev == pytest.approx(1.88)
    assert len(r.structure) == 3


def test_loader_is_cached(records):
    again = load_petousis2017()
    assert again is not records and again[0] is records[0]


def test_format_version_mismatch_is_refused(tmp_path):
    path = tmp_path / "old.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"format_version": FORMAT_VERSION + 1, "records": []}, f)
    with pytest.raises(ValueError, match="format version"):
        load_petousis2017(path)


def test_screening_pool_disjoint_from_labelled(records):
    pool = load_screening_pool()
    ids = [p.material_id for p in pool]
    assert len(pool) > 4000 and len(set(ids)) == len(ids)
    assert not set(ids) & {r.material_id for r in records}
    with_hull = [p for p in pool if np.isfinite(p.e_above_hull_ev)]
    assert len(with_hull) > 3000
    assert all(p.e_above_hull_ev >= 0 for p in with_hull)
    assert all(p.sources for p in pool)
