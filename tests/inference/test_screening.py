"""Screening library: tensor properties, rankings and metrics on hand-made examples; the
streaming `screen` with a stand-in model whose tensors are known exactly."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.encoder import get_encoder
from dtnn_jax.inference import Prediction
from dtnn_jax.inference.pool import BandGapFileError, read_band_gaps
from dtnn_jax.inference.screening import screen
from dtnn_jax.inference.screening_report import element_frequency
from dtnn_jax.inputs import structure_id
from dtnn_jax.metrics import rank_order, recall_at_top_fraction, spearman
from dtnn_jax.properties import figure_of_merit, tensor_properties


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_tensor_properties_of_a_rotated_diagonal_tensor(rng):
    rot = _rotation(rng)
    eps = np.stack(
        [
            rot @ np.diag([2.0, 3.0, 6.0]) @ rot.T,
            np.eye(3) * 4.0,
            np.full((3, 3), np.nan),  # a failed crystal stays NaN
            np.diag([-1.0, 2.0, 2.0]),  # unphysical: no anisotropy ratio
        ]
    )
    p = tensor_properties(eps)
    np.testing.assert_allclose(p.eigenvalues[0], [2.0, 3.0, 6.0], atol=1e-12)
    np.testing.assert_allclose(p.eps_poly[:2], [11 / 3, 4.0])
    np.testing.assert_allclose(p.anisotropy[:2], [3.0, 1.0])
    np.testing.assert_allclose(p.refractive_index[:2], [np.sqrt(11 / 3), 2.0])
    assert np.isnan(p.eigenvalues[2]).all() and np.isnan(p.eps_poly[2])
    assert np.isnan(p.anisotropy[3]) and p.eps_poly[3] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[n, 3, 3\]"):
        tensor_properties(np.eye(3))


def test_rankings_put_nan_last():
    scores = np.array([1.0, np.nan, 3.0, 2.0, 3.0])
    assert rank_order(scores).tolist() == [2, 4, 3, 0, 1]  # ties keep input order
    np.testing.assert_allclose(figure_of_merit([2.0, 0.5], [3.0, 10.0]), [6.0, 5.0])


def test_recall_at_top_fraction_hand_made():
    true = np.arange(10, 0, -1, dtype=float)  # best first: 0, 1, 2, ...
    assert recall_at_top_fraction(true, true, 0.2) == 1.0
    assert recall_at_top_fraction(true, -true, 0.2) == 0.0
    swapped = true.copy()
    swapped[[1, 5]] = swapped[[5, 1]]  # crystal 1 drops out of the predicted top 2
    assert recall_at_top_fraction(true, swapped, 0.2) == 0.5
    assert recall_at_top_fraction(true, swapped, 0.1) == 1.0  # k = 1: crystal 0 only
    # k = round(0.3 * 10) = 3; predicted top 3 is {0, 5, 2} -> 2 of the true {0, 1, 2}
    assert recall_at_top_fraction(true, swapped, 0.3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="fraction"):
        recall_at_top_fraction(true, true, 0.0)


def test_spearman_hand_made():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)
    # ties get average ranks: y ranks [1, 2, 3.5, 5, 3.5] -> 8 / sqrt(10 * 9.5)
    y = np.array([5.0, 6.0, 7.0, 8.0, 7.0])
    assert spearman(x, y) == pytest.approx(8 / np.sqrt(95))
    assert np.isnan(spearman(x, np.ones(5)))
    with pytest.raises(ValueError, match="non-finite"):
        spearman(x, np.array([1.0, np.nan, 2.0, 3.0, 4.0]))


def test_read_band_gaps_validates(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("id, band_gap_ev ,note\nmp-1,1.5,x\nPOSCAR_a,0,y\n")
    assert read_band_gaps(f) == {"mp-1": 1.5, "POSCAR_a": 0.0}
    cases = {
        "id,gap\nmp-1,1\n": "missing column",
        "id,band_gap_ev\nmp-1,abc\n": r"line 2 \(mp-1\): band_gap_ev 'abc' is not a number",
        "id,band_gap_ev\nmp-1,-0.5\n": "finite number >= 0",
        "id,band_gap_ev\nmp-1,nan\n": "finite number >= 0",
        "id,band_gap_ev\nmp-1,1\nmp-1,2\n": "line 3: duplicate id 'mp-1'",
        "id,band_gap_ev\n,1\n": "empty id",
        "id,band_gap_ev\n": "no band gaps",
    }
    for text, message in cases.items():
        f.write_text(text)
        with pytest.raises(BandGapFileError, match=message):
            read_band_gaps(f)
    with pytest.raises(BandGapFileError, match="not found"):
        read_band_gaps(tmp_path / "missing.csv")


def test_structure_id():
    assert structure_id("/a/mp-149.cif") == "mp-149"
    assert structure_id("x/mp-1.json.gz") == "mp-1"
    assert structure_id("POSCAR_mgo") == "POSCAR_mgo"
    assert structure_id("mp-7.VASP") == "mp-7"


def test_element_frequency_counts_each_crystal_once():
    top = [{"elements": ["Ba", "O", "Ti"]}, {"elements": ["O", "Sr", "Ti"]}]
    pool = [*top, {"elements": ["Na", "Cl"]}, {"elements": ["O", "Si"]}]
    freq = element_frequency(top, pool)
    assert freq["n_top"] == 2 and freq["n_pool"] == 4
    assert sum(e["top_count"] for e in freq["elements"].values()) == 6
    assert list(freq["elements"])[:2] == ["O", "Ti"]  # most frequent first
    assert freq["elements"]["O"]["pool_fraction"] == 0.75
    assert freq["elements"]["Ti"]["enrichment"] == pytest.approx(1.0 / 0.5)


class _IsotropicModel:
    """Stand-in for `DielectricModel`: eps = (Z-mean of the crystal) x identity, exactly."""

    name = "isotropic-z"
    targets = ("electronic", "total")
    encoder = get_encoder()  # for the input pass only

    def __init__(self):
        self.calls: list[int] = []

    def ensemble_size(self, target):
        return 1

    def predict_inputs(self, crystals, *_, **__):
        self.calls.append(len(crystals))
        n = len(crystals)
        z = np.array([np.mean([site.specie.Z for site in c.structure]) for c in crystals])
        mean = {t: (z * (1 + k))[:, None, None] * np.eye(3) for k, t in enumerate(self.targets)}
        std = {t: np.zeros((n, 3, 3)) for t in self.targets}
        poly_std = {t: np.zeros(n) for t in self.targets}
        return Prediction(
            mean=mean,
            std=std,
            eps_poly_std=poly_std,
            errors=[c.error for c in crystals],
            sources=[c.source for c in crystals],
        )


def test_screen_streams_in_chunks_and_ranks_by_fom(tmp_path):
    def crystal(a, b):
        return Structure(Lattice.cubic(4.0), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])

    pool = [
        crystal("Na", "Cl"),  # Z-mean 14
        crystal("Mg", "O"),  # 10
        crystal("Ba", "O"),  # 32
        crystal("K", "Br"),  # 27
        crystal("Li", "F"),  # 6
    ]
    gaps = {"#0": 5.0, "#1": 7.0, "#2": 4.0, "#3": 1.0}  # #4 has no band gap
    model = _IsotropicModel()
    summary = screen(pool, model, tmp_path, band_gaps=gaps, top_k=2, chunk_size=2)
    assert model.calls == [2, 2, 1]
    # FOM (total = 2 x Z-mean): #0 140, #1 140, #2 256, #3 54; ties keep input order
    with open(tmp_path / "ranked.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["#2", "#0", "#1", "#3", "#4"]
    assert [float(r["fom"]) for r in rows[:4]] == [256.0, 140.0, 140.0, 54.0]
    assert rows[4]["rank"] == "" and rows[4]["fom"] == "" and rows[4]["error"] == ""
    assert summary["n_without_band_gap"] == 1
    assert [e["id"] for e in summary["top_k"]] == ["#2", "#0"]
    freq = json.loads((tmp_path / "element_frequency.json").read_text())
    assert {k: v["top_count"] for k, v in freq["elements"].items()} == {
        "Ba": 1,
        "Cl": 1,
        "Na": 1,
        "O": 1,
    }
    assert freq["n_pool"] == 5


def test_screen_fails_fast_when_no_band_gap_id_matches(tmp_path):
    pool = [Structure(Lattice.cubic(4.0), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])]
    model = _IsotropicModel()
    with pytest.raises(BandGapFileError, match="no crystal of the pool has a band gap"):
        screen(pool, model, tmp_path, band_gaps={"mp-1": 1.0})
    assert model.calls == []  # nothing was predicted
    with pytest.raises(ValueError, match="not in model"):
        screen(pool, model, tmp_path, target="ionic")


def _rock_salt(a: str, b: str) -> Structure:
    return Structure(Lattice.cubic(4.0), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_the_band_gap_proxy_keeps_high_eps_inf_crystals_out_of_the_ranking(tmp_path):
    """Without band gaps, eps_inf > EPS_INF_SMALL_GAP (here Z-mean > 15.5) is not ranked."""
    pool = [_rock_salt("Na", "Cl"), _rock_salt("Ba", "O"), _rock_salt("K", "Br")]  # Z 14, 32, 27
    summary = screen(pool, _IsotropicModel(), tmp_path / "a", top_k=3)
    assert [e["id"] for e in summary["top_k"]] == ["#0"]
    assert summary["n_small_gap_proxy"] == 2 and summary["n_ranked"] == 1
    assert "eps_inf > 15.5" in summary["note"]
    with open(tmp_path / "a" / "ranked.csv") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert rows["#1"]["excluded"].startswith("band-gap proxy: predicted eps_inf 32.0 > 15.5")
    assert rows["#1"]["small_gap_proxy"] == "True" and rows["#1"]["rank"] == ""
    # a known band gap decides over the proxy; --rank-metals ranks them all
    gaps = {"#1": 4.0}
    summary = screen(pool, _IsotropicModel(), tmp_path / "b", band_gaps=gaps, top_k=3)
    assert [e["id"] for e in summary["top_k"]] == ["#1"]  # the only one with a FOM
    summary = screen(pool, _IsotropicModel(), tmp_path / "c", top_k=3, rank_metals=True)
    assert [e["id"] for e in summary["top_k"]] == ["#1", "#2", "#0"]


def test_the_refine_stage_predicts_one_crystal_per_call(tmp_path):
    """So its progress bar advances crystal by crystal (the physics model costs per crystal)."""
    pool = [_rock_salt("Na", "Cl"), _rock_salt("Mg", "O"), _rock_salt("Li", "F")]
    fast, refine = _IsotropicModel(), _IsotropicModel()
    summary = screen(pool, fast, tmp_path, top_k=2, refine_model=refine, refine_top=3)
    assert fast.calls == [3] and refine.calls == [1, 1, 1] and summary["n_refined"] == 3


def test_the_shipped_pool_holds_no_entry_the_input_pass_refuses():
    """`dtnn screen shipped` must not fail on its own pool: the entries the input pass
    refuses (isolated atoms of sparse alkali metals) are removed when the pool is built
    (experiments/prepare_data.py), and the rest of that kind passes with both encoders."""
    from dtnn_jax.data import load_screening_pool
    from dtnn_jax.data.shipped import DATA_DIR, POOL_FILE, read_payload
    from dtnn_jax.inputs import InputItem, prepare_input

    removed = read_payload(DATA_DIR / POOL_FILE)["removed_by_input_pass"]
    assert len(removed) == 6 and all(
        "no neighbour within the cutoff" in r["reason"] for r in removed
    )
    pool = load_screening_pool()
    assert not {r["material_id"] for r in removed} & {r.material_id for r in pool}
    sparse = {"Li", "Na", "K", "Rb", "Cs", "Sr", "Ba"}
    kind = [r for r in pool if {el.symbol for el in r.structure.composition} <= sparse]
    assert len(kind) >= 5
    for encoder in (get_encoder("sevennet-0"), get_encoder("nequix-oam-1-pft")):
        for r in kind:
            (crystal,) = prepare_input(
                InputItem(r.structure, r.material_id, r.material_id), encoder
            )
            assert crystal.error is None, (r.material_id, crystal.error)
