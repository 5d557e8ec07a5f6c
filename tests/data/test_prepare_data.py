"""Parsing helpers of experiments/prepare_data.py on tiny synthetic matminer-style tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SCRIPT = Path(__file__).parents[2] / "experiments" / "prepare_data.py"


@pytest.fixture(scope="module")
def prep():
    spec = importlib.util.spec_from_file_location("prepare_data", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


POSCAR_LINES = (
    "Na1 Cl1",
    "1.0",
    "0 2.8 2.8",
    "2.8 0 2.8",
    "2.8 2.8 0",
    "Na Cl",
    "1 1",
    "direct",
    "0 0 0 Na",
    "0.5 0.5 0.5 Cl",
)
POSCAR = "\n".join(POSCAR_LINES) + "\n"


def test_csv_rows_drops_unnamed_index_column(prep):
    text = '# ref: x\na,b\n0,1,"[1, 2]"\n1,3,4\n'
    rows = prep.csv_rows(text.encode())
    assert rows == [{"a": "1", "b": "[1, 2]"}, {"a": "3", "b": "4"}]
    with pytest.raises(ValueError, match="fields"):
        prep.csv_rows(b"a,b\n1,2,3,4\n")


def test_parse_tensor(prep):
    t = prep.parse_tensor("[[1, 0.5, 0], [0.4, 2, 0], [0, 0, 3.0]]", "x")
    np.testing.assert_allclose(t, [[1, 0.5, 0], [0.4, 2, 0], [0, 0, 3]])
    with pytest.raises(ValueError, match="bad tensor"):
        prep.parse_tensor("[[1, 2], [3, 4]]", "mp-1 e_total")


def _pool_tables(prep) -> dict[str, bytes]:
    structure = prep.parse_poscar(POSCAR)
    flla = "# ref\nmaterial_id,e_above_hull,structure\n" + "\n".join(
        f'{mid},0.25,"{structure.as_dict()}"' for mid in ("mp-1", "mp-2")
    )
    quoted = POSCAR.replace('"', '""')
    metal = POSCAR.replace("Na Cl", "Cu Sn").replace("0 0 0 Na", "0 0 0 Cu").replace("Cl\n", "Sn\n")
    metal = metal.replace('"', '""')
    elastic = f'# ref\nmaterial_id,poscar\nmp-2,"{quoted}"\nmp-3,"{quoted}"\nmp-6,"{metal}"\n'
    piezo = f'# ref\nmaterial_id,poscar\nmp-4,"{quoted}"\nmp-5,"{metal}"\n'
    return {
        "flla_2015.csv": flla.encode(),
        "elastic_tensor.csv": elastic.encode(),
        "piezoelectric_tensor.csv": piezo.encode(),
    }


def test_build_pool_dedupes_and_excludes(prep):
    pool, meta = prep.build_pool(_pool_tables(prep), exclude={"mp-4"})
    assert [p["material_id"] for p in pool] == ["mp-1", "mp-2", "mp-3", "mp-5", "mp-6"]
    assert pool[1]["sources"] == ["flla_2015", "elastic_tensor"]
    assert pool[1]["e_above_hull_ev"] == 0.25 and pool[2]["e_above_hull_ev"] is None
    assert pool[2]["structure"]["species"] == ["Na", "Cl"]
    assert meta["rows_per_table"] == {
        "flla_2015.csv": 2,
        "elastic_tensor.csv": 3,
        "piezoelectric_tensor.csv": 2,
    }
    assert meta["labelled_rows_per_table"]["piezoelectric_tensor.csv"] == 1


def test_build_pool_metal_flags(prep):
    pool, meta = prep.build_pool(_pool_tables(prep), exclude={"mp-4"})
    by_id = {p["material_id"]: p for p in pool}
    assert all(p["band_gap_ev"] is None for p in pool)  # no pool table has a gap
    assert by_id["mp-3"]["charge_balanced"] and not by_id["mp-3"]["insulator_by_construction"]
    # CuSn: not charge-balanced; flagged insulator by construction from the piezoelectric
    # table, yet a likely metal from either table (the subset does not override the formula).
    assert by_id["mp-5"]["formula"] == "CuSn" and not by_id["mp-5"]["charge_balanced"]
    assert by_id["mp-5"]["insulator_by_construction"]
    assert not by_id["mp-6"]["charge_balanced"] and not by_id["mp-6"]["insulator_by_construction"]
    assert meta["metal_flags"]["counts"] == {
        "records": 5,
        "band_gap_known": 0,
        "insulator_by_construction": 1,
        "charge_balanced": 3,
        "insulator_by_construction_not_charge_balanced": 1,
        "likely_metal": 2,
    }


def test_pool_build_is_byte_identical(prep, tmp_path):
    files = []
    for i in range(2):
        pool, meta = prep.build_pool(_pool_tables(prep), exclude={"mp-4"})
        path = tmp_path / str(i) / "screening_pool.json.gz"  # gzip stores the file name
        path.parent.mkdir()
        prep.write_json_gz(path, {"format_version": 1, **meta, "records": pool})
        files.append(path.read_bytes())
    assert files[0] == files[1]
