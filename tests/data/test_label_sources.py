"""New label sources: Z* on records, e3nn-models frames, dedupe, split helper, shipped files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from dtnn_jax.data import load_labelled
from dtnn_jax.data.combined import (
    combine,
    group_duplicates,
    groups_from_keys,
    record_key,
    split_training_set,
)
from dtnn_jax.data.records import FIDELITIES, DielectricRecord
from dtnn_jax.data.sources import parse_e3nn_extxyz
from dtnn_jax.data.splits import split_indices

FIXTURES = Path(__file__).parent / "fixtures"


def _rocksalt(a: float, species=("Na", "Cl")) -> Structure:
    return Structure(Lattice.cubic(a), [species[0]] * 4 + [species[1]] * 4, _fcc_pairs())


def _fcc_pairs():
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return fcc + [[(x + 0.5) % 1, y, z] for x, y, z in fcc]


def _record(mid, structure, source, eps=2.0, fidelity="", born=None):
    return DielectricRecord(
        material_id=mid,
        formula=structure.composition.reduced_formula,
        structure=structure,
        e_electronic=eps * np.eye(3),
        e_ionic=None,
        e_total=None,
        source=source,
        fidelity=fidelity,
        born_charges=born,
    )


def test_record_validates_born_charges_and_fidelity():
    s = _rocksalt(5.6)
    z = np.zeros((8, 3, 3))
    r = _record("x", s, "user", born=z)
    assert r.born_charges.shape == (8, 3, 3) and not r.born_charges.flags.writeable
    with pytest.raises(ValueError, match="born_charges"):
        _record("x", s, "user", born=np.zeros((7, 3, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        _record("x", s, "user", born=np.full((8, 3, 3), np.nan))
    with pytest.raises(ValueError, match="fidelity"):
        _record("x", s, "user", fidelity="pbe0")
    assert "mp_pbe" in FIDELITIES and "vasp_pbesol" in FIDELITIES


def test_e3nn_frame_parsed_with_born_charges():
    records, skipped, n = parse_e3nn_extxyz((FIXTURES / "e3nn_frame.extxyz").read_text())
    assert n == 1 and len(records) == 1 and not any(skipped.values())
    r = records[0]
    assert r["material_id"] == "e3nn-0" and r["formula"] == "LiRhO2"
    z = np.asarray(r["born_charges"]).reshape(-1, 3, 3)
    assert z.shape == (4, 3, 3)
    np.testing.assert_allclose(z[0, 0], [1.73988244, 0.0, 0.09126204], atol=1e-5)
    np.testing.assert_allclose(z.sum(axis=0), 0.0, atol=1e-4)  # acoustic sum rule
    eps = np.asarray(r["e_electronic"])
    np.testing.assert_allclose(eps[0, 2], -0.7963417644043364, atol=1e-6)
    _, skipped, _ = parse_e3nn_extxyz(
        (FIXTURES / "e3nn_frame.extxyz").read_text(), near_metal_eps=5.0
    )
    assert skipped["near_metal"] == ["e3nn-0"]


def test_load_labelled_keeps_born_charges_from_extxyz(tmp_path):
    import ase.io

    atoms = ase.io.read(FIXTURES / "e3nn_frame.extxyz", format="extxyz")
    atoms.info["e_electronic"] = np.asarray(atoms.info.pop("eps"))
    atoms.info["fidelity"] = "vasp_pbesol"
    path = tmp_path / "frame.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    (record,) = load_labelled(path)
    z = atoms.arrays["becs"].reshape(-1, 3, 3)
    np.testing.assert_allclose(record.born_charges, z, atol=1e-8)
    assert record.fidelity == "vasp_pbesol" and record.source == "user"


def test_load_labelled_json_born_charges_bad_shape_named(tmp_path):
    import json

    from dtnn_jax.data import DataValidationError

    s = _rocksalt(5.6)
    entry = {"structure": s.as_dict(), "e_electronic": np.eye(3).tolist()}
    good = {**entry, "born_charges": np.zeros((8, 9)).tolist()}
    bad = {**entry, "born_charges": np.zeros((7, 9)).tolist(), "id": "short"}
    (tmp_path / "ok.json").write_text(json.dumps([good]))
    assert load_labelled(tmp_path / "ok.json")[0].born_charges.shape == (8, 3, 3)
    (tmp_path / "bad.json").write_text(json.dumps([good, bad]))
    with pytest.raises(DataValidationError, match=r"short.*born_charges"):
        load_labelled(tmp_path / "bad.json")


def test_dedupe_by_id_then_structure():
    nacl = _rocksalt(5.60)
    nacl_pbesol = _rocksalt(5.52)  # same crystal, smaller PBEsol-like cell
    rotated = nacl_pbesol.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 1, 0], 33.0))
    kcl = _rocksalt(6.3, ("K", "Cl"))
    records = [
        _record("mp-22862", nacl, "petousis2017", 2.4, "mp_pbe"),
        _record("mp-22862", nacl_pbesol, "phonondb2018", 2.5, "vasp_pbesol"),
        _record("e3nn-7", rotated, "e3nn_models", 2.45, "unverified"),
        _record("mp-23193", kcl, "phonondb2018", 2.2, "vasp_pbesol"),
    ]
    groups = group_duplicates(records)
    assert groups == [[0, 1, 2], [3]]
    assert group_duplicates(records, match_structures="none") == [[0, 1], [2], [3]]
    crystals = combine(records, groups)
    assert crystals[0].crystal_id == "mp-22862"
    assert crystals[0].fidelities == ("mp_pbe", "vasp_pbesol", "unverified")
    # labels are kept per source, never averaged
    assert [r.e_electronic[0, 0] for r in crystals[0].labels("electronic")] == [2.4, 2.5, 2.45]
    keys = [[record_key(records[i]) for i in g] for g in groups if len(g) > 1]
    assert groups_from_keys(records, keys) == groups


def test_dedupe_keeps_distorted_polymorphs_apart():
    """StructureMatcher's defaults fit a 1.5 % tetragonal strain of rocksalt; the space-group
    check (symprec 0.01 A) keeps the two polymorphs apart, like SnSe mp-2693 / mp-8936."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    cubic = _rocksalt(5.9, ("Sn", "Se"))
    tetragonal = Structure(Lattice.tetragonal(5.9, 5.99), cubic.species, cubic.frac_coords)
    assert StructureMatcher().fit(cubic, tetragonal)
    records = [
        _record("mp-2693", cubic, "petousis2017"),
        _record("e3nn-1", tetragonal, "e3nn_models"),
        _record("e3nn-2", _rocksalt(5.8, ("Sn", "Se")), "e3nn_models"),
    ]
    assert group_duplicates(records) == [[0, 2], [1]]


def test_split_keeps_petousis_protocol_and_sends_duplicates_to_test():
    petousis = [
        _record(f"mp-{i}", _rocksalt(5.0 + 0.01 * i), "petousis2017", fidelity="mp_pbe")
        for i in range(30)
    ]
    _, val, test = split_indices(30, seed=3)
    test_ids = {petousis[i].material_id for i in test}
    extra = [
        _record(p.material_id, p.structure, "phonondb2018", fidelity="vasp_pbesol")
        for p in petousis[::2]
    ] + [_record("mp-999", _rocksalt(7.0, ("Rb", "I")), "phonondb2018")]
    crystals = combine([*petousis, *extra], group_duplicates([*petousis, *extra], "none"))
    assert len(crystals) == 31
    c_train, c_val, c_test = split_training_set(crystals, seed=3, petousis_records=petousis)
    assert len(c_train) + len(c_val) + len(c_test) == 31
    got_test = {crystals[i].crystal_id for i in c_test}
    assert got_test == test_ids  # Petousis test crystals, and their duplicates ride along
    for i in c_test:
        assert all(r.material_id in test_ids for r in crystals[i].records)
    assert len(c_val) == len(val)
    assert "mp-999" in {crystals[i].crystal_id for i in c_train}


def test_shipped_phonondb_records():
    from dtnn_jax.data import load_phonondb2018, load_phonondb2018_force_constants

    records = load_phonondb2018()
    assert len(records) > 20
    fc = load_phonondb2018_force_constants()
    for r in records[:20]:
        assert r.material_id.startswith("mp-") and r.source == "phonondb2018"
        assert r.fidelity == "vasp_pbesol"
        n = len(r.structure)
        assert r.born_charges.shape == (n, 3, 3)
        assert r.gamma_frequencies_cm1.shape == (3 * n,)
        assert fc[r.material_id].shape == (3 * n, 3 * n)
        if r.e_ionic is not None:
            np.testing.assert_allclose(r.e_total, r.e_electronic + r.e_ionic)
            assert "unstable_gamma" not in r.flags
        else:
            assert "unstable_gamma" in r.flags


def test_phonon_records_and_force_constants_round_trip(tmp_path):
    """The phonons and force-constant file layouts load back (fixture: wurtzite MgTe)."""
    import gzip
    import json

    from dtnn_jax.data.phonondb import entry_from_files
    from dtnn_jax.data.records import structure_to_compact
    from dtnn_jax.data.sources import (
        load_phonondb2018_force_constants,
        load_phonondb2018_phonons,
    )

    d = FIXTURES / "phonondb" / "mp-1039"
    files = {p.name: p.read_bytes() for p in d.iterdir()}
    files["_dir"] = b"mp-1039-20180417"
    e = entry_from_files(files)
    s = Structure(Lattice(e.lattice), list(e.species), e.frac)
    payload = {
        "format_version": 1,
        "records": [
            {
                "material_id": e.material_id,
                "formula": s.composition.reduced_formula,
                "structure": structure_to_compact(s),
                "gamma_frequencies_cm1": e.frequencies_cm1.tolist(),
                "has_born": True,
            }
        ],
    }
    with gzip.open(tmp_path / "ph.json.gz", "wt") as f:
        json.dump(payload, f)
    (rec,) = load_phonondb2018_phonons(tmp_path / "ph.json.gz")
    assert rec.material_id == "mp-1039" and rec.has_born and not rec.unstable
    np.testing.assert_allclose(rec.gamma_frequencies_cm1, e.frequencies_cm1)
    np.savez(
        tmp_path / "fc.npz",
        material_ids=np.asarray([e.material_id]),
        n_atoms=np.asarray([4], np.int32),
        force_constants=e.force_constants.astype(np.float32)[np.tril_indices(12)],
    )
    k = load_phonondb2018_force_constants(tmp_path / "fc.npz")["mp-1039"]
    np.testing.assert_allclose(k, e.force_constants, rtol=1e-6, atol=1e-6)
