"""Crystal symmetry on shipped examples: the predicted tensor has the crystal's symmetry.

Cubic crystals give isotropic tensors, uniaxial ones (tetragonal, trigonal, hexagonal) two
equal principal values, orthorhombic ones zero off-diagonals in the conventional frame, and
more generally eps = R eps R^T for every symmetry operation R of the crystal.

Which operations a model respects: rotation equivariance plus translation/permutation
invariance give eps = R eps R^T for every *proper* operation. The plain (SO(3)-only)
SevenNet-0 model is therefore guaranteed the textbook form only where the rotation
subgroup of the point group enforces it: always for cubic (23), trigonal and hexagonal
(a 3-fold axis), for tetragonal except -4 and -42m, for orthorhombic 222 and mmm. Mirrors
and -4 axes are improper; the inversion-averaged mode (O(3)-equivariant) respects them too,
so every record is checked with it.

Tolerance: relative to the tensor's largest component, ``SYM_TOL = 1e-4`` (float32 round-off
plus the shipped structures' deviation from exact symmetry; measured <= 7e-6 with the tiny
model, while the improper constraints the plain model misses are off by 2e-3 to 5e-3).

The tests run on a tiny random-init readout (symmetry holds for any weights) and, if a
trained bundle is shipped (``dtnn_jax/pretrained/*/bundle.json``), on it as well.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from dtnn_jax.data.shipped import load_petousis2017
from dtnn_jax.inference import DEFAULT_MODEL, available_models, load_model
from tests.properties.tiny_model import BUDGET, rel_error, tiny_model, transform

SYM_TOL = 1e-4
SYMPREC = 1e-3  # angstrom: find the operations the structures have to DFT precision

# material id -> point group (as found by spglib at SYMPREC), small cells of each family.
RECORDS = {
    "mp-441": "m-3m",  # Rb2Te, cubic
    "mp-422": "-43m",  # BeS, cubic, no inversion
    "mp-871": "23",  # FeSi, cubic, chiral
    "mp-22881": "-3m",  # CdCl2, trigonal
    "mp-13150": "3m",  # BN, trigonal, polar
    "mp-9252": "32",  # HgS, trigonal, chiral
    "mp-567290": "6mm",  # LaN, hexagonal, polar
    "mp-604884": "-6m2",  # BN, hexagonal
    "mp-2251": "6/mmm",  # Li3N, hexagonal
    "mp-560902": "4/mmm",  # MnF2, tetragonal
    "mp-471": "422",  # CdAs2, tetragonal, chiral
    "mp-5986": "4mm",  # BaTiO3, tetragonal, polar
    "mp-22909": "-42m",  # ZnCl2, tetragonal: uniaxial only through improper -4
    "mp-7909": "-4",  # Al2CdTe4, tetragonal: uniaxial only through improper -4
    "mp-568264": "mmm",  # SiSe2, orthorhombic
    "mp-28099": "mm2",  # SBr, orthorhombic: xy = 0 only through the mirrors
}
# Point groups whose textbook form needs an improper operation (not enforced by SO(3)).
NEEDS_IMPROPER = {"-42m", "-4", "mm2"}

MODELS = ["tiny", *(["shipped"] if available_models() else [])]


@functools.cache
def _records():
    wanted = {r.material_id: r for r in load_petousis2017() if r.material_id in RECORDS}
    assert set(wanted) == set(RECORDS), f"missing records: {set(RECORDS) - set(wanted)}"
    return [wanted[m] for m in RECORDS]


@functools.cache
def _model(name: str):
    if name == "tiny":
        return tiny_model()
    shipped = available_models()
    return load_model(DEFAULT_MODEL if DEFAULT_MODEL in shipped else shipped[0])


@functools.cache
def _predictions(name: str, inversion_average: bool) -> dict[str, dict[str, np.ndarray]]:
    """material id -> target -> eps [3, 3], for the records and (orthorhombic) conventional
    cells (key ``"<id>/conventional"``)."""
    structures, keys = [], []
    for r in _records():
        structures.append(r.structure)
        keys.append(r.material_id)
        if r.crystal_system == "orthorhombic":
            sga = SpacegroupAnalyzer(r.structure, symprec=SYMPREC)
            structures.append(sga.get_conventional_standard_structure())
            keys.append(f"{r.material_id}/conventional")
    model = _model(name)
    pred = model.predict_detailed(structures, budget=BUDGET, inversion_average=inversion_average)
    assert all(e is None for e in pred.errors), pred.errors
    return {k: {t: pred.mean[t][i] for t in model.targets} for i, k in enumerate(keys)}


def _enforced(point_group: str, inversion_average: bool) -> bool:
    return inversion_average or point_group not in NEEDS_IMPROPER


def test_records_have_the_listed_point_groups():
    for r in _records():
        sga = SpacegroupAnalyzer(r.structure, symprec=SYMPREC)
        assert sga.get_point_group_symbol() == RECORDS[r.material_id], r.material_id


@pytest.mark.parametrize("inversion_average", [False, True], ids=["so3", "inversion-averaged"])
@pytest.mark.parametrize("model", MODELS)
def test_tensor_has_the_crystal_symmetry(model, inversion_average):
    preds = _predictions(model, inversion_average)
    checked = 0
    for r in _records():
        pg = RECORDS[r.material_id]
        ops = SpacegroupAnalyzer(r.structure, symprec=SYMPREC).get_symmetry_operations(
            cartesian=True
        )
        for target, eps in preds[r.material_id].items():
            where = f"{r.material_id} ({r.formula}, {pg}) {target}"
            for op in ops:
                rot = op.rotation_matrix
                if np.linalg.det(rot) > 0 or inversion_average:
                    assert rel_error(transform(rot, eps), eps) < SYM_TOL, where
            if not _enforced(pg, inversion_average):
                continue
            checked += 1
            values = np.linalg.eigvalsh(eps)  # ascending
            scale = np.abs(eps).max()
            if r.crystal_system == "cubic":
                iso = np.trace(eps) / 3 * np.eye(3)
                assert rel_error(eps, iso) < SYM_TOL, where
            elif r.crystal_system in ("tetragonal", "trigonal", "hexagonal"):
                gaps = np.abs(np.diff(values)) / scale
                assert gaps.min() < SYM_TOL, f"{where}: principal values {values}"
            elif r.crystal_system == "orthorhombic":
                conv = preds[f"{r.material_id}/conventional"][target]
                off = conv[~np.eye(3, dtype=bool)]
                assert np.abs(off).max() < SYM_TOL * scale, f"{where}: {conv}"
    assert checked >= len(RECORDS) - (0 if inversion_average else len(NEEDS_IMPROPER))


def test_plain_model_can_break_improper_symmetry():
    """Without inversion averaging, mirror/-4 constraints are not guaranteed (tiny model).

    With random weights the violation is generic: measured 2.2e-3 (ZnCl2, -42m), 5.1e-3
    (Al2CdTe4, -4), 2.8e-3 (SBr, mm2) of the largest component.
    """
    plain = _predictions("tiny", False)
    averaged = _predictions("tiny", True)
    violations = {}
    for r in _records():
        if RECORDS[r.material_id] not in NEEDS_IMPROPER:
            continue
        ops = SpacegroupAnalyzer(r.structure, symprec=SYMPREC).get_symmetry_operations(
            cartesian=True
        )
        improper = [op.rotation_matrix for op in ops if np.linalg.det(op.rotation_matrix) < 0]
        eps, avg = plain[r.material_id]["total"], averaged[r.material_id]["total"]
        violations[r.material_id] = max(rel_error(transform(q, eps), eps) for q in improper)
        assert max(rel_error(transform(q, avg), avg) for q in improper) < SYM_TOL
    assert max(violations.values()) > 1e-3, violations
