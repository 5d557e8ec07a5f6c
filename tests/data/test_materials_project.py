"""Materials Project loader: conversion tested offline on a synthetic mp-api-shaped fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dtnn_jax.data import (
    DataValidationError,
    frame_check_targets,
    load_materials_project,
    load_petousis2017,
    records_from_mp_docs,
)

FIXTURE = Path(__file__).parent / "fixtures" / "mp_dielectric_sample.json"


@pytest.fixture(scope="module")
def docs():
    return json.loads(FIXTURE.read_text())


def test_conversion_matches_source_records(docs):
    records = records_from_mp_docs(docs["dielectric"], docs["summary"])
    shipped = {r.material_id: r for r in load_petousis2017()}
    assert [r.material_id for r in records] == [d["material_id"] for d in docs["dielectric"]]
    for r in records:
        want = shipped[r.material_id]
        for t in ("electronic", "ionic", "total"):
            np.testing.assert_allclose(r.target(t), want.target(t), atol=1e-12)
        assert r.band_gap_ev == want.band_gap_ev
        assert r.crystal_system == want.crystal_system
        assert r.formula == want.formula
    reports = frame_check_targets(records)
    assert all(rep.n_pass == len(records) for rep in reports.values())


def test_conversion_accepts_pydantic_like_docs(docs):
    class Doc:
        def __init__(self, data):
            self._data = data

        def model_dump(self):
            return dict(self._data)

    records = records_from_mp_docs(
        [Doc(d) for d in docs["dielectric"]], [Doc(d) for d in docs["summary"]]
    )
    assert len(records) == len(docs["dielectric"])


def test_missing_summary_is_reported(docs):
    with pytest.raises(DataValidationError, match=r"record 0 \(id 'mp-22894'\): missing structure"):
        records_from_mp_docs(docs["dielectric"], docs["summary"][1:])


def test_loader_without_key_or_package_fails_clearly(monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    try:
        import mp_api  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="mp-api"):
            load_materials_project()
    else:
        with pytest.raises(RuntimeError, match="MP_API_KEY"):
            load_materials_project()
