"""The physics model as users get it: a bundle with an electronic readout and a Born-charge
head, served by `DielectricModel`, `dtnn predict --phonons` and the refine stage of a screen.

The bundle is random-init and tiny (the physics must hold for any weights): electronic from a
DTNN readout, ionic = Z Kinv Z with K of the installed Nequix-OAM-1-PFT, total their sum.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json

import jax
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.config import ExperimentConfig, PhysicsConfig
from dtnn_jax.graph import BatchBudget, pad_to_bucket, with_features
from dtnn_jax.inference import DielectricModel, Member, ModelBundle, TargetModel
from dtnn_jax.models import TargetScaler
from dtnn_jax.models.factory import model_for
from dtnn_jax.training.synthetic import synthetic_graphs

ENCODER = "nequix-oam-1-pft"
TINY = {"width": 16, "vector_channels": 8, "tensor_channels": 4, "n_blocks": 1}


def _members(config: ExperimentConfig, seeds=(0, 1)) -> tuple[Member, ...]:
    readout = config.readout
    graphs = synthetic_graphs(1, readout.input_irreps, n_radial=readout.n_radial, seed=0)
    kwargs = {}
    if config.physics is not None:
        n = int(graphs[0].n_node[0])
        graphs = [with_features(graphs[0], nodes={"charge_nominal": np.ones(n, np.float32)})]
        kwargs = {"method": type(model_for(config)).charges}
    batch = pad_to_bucket(graphs, BatchBudget(max_graphs=1))
    init = jax.jit(functools.partial(model_for(config).init, **kwargs))
    scaler = TargetScaler(offset=0.0, scale=1.0)
    if config.physics is None:
        scaler = TargetScaler(offset=3.0, scale=1.0, output_map=config.readout.output_map)
    return tuple(
        Member(params=jax.device_get(init(jax.random.key(s), batch)), scaler=scaler, seed=s)
        for s in seeds
    )


@functools.cache
def physics_bundle() -> ModelBundle:
    from dtnn_jax.encoder import get_encoder

    electronic = ExperimentConfig.default("electronic", 2, encoder=ENCODER)
    electronic = dataclasses.replace(
        electronic, readout=dataclasses.replace(electronic.readout, **TINY)
    )
    ionic = ExperimentConfig.physics_ionic(encoder_layer=2, encoder=ENCODER)
    ionic = dataclasses.replace(ionic, readout=dataclasses.replace(ionic.readout, **TINY))
    assert ionic.physics == PhysicsConfig()
    return ModelBundle(
        name="tiny-physics",
        targets={
            "electronic": TargetModel(config=electronic, members=_members(electronic)),
            "ionic": TargetModel(config=ionic, members=_members(ionic)),
        },
        metadata={"description": "test", "encoder_sha256": get_encoder(ENCODER).weights_sha256},
    )


@pytest.fixture(scope="module")
def model() -> DielectricModel:
    return DielectricModel(physics_bundle())


def _nacl() -> Structure:
    lattice = Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60)
    return Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cu() -> Structure:
    return Structure(Lattice.from_parameters(2.55, 2.55, 2.55, 60, 60, 60), ["Cu"], [[0, 0, 0]])


def _mgo_strained() -> Structure:
    """Rock-salt MgO, sheared (lower symmetry: an anisotropic ionic tensor)."""
    lattice = Lattice.from_parameters(3.0, 3.1, 2.95, 62, 58, 61)
    return Structure(lattice, ["Mg", "O"], [[0, 0, 0], [0.52, 0.49, 0.5]])


def test_total_is_electronic_plus_ionic_and_ionic_is_physical(model):
    assert model.summed_total and model.physics_targets == ("ionic",)
    crystals = [_nacl(), _cu(), _mgo_strained()]
    mean, std, born = model.predict(crystals, "all", return_std=True, return_born_charges=True)
    np.testing.assert_allclose(mean["total"], mean["electronic"] + mean["ionic"], atol=1e-5)
    # a one-atom cell has no optical mode: exactly no ionic response
    assert np.all(mean["ionic"][1] == 0.0) and np.all(std["ionic"][1] == 0.0)
    for eps in mean["ionic"]:  # positive semi-definite (Z Kinv Z with Kinv >= 0)
        np.testing.assert_allclose(eps, eps.T, atol=1e-6)
        assert np.linalg.eigvalsh(eps).min() > -1e-6
    assert np.abs(mean["ionic"][2]).max() > 1e-3  # the head is not silent
    assert [z.shape for z in born] == [(2, 3, 3), (1, 3, 3), (2, 3, 3)]
    for z in born:  # the acoustic sum rule
        assert np.abs(z.sum(axis=0)).max() < 1e-5
    with pytest.raises(ValueError, match="no Born-charge head"):
        from tests.properties.tiny_model import tiny_model

        tiny_model().predict([_nacl()], return_born_charges=True)


def test_predict_phonons_modes_sum_to_the_ionic_tensor(model, tmp_path):
    """What ``dtnn predict --phonons`` prints (its record and table functions, with the
    fixture's model: loading the bundle from disk would compile everything again)."""
    from dtnn_jax.cli.predict import format_table, predict_records

    crystals = [_nacl(), _cu(), _mgo_strained()]  # the padded shape of the test above
    records = predict_records(model, crystals, model.targets, phonons=True)
    rec = json.loads(json.dumps(records[2]))  # JSON-ready
    assert records[1]["phonons"] is not None and len(records[1]["phonons"]) == 3  # Cu
    modes = rec["phonons"]
    assert len(modes) == 6 and sum(m["acoustic"] for m in modes) == 3
    assert np.asarray(rec["born_charges"]).shape == (2, 3, 3)
    ionic = np.asarray(rec["targets"]["ionic"]["tensor"])
    parts = sum(np.asarray(m["eps_ionic"]) for m in modes if not m["acoustic"])
    assert all(m["frequency_cm1"] > 0 for m in modes if not m["acoustic"])  # a stable crystal
    np.testing.assert_allclose(parts, ionic, rtol=1e-3, atol=1e-5 * np.abs(ionic).max())
    table = format_table(records, model.name)
    assert table.count("Gamma phonons") == 3 and table.count("acoustic") == 9


def test_bundle_round_trip_keeps_the_physics(tmp_path):
    from dtnn_jax.inference import load_bundle, save_bundle

    save_bundle(physics_bundle(), tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.targets["ionic"].config.physics == PhysicsConfig()
    assert set(loaded.targets) == {"electronic", "ionic"}


def test_screen_refines_the_best_with_the_physics_model(model, tmp_path):
    from dtnn_jax.inference.screening import screen
    from tests.properties.tiny_model import tiny_model

    # the tiny SevenNet readout has only "total": the refine model serves it as a sum
    pool = [_nacl(), _mgo_strained(), _cu(), _nacl()]
    summary = screen(
        pool, tiny_model(), tmp_path, rank_metals=True, refine_model=model, refine_top=3
    )
    assert summary["refine_model"] == "tiny-physics" and summary["n_refined"] == 3
    with open(tmp_path / "ranked.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["stage"] for r in rows] == ["refined"] * 3 + ["pre-screen"]
    assert sorted(r["prescreen_rank"] for r in rows[:3]) == ["1", "2", "3"]
    refined = [float(r["eps_poly_total"]) for r in rows[:3]]
    assert refined == sorted(refined, reverse=True)  # ranked by the refined score
    assert all(r["eps_poly_ionic"] != "" for r in rows[:3])  # the physics model's parts
    assert rows[3]["prescreen_rank"] == "" and rows[3]["eps_poly_ionic"] == ""


def test_only_what_the_targets_need_is_computed(model, monkeypatch):
    """Electronic alone and Born charges alone run no Hessian; ionic and total do."""
    from dtnn_jax.physics import force_constants as fc_module

    def refuse(*_args, **_kwargs):
        raise AssertionError("the Hessian ran for a target that does not need it")

    monkeypatch.setattr(fc_module, "force_constants", refuse)
    crystals = [_mgo_strained(), _nacl()]
    eps = model.predict(crystals, "electronic")
    assert eps.shape == (2, 3, 3) and np.all(np.isfinite(eps))
    eps_too, born = model.predict(crystals, "electronic", return_born_charges=True)
    np.testing.assert_array_equal(eps_too, eps)
    assert [z.shape for z in born] == [(2, 3, 3), (2, 3, 3)]
    for target in ("ionic", "total", "all"):
        with pytest.raises(AssertionError, match="Hessian ran"):
            model.predict(crystals, target)


def test_one_neighbour_search_per_crystal(model, monkeypatch, tmp_path):
    """The input pass's graph serves the features and K (a fresh K cache: K is computed)."""
    import dtnn_jax.graph.neighbors as neighbors

    monkeypatch.setenv("DTNN_JAX_CACHE", str(tmp_path))
    calls = []
    real = neighbors.neighbor_list

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(neighbors, "neighbor_list", counting)
    crystals = [_mgo_strained(), _nacl()]
    model.predict(crystals, "all")
    assert len(calls) == len(crystals)
    assert len(list((tmp_path / "crystals" / "force-constants").glob("*/*.npz"))) == 2


def test_cell_too_large_for_memory_is_refused_with_rc_2(model, monkeypatch, tmp_path, capsys):
    """The memory estimate runs before the Hessian: one message naming the size, rc 2."""
    import dtnn_jax.cli.predict as cli_predict
    from dtnn_jax.cli import main

    monkeypatch.setenv("DTNN_JAX_CACHE", str(tmp_path / "cache"))  # K not cached
    monkeypatch.setenv("DTNN_JAX_HESSIAN_MEMORY_GB", "0.01")
    monkeypatch.setattr(cli_predict, "load_model_or_fail", lambda _name: model)
    path = tmp_path / "MgO.cif"
    _mgo_strained().to(filename=str(path))
    assert main(["predict", str(path), "--target", "total"]) == 2
    err = capsys.readouterr().err
    assert "2 atoms" in err and "GB" in err and "fast model" in err and "Traceback" not in err
    # the electronic tensor needs no Hessian: not refused
    assert main(["predict", str(path), "--target", "electronic"]) == 0
