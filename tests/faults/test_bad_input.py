"""Every bad crystal gets a clear error naming it and the problem; the others are predicted.

One batch mixes good crystals with one of each fault (unsupported element, empty structure,
overlapping atoms, non-finite coordinates, zero-volume lattice, corrupt CIF, missing file,
isolated atom, too many atoms); the API and the ``dtnn predict`` CLI must report each bad
input by name and still predict the good ones exactly as they are predicted alone.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from ase import Atoms
from pymatgen.core import Lattice, Structure

from dtnn_jax import io
from dtnn_jax.inference import save_bundle
from dtnn_jax.io import StructureInputError, as_structure
from tests.properties.tiny_model import BUDGET, rel_error, tiny_bundle, tiny_model


def _good():
    return [
        Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(
            Lattice.from_parameters(3.1, 4.2, 5.3, 71.0, 83.0, 104.0),
            ["Si", "O", "O"],
            [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.62, 0.71, 0.55]],
        ),
    ]


def _bad(tmp_path):
    """name -> (input, regex the reason must match)."""
    corrupt = tmp_path / "corrupt.cif"
    corrupt.write_text("data_x\n_cell_length_a 4.0\nloop_\n_atom_site_label\n garbage ###\n")
    nan_atoms = Atoms("NaCl", positions=[[0, 0, 0], [np.nan, 1, 1]], cell=[4, 4, 4], pbc=True)
    flat = Lattice([[3.0, 0, 0], [0, 3.0, 0], [3.0, 3.0, 0]])  # coplanar: zero volume
    return {
        "unsupported element": (
            Structure(Lattice.cubic(3.4), ["Po"], [[0, 0, 0]]),
            r"unsupported element\(s\) Po for SevenNet-0",
        ),
        "empty": (Structure(Lattice.cubic(4.0), [], []), "no atoms"),
        "overlapping": (
            Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]),
            r"overlapping atoms: sites 0 \(Na\) and 1 \(Cl\) are 0.200 A apart",
        ),
        "non-finite": (nan_atoms, "non-finite"),
        "zero volume": (
            Structure(flat, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            "degenerate lattice: cell volume",
        ),
        "corrupt cif": (corrupt, "could not parse"),
        "missing file": (tmp_path / "nowhere.cif", "file not found"),
        "isolated atom": (
            Structure(Lattice.cubic(12.0), ["Na"], [[0, 0, 0]]),
            r"no neighbour within the cutoff of 5\.0 A: atom 0 \(Z=11\)",
        ),
        "too large": (
            Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]) * (10, 10, 11),
            r"too large: 2200 atoms exceed the limit of 2000 atoms",
        ),
    }


def test_each_fault_is_named_and_the_good_crystals_survive(tmp_path):
    model = tiny_model()
    good, bad = _good(), _bad(tmp_path)
    inputs = [good[0], *[x for x, _ in bad.values()], good[1]]
    pred = model.predict_detailed(inputs, budget=BUDGET)
    assert pred.errors[0] is None and pred.errors[-1] is None
    for k, (name, (obj, pattern)) in enumerate(bad.items(), start=1):
        assert pred.errors[k] is not None, name
        assert re.search(pattern, pred.errors[k]), (name, pred.errors[k])
        assert np.isnan(pred.mean["total"][k]).all(), name
        if not isinstance(obj, Structure | Atoms):
            assert pred.sources[k] == str(obj)  # files are named by their path
        else:
            assert pred.sources[k].startswith(f"#{k}")  # the others by position and formula
    alone = model.predict_detailed(good, budget=BUDGET).mean["total"]
    both = pred.mean["total"][[0, -1]]
    assert rel_error(both, alone) < 1e-5
    # errors="raise" names every bad input in one exception
    with pytest.raises(StructureInputError) as info:
        model.predict([good[0], bad["corrupt cif"][0], bad["empty"][0]])
    assert "corrupt.cif: could not parse" in str(info.value)
    assert "no atoms" in str(info.value) and "2 of 3 inputs" in str(info.value)


def test_size_guard_is_overridable(monkeypatch):
    big = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]) * (2, 2, 2)
    with pytest.raises(StructureInputError, match="16 atoms exceed the limit of 10"):
        as_structure(big, max_atoms=10)
    monkeypatch.setattr(io, "MAX_ATOMS", 8)
    with pytest.raises(StructureInputError, match=r"limit of 8 .*dtnn_jax\.io\.MAX_ATOMS"):
        as_structure(big)
    assert len(as_structure(big, max_atoms=16)) == 16


def test_cli_reports_bad_files_and_predicts_the_rest(tmp_path, capsys):
    from dtnn_jax.cli import main

    bundle_dir = save_bundle(tiny_bundle(), tmp_path / "tiny")
    files = []
    for i, s in enumerate(_good()):
        files.append(tmp_path / f"good{i}.cif")
        s.to(filename=str(files[-1]))
    bad = _bad(tmp_path)
    files.insert(1, bad["corrupt cif"][0])
    isolated = tmp_path / "isolated.json"
    isolated.write_text(json.dumps(bad["isolated atom"][0].as_dict()))
    files.insert(2, isolated)
    out = tmp_path / "out.json"
    argv = ["predict", *map(str, files), "--model", str(bundle_dir), "--format", "json"]
    rc = main([*argv, "-o", str(out)])
    assert rc == 1
    records = json.loads(out.read_text())["crystals"]
    assert [r["source"] for r in records] == [str(f) for f in files]
    errors = [r["error"] for r in records]
    assert errors[0] is None and errors[3] is None
    assert "could not parse" in errors[1] and "no neighbour" in errors[2]
    expected = tiny_model().predict_detailed(_good(), budget=BUDGET).mean["total"]
    got = np.array([records[i]["targets"]["total"]["tensor"] for i in (0, 3)])
    assert rel_error(got, expected) < 1e-4  # CIF round trip rounds coordinates
    err = capsys.readouterr().err
    assert "corrupt.cif" in err and "isolated.json" in err and "2 of 4 inputs failed" in err
