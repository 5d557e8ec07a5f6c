"""Band gaps and likely-metal flags: the charge-balance rule and the shipped pool's flags."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from dtnn_jax.data import load_petousis2017, load_screening_pool
from dtnn_jax.data.records import (
    INSULATOR_SOURCES,
    PoolRecord,
    charge_balanced,
    intermetallic_like,
    likely_metal,
    oxidation_states,
)
from dtnn_jax.data.shipped import DATA_DIR, POOL_FILE, pool_record_from_json, read_payload

# Metals and intermetallics, among them the ones `dtnn screen shipped` ranked first.
METALS = (
    "Sb Ag Co Cu Fe Al SnSb CuSn Cu6Sn5 Cu3Sn Ag3Sn NiAl Ni3Al TiAl FeAl CuZn MgCu2 Cu3Au "
    "AuCu PtSn PdSn CoSn FeSn2 Mn3Sn CoSi CoSi2 Fe2Si Ni2Si PtSi Pd2Si MgB2 TiB2 LiPd DyCu5"
).split()
# Insulators and semiconductors of the usual ionic kinds.
INSULATORS = (
    "NaCl LiF KBr CaF2 AgCl CuCl Cu2O MgO Al2O3 SiO2 TiO2 Ti2O3 ZrO2 HfO2 Y2O3 La2O3 Ta2O5 "
    "Nb2O5 SnO SnO2 Fe2O3 Fe3O4 NiO SrTiO3 BaTiO3 PbTiO3 BaZrO3 LaAlO3 LiNbO3 MgAl2O4 "
    "Sr2SiO4 CaCO3 BaSO4 Li3PO4 KNO3 GaN AlN BN Si3N4 Li3N NaN3 ZnS CdTe K2S3 FeS2 GaAs GaSb "
    "InSb Mg3Sb2 ZnSb SiC CaC2 Li12Si7"
).split()
# Documented failure modes, pinned so that any change of the rule is noticed.
CHARGE_BALANCED_METALS = "TiN ZrN TiC NbC TiO NbO VO RuO2 ReO3 CrO2 SrVO3 LaNiO3 NbSe2 TaS2 "
CHARGE_BALANCED_METALS += "Cu3Sb Cu2Sb NiSb Ni3B CrB4"
UNBALANCED_INSULATORS = "Si Ge Se C AuCl KClO4 BaO2 ClF3 CsAu ScNiBi LiMgBi Na2PtH6 PtP2 "
UNBALANCED_INSULATORS += "Bi2Te3 Sb2Te3 BiTeI PbTe"

PETOUSIS_CHARGE_BALANCED = 955  # of 1,056; see PROVENANCE.md


@pytest.mark.parametrize("formula", METALS)
def test_metals_are_not_charge_balanced(formula):
    assert not charge_balanced(formula)


@pytest.mark.parametrize("formula", INSULATORS)
def test_ionic_insulators_are_charge_balanced(formula):
    assert charge_balanced(formula)


@pytest.mark.parametrize("formula", CHARGE_BALANCED_METALS.split())
def test_known_failure_charge_balanced_metals(formula):
    assert charge_balanced(formula)


@pytest.mark.parametrize("formula", UNBALANCED_INSULATORS.split())
def test_known_failure_unbalanced_insulators(formula):
    assert not charge_balanced(formula)


def test_electronegativity_margin_decides_snsb():
    # Sn2+/Sb2- and Sn3+/Sb3- balance, but Sb exceeds Sn by only 0.09 on the Pauling scale.
    assert oxidation_states("Sn") == (2, 3, 4) and -2 in oxidation_states("Sb")
    assert not charge_balanced("SnSb")
    assert charge_balanced("Mg3Sb2")  # Sb3- with Mg (margin 0.74)


def test_reduced_formula_is_the_unit():
    # Sn4Sb4 could mix Sn2+/Sn4+ over four sites; the reduced formula SnSb is what counts.
    assert not charge_balanced("Sn4Sb4")
    assert charge_balanced("Fe6O8")  # Fe3O4: mixed valence inside the formula unit
    assert charge_balanced("O3Al2") == charge_balanced("Al2O3")


def test_accepts_composition_structure_and_string():
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert charge_balanced(nacl) and charge_balanced(nacl.composition)
    assert charge_balanced(Composition("NaCl"))
    with pytest.raises(ValueError, match="integer"):
        charge_balanced("Li0.3CoO2")


def test_likely_metal_precedence():
    # A known gap decides; then the source flag; then the composition.
    assert likely_metal("NaCl", band_gap_ev=0.0)
    assert not likely_metal("Sb", band_gap_ev=0.5)
    assert likely_metal("DyCu5") and not likely_metal("NaCl")
    assert likely_metal("GaAg2")  # a piezoelectric-subset entry: the subset does not decide
    assert likely_metal("NaCl", balanced=False)  # a precomputed flag is trusted


def test_old_pool_record_without_flags_still_loads():
    structure = {"lattice": np.eye(3).tolist(), "species": ["Sb"], "frac": [[0, 0, 0]]}
    old = {
        "material_id": "mp-x",
        "formula": "Sb",
        "structure": structure,
        "e_above_hull_ev": None,
        "sources": ["piezoelectric_tensor"],
    }
    r = pool_record_from_json(old)
    assert math.isnan(r.band_gap_ev) and r.charge_balanced is None
    assert r.insulator_by_construction and r.likely_metal  # the subset does not decide
    r = pool_record_from_json({**old, "sources": ["flla_2015"]})
    assert not r.insulator_by_construction and r.likely_metal


@pytest.fixture(scope="module")
def pool():
    return load_screening_pool()


def _provenance_int(pattern: str) -> int:
    text = (DATA_DIR / "PROVENANCE.md").read_text()
    match = re.search(pattern, text)
    assert match, pattern
    return int(match.group(1).replace(",", ""))


def test_pool_fields_load(pool):
    for p in pool:
        assert isinstance(p, PoolRecord)
        assert isinstance(p.charge_balanced, bool)
        assert isinstance(p.insulator_by_construction, bool)
        assert math.isnan(p.band_gap_ev)  # no pool table has a band gap
        assert p.insulator_by_construction == any(s in INSULATOR_SOURCES for s in p.sources)


def test_pool_flags_match_the_rule(pool):
    # The precomputed flags are what the public function says now (same pymatgen lists).
    mismatched = [
        p.material_id for p in pool if charge_balanced(p.structure.composition) != p.charge_balanced
    ]
    assert not mismatched


def test_issue_metals_are_flagged(pool):
    named = [p for p in pool if p.formula in {"Sb", "Ag", "SnSb", "CuSn", "Co"}]
    assert len(named) >= 5
    assert all(p.likely_metal for p in named)


def test_pool_counts_match_provenance_and_payload(pool):
    counts = {
        "records": len(pool),
        "band_gap_known": sum(math.isfinite(p.band_gap_ev) for p in pool),
        "insulator_by_construction": sum(p.insulator_by_construction for p in pool),
        "charge_balanced": sum(p.charge_balanced for p in pool),
        "insulator_by_construction_not_charge_balanced": sum(
            p.insulator_by_construction and not p.charge_balanced for p in pool
        ),
        "likely_metal": sum(p.likely_metal for p in pool),
    }
    assert read_payload(DATA_DIR / POOL_FILE)["metal_flags"]["counts"] == counts
    assert (
        _provenance_int(r"`insulator_by_construction` \(([\d,]+) records\)")
        == (counts["insulator_by_construction"])
    )
    assert _provenance_int(r"`charge_balanced` \(([\d,]+) records\)") == counts["charge_balanced"]
    likely = _provenance_int(r"subset does not override it, see above\): ([\d,]+) records")
    assert likely == counts["likely_metal"]
    assert (
        _provenance_int(r"only `insulator_by_construction` ([\d,]+)")
        == (counts["insulator_by_construction_not_charge_balanced"])
    )
    assert counts["records"] == 5255 and counts["likely_metal"] == 2505  # 6 removed (issue 23)


def test_petousis_false_metal_rate():
    records = load_petousis2017()
    assert min(r.band_gap_ev for r in records) > 0.1  # all insulators
    n_balanced = sum(charge_balanced(r.structure.composition) for r in records)
    assert n_balanced == PETOUSIS_CHARGE_BALANCED
    assert _provenance_int(r"([\d,]+) / 1,056 \([\d.]+%\) are charge-balanced") == n_balanced
    payload = read_payload(DATA_DIR / POOL_FILE)
    assert payload["metal_flags"]["petousis2017_charge_balanced"] == n_balanced
    assert 1 - n_balanced / len(records) == pytest.approx(0.0956, abs=5e-4)  # false-metal rate


@pytest.mark.parametrize("formula", ["HfSi", "Ti2C", "ZrSb", "Sc2BC2", "Sc2AlSi2"])
def test_charge_balanced_intermetallics_are_likely_metals(formula):
    assert charge_balanced(formula) and intermetallic_like(formula)
    assert likely_metal(formula)


@pytest.mark.parametrize("formula", ["Mg3Sb2", "LiZnAs", "CdSiP2", "TiO2", "ScN", "LaF3"])
def test_zintl_d10_and_ionic_compounds_are_not_intermetallic(formula):
    assert not intermetallic_like(formula) and not likely_metal(formula)


def test_likely_metal_rate_on_the_shipped_insulators():
    """The rule's false-metal rate on 1,056 DFPT insulators (the docstrings quote it)."""
    flagged = sum(likely_metal(r.structure) for r in load_petousis2017())
    assert flagged == 116
