"""User-labelled data: round trips through JSON, extxyz and CSV; validation names records."""

from __future__ import annotations

import csv
import json

import ase.io
import numpy as np
import pytest
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from dtnn_jax.data import DataValidationError, load_labelled, load_petousis2017


@pytest.fixture(scope="module")
def sample():
    records = load_petousis2017()
    wanted = ("mp-441", "mp-22894", "mp-10161")
    return [r for r in records if r.material_id in wanted]


def _assert_same(loaded, originals, targets=("electronic", "ionic", "total"), atol=1e-8):
    assert [r.material_id for r in loaded] == [r.material_id for r in originals]
    for got, want in zip(loaded, originals, strict=True):
        for t in targets:
            np.testing.assert_allclose(got.target(t), want.target(t), atol=atol)
        assert got.formula == want.formula
        assert got.spacegroup_number == want.spacegroup_number
        np.testing.assert_allclose(
            got.structure.lattice.matrix, want.structure.lattice.matrix, atol=1e-5
        )


def test_json_round_trip_dict_and_cif(tmp_path, sample):
    entries = []
    for i, r in enumerate(sample):
        structure = r.structure.as_dict() if i % 2 == 0 else str(CifWriter(r.structure))
        entries.append(
            {
                "material_id": r.material_id,
                "structure": structure,
                "e_electronic": r.e_electronic.tolist(),
                "e_total": r.e_total.ravel().tolist(),  # 9 numbers also accepted
                "band_gap": r.band_gap_ev,
            }
        )
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(entries))
    loaded = load_labelled(path)
    # ionic derived from total - electronic
    _assert_same(loaded, sample)
    assert [r.band_gap_ev for r in loaded] == [r.band_gap_ev for r in sample]


def test_json_single_target_allowed(tmp_path, sample):
    r = sample[0]
    path = tmp_path / "one.json"
    path.write_text(
        json.dumps([{"structure": r.structure.as_dict(), "e_total": r.e_total.tolist()}])
    )
    (loaded,) = load_labelled(path)
    assert loaded.material_id == "record-0"
    assert loaded.has_target("total") and not loaded.has_target("electronic")
    assert np.isnan(loaded.band_gap_ev)
    with pytest.raises(KeyError, match="no 'ionic'"):
        loaded.target("ionic")


def test_extxyz_round_trip(tmp_path, sample):
    frames = []
    for r in sample:
        atoms = AseAtomsAdaptor.get_atoms(r.structure)
        atoms.info["material_id"] = r.material_id
        atoms.info["dielectric_total"] = r.e_total.ravel()
        atoms.info["dielectric_electronic"] = r.e_electronic.ravel()
        frames.append(atoms)
    path = tmp_path / "mine.extxyz"
    ase.io.write(path, frames, format="extxyz")
    _assert_same(load_labelled(path), sample, atol=1e-6)


def test_csv_round_trip(tmp_path, sample):
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["material_id", "cif", "e_electronic", "e_ionic", "band_gap_ev"])
        for r in sample:
            writer.writerow(
                [
                    r.material_id,
                    str(CifWriter(r.structure)),
                    json.dumps(r.e_electronic.tolist()),
                    json.dumps(r.e_ionic.tolist()),
                    r.band_gap_ev,
                ]
            )
    _assert_same(load_labelled(path), sample)


def test_json_validation_lists_every_problem(tmp_path, sample):
    good = sample[0]
    s = good.structure.as_dict()
    asym = good.e_total.copy()
    asym[0, 1] += 2.0
    entries = [
        {"material_id": "ok", "structure": s, "e_total": good.e_total.tolist()},
        {"material_id": "asym", "structure": s, "e_total": asym.tolist()},
        {"material_id": "nan", "structure": s, "e_electronic": [[float("nan")] * 3] * 3},
        {"material_id": "nostruct", "e_total": good.e_total.tolist()},
        {"material_id": "garbage", "structure": "this is not a crystal", "e_total": [1] * 9},
        {"material_id": "notensor", "structure": s},
        {"id": "shape", "structure": s, "e_total": [1.0, 2.0]},
        {
            "material_id": "inconsistent",
            "structure": s,
            "e_total": good.e_total.tolist(),
            "e_electronic": good.e_electronic.tolist(),
            "e_ionic": (good.e_ionic + 1.0).tolist(),
        },
        {"material_id": "badgap", "structure": s, "e_total": good.e_total.tolist(), "band_gap": -1},
    ]
    path = tmp_path / "bad.json"
    # json.dumps writes NaN as a bare token, which json.load accepts.
    path.write_text(json.dumps(entries))
    with pytest.raises(DataValidationError) as info:
        load_labelled(path)
    problems = info.value.problems
    expected = {
        "record 1 (id 'asym')": "asymmetric",
        "record 2 (id 'nan')": "non-finite",
        "record 3 (id 'nostruct')": "missing structure",
        "record 4 (id 'garbage')": "unparsable structure",
        "record 5 (id 'notensor')": "missing dielectric tensor",
        "record 6 (id 'shape')": "not 3x3",
        "record 7 (id 'inconsistent')": "total != electronic + ionic",
        "record 8 (id 'badgap')": "band gap",
    }
    assert len(problems) == len(expected)
    for where, what in expected.items():
        assert any(p.startswith(where) and what in p for p in problems), (where, problems)
    assert "record 0" not in str(info.value)
    assert str(path) in str(info.value)


def test_extxyz_validation_names_record(tmp_path, sample):
    atoms = AseAtomsAdaptor.get_atoms(sample[0].structure)
    atoms.info["material_id"] = "x1"
    bad = atoms.copy()
    bad.info["material_id"] = "x2"
    bad.info["dielectric_total"] = np.array([1.0, 5.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    atoms.info["dielectric_total"] = np.eye(3).ravel()
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, [atoms, bad], format="extxyz")
    with pytest.raises(DataValidationError, match=r"record 1 \(id 'x2'\): total tensor asymm"):
        load_labelled(path)


def test_csv_validation_names_record(tmp_path):
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["material_id", "poscar", "e_total"])
        writer.writerow(["y0", "not a poscar", json.dumps(np.eye(3).tolist())])
        writer.writerow(["y1", "", json.dumps(np.eye(3).tolist())])
    with pytest.raises(DataValidationError) as info:
        load_labelled(path)
    assert info.value.problems[0].startswith("record 0 (id 'y0'): unparsable structure")
    assert info.value.problems[1].startswith("record 1 (id 'y1'): missing structure")


def test_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        load_labelled(tmp_path / "data.parquet")
