"""``dtnn predict`` / ``dtnn screen`` end to end with a tiny random-init bundle.

Bad files must come back as error records naming the file while the good ones are still
printed (exit 1); the screen's ranked CSV must be in FOM order and agree with `predict`.
"""

from __future__ import annotations

import csv
import json

import jax
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.cli import main
from dtnn_jax.config import TARGETS, ExperimentConfig, ReadoutConfig
from dtnn_jax.encoder.features import graphs_with_features
from dtnn_jax.graph import BatchBudget, pad_to_bucket
from dtnn_jax.inference import Member, ModelBundle, TargetModel, save_bundle
from dtnn_jax.inference import load_model as real_load_model
from dtnn_jax.models import DTNN, TargetScaler
from dtnn_jax.properties import ANISOTROPY_MIN_EIGENVALUE
from tests.properties.tiny_model import bundle_metadata

SMALL = ReadoutConfig(width=16, vector_channels=4, tensor_channels=4, n_blocks=1)


def _crystals() -> dict[str, Structure]:
    return {
        "nacl": Structure(
            Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60),
            ["Na", "Cl"],
            [[0] * 3, [0.5] * 3],
        ),
        "mgo": Structure(Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "sio2": Structure(
            Lattice.from_parameters(3.1, 4.2, 5.3, 71.0, 83.0, 104.0),
            ["Si", "O", "O"],
            [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.62, 0.71, 0.55]],
        ),
    }


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A 2-member bundle for all three targets (random readouts, distinct offsets)."""
    crystals = list(_crystals().values())
    graphs = graphs_with_features(crystals, 4, cache_dir=tmp_path_factory.mktemp("cache"))
    batch = pad_to_bucket(graphs, BatchBudget(max_graphs=4))
    targets = {}
    for k, t in enumerate(TARGETS):
        members = tuple(
            Member(
                params=DTNN(SMALL).init(jax.random.key(10 * k + seed), batch),
                scaler=TargetScaler(offset=3.0 + 4.0 * k + seed, scale=1.0),
                seed=seed,
            )
            for seed in range(2)
        )
        targets[t] = TargetModel(config=ExperimentConfig(target=t, readout=SMALL), members=members)
    bundle = ModelBundle(name="tiny-cli", targets=targets, metadata=bundle_metadata())
    return save_bundle(bundle, tmp_path_factory.mktemp("bundle") / "tiny-cli")


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    """Three good crystals in three formats, a corrupt CIF and an unsupported element."""
    d = tmp_path_factory.mktemp("pool")
    c = _crystals()
    c["nacl"].to(filename=str(d / "nacl.cif"))
    c["mgo"].to(filename=str(d / "POSCAR_mgo"), fmt="poscar")
    c["sio2"].to(filename=str(d / "sio2.json"))
    (d / "broken.cif").write_text("data_x\n_this is not a crystal\n")
    Structure(Lattice.cubic(4.0), ["Am", "O"], [[0, 0, 0], [0.5] * 3]).to(
        filename=str(d / "amo.cif")
    )
    return d


@pytest.fixture(scope="module")
def model(bundle_dir):
    return real_load_model(bundle_dir)


@pytest.fixture
def shared_model(model, monkeypatch):
    """CLI calls reuse one loaded model (and its compiled function) instead of reloading."""
    import dtnn_jax.inference as inference

    monkeypatch.setattr(inference, "load_model", lambda name=None: model)
    return model


def test_predict_json_names_bad_files_and_keeps_the_rest(bundle_dir, model, pool_dir, capsys):
    # the real loading path once: --model is a bundle directory
    rc = main(["predict", str(pool_dir), "--model", str(bundle_dir), "--format", "json"])
    out = capsys.readouterr()
    assert rc == 1
    data = json.loads(out.out)
    by_name = {rec["id"]: rec for rec in data["crystals"]}
    assert set(by_name) == {"nacl", "POSCAR_mgo", "sio2", "broken", "amo"}
    assert "parse" in by_name["broken"]["error"]
    assert "unsupported element(s) Am" in by_name["amo"]["error"]
    assert "broken.cif" in out.err and "amo.cif" in out.err and "2 of 5" in out.err
    assert by_name["broken"]["targets"] == {}
    direct = model.predict_detailed([_crystals()[k] for k in ("nacl", "mgo", "sio2")])
    for k, name in enumerate(("nacl", "POSCAR_mgo", "sio2")):
        rec = by_name[name]
        assert rec["error"] is None
        assert set(rec["targets"]) == set(TARGETS)
        for t in TARGETS:
            v = rec["targets"][t]
            np.testing.assert_allclose(v["tensor"], direct.mean[t][k], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(v["std"], direct.std[t][k], rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(v["eps_poly"], np.trace(direct.mean[t][k]) / 3, rtol=1e-4)
            np.testing.assert_allclose(np.mean(v["eigenvalues"]), v["eps_poly"], rtol=1e-5)
            assert v["eigenvalues"] == sorted(v["eigenvalues"])
        assert rec["refractive_index"] == pytest.approx(
            np.sqrt(rec["targets"]["electronic"]["eps_poly"]), rel=1e-6
        )


def test_predict_table_and_csv(shared_model, pool_dir, capsys):
    files = [str(pool_dir / n) for n in ("nacl.cif", "broken.cif", "sio2.json")]
    rc = main(["predict", *files, "--format", "table", "--target", "total"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "broken.cif: ERROR:" in out
    blocks = out.split("\n== ")[1:]
    assert [b.split()[0].rsplit("/", 1)[-1] for b in blocks] == [
        "nacl.cif",
        "broken.cif:",
        "sio2.json",
    ]
    assert "total: eps_poly" in blocks[0] and "electronic:" not in blocks[0]
    assert "refractive index (electronic)" in blocks[2]

    rc = main(["predict", *files, "--format", "csv"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = list(csv.DictReader(out.splitlines()))
    assert [r["id"] for r in rows] == ["nacl", "broken", "sio2"]
    assert rows[1]["error"] and rows[1]["total_xx"] == ""
    for r in (rows[0], rows[2]):
        tensor = np.array([float(r[f"total_{c}"]) for c in ("xx", "yy", "zz")])
        assert float(r["total_eps_poly"]) == pytest.approx(tensor.mean(), rel=1e-4)
        eig = [float(r[f"ionic_eig{i}"]) for i in (1, 2, 3)]
        if eig[0] >= ANISOTROPY_MIN_EIGENVALUE:
            assert float(r["ionic_anisotropy"]) == pytest.approx(eig[2] / eig[0], rel=1e-4)
        else:  # a ~0 tensor: n/a
            assert r["ionic_anisotropy"] == ""

    # all good -> exit 0
    assert main(["predict", files[0], "--format", "csv"]) == 0


def test_screen_ranks_by_fom(shared_model, pool_dir, tmp_path, capsys):
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("id,band_gap_ev\nnacl,5.0\nPOSCAR_mgo,7.8\nsio2.json,9.0\n")
    out_dir = tmp_path / "screen"
    args = ["--band-gaps", str(gaps), "--top", "2", "--chunk-size", "2", "--no-progress"]
    rc = main(["screen", str(pool_dir), *args, "--out", str(out_dir)])
    printed = capsys.readouterr()
    assert rc == 1  # broken.cif and amo.cif
    assert "broken.cif" in printed.err
    with open(out_dir / "ranked.csv") as f:
        rows = list(csv.DictReader(f))
    ranked = [r for r in rows if r["rank"]]
    assert [r["rank"] for r in ranked] == ["1", "2", "3"]
    fom = [float(r["fom"]) for r in ranked]
    assert fom == sorted(fom, reverse=True)
    for r in ranked:
        assert float(r["fom"]) == pytest.approx(
            float(r["band_gap_ev"]) * float(r["eps_poly_total"]), rel=1e-4
        )
    # the screen's eps_poly equals what predict gives for the same crystal
    direct = shared_model.predict_detailed([_crystals()["mgo"]])
    mgo = next(r for r in ranked if r["id"] == "POSCAR_mgo")
    assert float(mgo["eps_poly_total"]) == pytest.approx(
        np.trace(direct.mean["total"][0]) / 3, rel=1e-4
    )
    failed = [r for r in rows if not r["rank"]]
    assert {r["id"] for r in failed} == {"broken", "amo"} and all(r["error"] for r in failed)
    assert rows[-2:] == failed  # failures last

    for name in ("eps_vs_band_gap.png", "fom_distribution.png", "element_frequency.png"):
        assert (out_dir / name).stat().st_size > 1000
    freq = json.loads((out_dir / "element_frequency.json").read_text())
    top_elements = {"nacl": 2, "POSCAR_mgo": 2, "sio2": 2}
    assert freq["n_top"] == 2 and freq["n_pool"] == 3
    assert sum(e["top_count"] for e in freq["elements"].values()) == sum(
        top_elements[r["id"]] for r in ranked[:2]
    )
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["n_failed"] == 2 and summary["note"] is None
    assert [e["id"] for e in summary["top_k"]] == [r["id"] for r in ranked[:2]]


def test_screen_without_band_gaps_and_bad_gap_file(shared_model, pool_dir, tmp_path, capsys):
    out_dir = tmp_path / "s"
    rc = main(["screen", str(pool_dir), "--top", "3", "--out", str(out_dir), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "ranks eps_poly (total) only" in printed and "needs band gaps" in printed
    with open(out_dir / "ranked.csv") as f:
        ranked = [r for r in csv.DictReader(f) if r["rank"]]
    poly = [float(r["eps_poly_total"]) for r in ranked]
    assert poly == sorted(poly, reverse=True) and all(r["fom"] == "" for r in ranked)
    assert not (out_dir / "eps_vs_band_gap.png").exists()

    bad = tmp_path / "bad.csv"
    bad.write_text("material,gap\nnacl,5\n")
    assert main(["screen", str(pool_dir), "--band-gaps", str(bad), "--out", str(out_dir)]) == 2
    assert "missing column(s) id, band_gap_ev" in capsys.readouterr().err
    bad.write_text("id,band_gap_ev\nsomething-else,5\n")
    assert main(["screen", str(pool_dir), "--band-gaps", str(bad), "--out", str(out_dir)]) == 2
    assert "no crystal of the pool has a band gap" in capsys.readouterr().err


def test_predict_inversion_average_flag(shared_model, pool_dir, capsys):
    rc = main(["predict", str(pool_dir / "sio2.json"), "--format", "json", "--inversion-average"])
    assert rc == 0
    tensor = json.loads(capsys.readouterr().out)["crystals"][0]["targets"]["total"]["tensor"]
    sio2 = _crystals()["sio2"]
    averaged = shared_model.predict_detailed([sio2], inversion_average=True).mean["total"][0]
    plain = shared_model.predict_detailed([sio2]).mean["total"][0]
    np.testing.assert_allclose(tensor, averaged, rtol=1e-4, atol=1e-5)
    assert np.abs(averaged - plain).max() > 1e-4  # the flag really changes the computation
