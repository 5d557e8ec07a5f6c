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


def test_build_pool_dedupes_and_excludes(prep):
    poscar = POSCAR
    structure = prep.parse_poscar(poscar)
    flla = "# ref\nmaterial_id,e_above_hull,structure\n" + "\n".join(
        f'{mid},0.25,"{structure.as_dict()}"' for mid in ("mp-1", "mp-2")
    )
    quoted = poscar.replace('"', '""')
    elastic = f'# ref\nmaterial_id,poscar\nmp-2,"{quoted}"\nmp-3,"{quoted}"\n'
    piezo = f'# ref\nmaterial_id,poscar\nmp-4,"{quoted}"\n'
    tables = {
        "flla_2015.csv": flla.encode(),
        "elastic_tensor.csv": elastic.encode(),
        "piezoelectric_tensor.csv": piezo.encode(),
    }
    pool, meta = prep.build_pool(tables, exclude={"mp-4"})
    assert [p["material_id"] for p in pool] == ["mp-1", "mp-2", "mp-3"]
    assert pool[1]["sources"] == ["flla_2015", "elastic_tensor"]
    assert pool[1]["e_above_hull_ev"] == 0.25 and pool[2]["e_above_hull_ev"] is None
    assert pool[2]["structure"]["species"] == ["Na", "Cl"]
    assert meta["rows_per_table"] == {
        "flla_2015.csv": 2,
        "elastic_tensor.csv": 2,
        "piezoelectric_tensor.csv": 1,
    }
