"""End-to-end training on tiny synthetic data: learning, checkpoints, resume, determinism."""

from __future__ import annotations

import dataclasses
import json
import types

import jax
import numpy as np
import pytest

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.graph import padded_batches
from dtnn_jax.models.readout import DTNN, count_params
from dtnn_jax.training import Checkpointer, evaluate, fit, train_and_evaluate
from dtnn_jax.training.contract import model_inputs
from dtnn_jax.training.step import OptimizerSpec, init_fn
from dtnn_jax.training.synthetic import synthetic_graphs

# The schedule horizon is fixed, so runs of 3 and 6 epochs follow the same learning rates
# and share one compiled train step.
DECAY_EPOCHS = 6


def config(max_epochs: int = 6, seed: int = 0) -> ExperimentConfig:
    base = ExperimentConfig.quick(seed=seed)
    train = dataclasses.replace(base.train, max_epochs=max_epochs, decay_epochs=DECAY_EPOCHS)
    return dataclasses.replace(base, train=train)


@pytest.fixture(scope="module")
def data():
    graphs = synthetic_graphs(20, config().readout.input_irreps, seed=0)
    return graphs[:16], graphs[16:]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """An uninterrupted 6-epoch run with checkpoints."""
    workdir = tmp_path_factory.mktemp("straight")
    return workdir, fit(config(6), *data, workdir)


def without_timing(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def assert_trees_equal(a, b):
    flat_a, tree_a = jax.tree_util.tree_flatten(a)
    flat_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_fit_learns_and_writes_a_run_directory(straight):
    workdir, result = straight
    maes = [h["train_mae"] for h in result.history]
    assert len(maes) == 6 and all(np.isfinite(maes))
    assert maes[-1] < 0.9 * maes[0]
    assert result.epochs_run == 6 and result.start_epoch == 0
    assert result.best_val_mae == min(h["val_mae"] for h in result.history)
    with Checkpointer(workdir) as ckpt:
        assert ckpt.latest_step() == 6
    assert len(json.loads((workdir / "history.json").read_text())) == 6
    saved = ExperimentConfig.from_dict(json.loads((workdir / "run_config.json").read_text()))
    assert saved == config(6)


def test_resume_continues_bit_identically(data, straight, tmp_path):
    first = fit(config(3), *data, tmp_path)
    assert first.epochs_run == 3
    resumed = fit(config(6), *data, tmp_path)  # "killed" after 3 epochs, restarted
    assert resumed.start_epoch == 3 and resumed.epochs_run == 6
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    _, reference = straight
    assert_trees_equal(resumed.params, reference.params)
    assert without_timing(resumed.history) == without_timing(reference.history)


def test_same_seed_gives_bit_identical_params(data, straight):
    again = fit(config(6), *data, workdir=None)
    assert_trees_equal(again.params, straight[1].params)
    other = fit(config(1, seed=1), *data, workdir=None)
    leaves = zip(
        jax.tree_util.tree_leaves(other.params),
        jax.tree_util.tree_leaves(again.params),
        strict=True,
    )
    assert any(not np.array_equal(x, y) for x, y in leaves)


def test_resume_refuses_a_different_model(data, straight):
    workdir, _ = straight
    with pytest.raises(ValueError, match="seed"):
        fit(config(6, seed=1), *data, workdir)


def test_optimizer_state_holds_only_readout_params(data):
    cfg = config()
    batches = list(padded_batches(data[0], cfg.train.batch))
    spec = OptimizerSpec.from_config(cfg.train, len(batches))
    first = model_inputs(batches[0][1])
    params, opt_state = init_fn(DTNN(cfg.readout), spec)(jax.random.key(0), first)
    adam = opt_state[1][0]  # chain(clip, adamw) -> adamw = chain(scale_by_adam, ...)
    assert jax.tree_util.tree_structure(adam.mu) == jax.tree_util.tree_structure(params)
    assert jax.tree_util.tree_structure(adam.nu) == jax.tree_util.tree_structure(params)
    n_arrays = sum(x.size for x in jax.tree_util.tree_leaves(opt_state) if x.ndim > 0)
    assert n_arrays == 2 * count_params(params)
    assert set(params["params"]) >= {"scalar_embed", "block_0", "readout_mlp"}


def test_evaluate_keeps_order_and_matches_single_crystals(straight, data):
    _, result = straight
    cfg = config()
    val = data[1]
    together = evaluate(result.params, cfg, val, result.scaler)
    assert together.shape == (len(val), 3, 3)
    np.testing.assert_allclose(together, np.swapaxes(together, 1, 2), atol=1e-5)
    for i, g in enumerate(val):
        alone = evaluate(result.params, cfg, [g], result.scaler)[0]
        np.testing.assert_allclose(alone, together[i], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="scaler"):
        evaluate(result.params, cfg, val)


def test_train_and_evaluate_writes_metrics_and_baselines(data, tmp_path):
    graphs = [*data[0], *data[1]]
    systems = ["cubic", "hexagonal", "triclinic", "monoclinic"]
    records = [
        types.SimpleNamespace(
            has_target=lambda name: name == "total",
            target=lambda name, g=g: np.asarray(g.globals["target"][0]),
            crystal_system=systems[i % 4],
        )
        for i, g in enumerate(graphs)
    ]
    summary = train_and_evaluate(config(2), tmp_path, records=records, graphs=graphs)
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == 20
    for block in (summary["test"], *summary["baselines"].values()):
        assert set(block) >= {"mae_tensor", "mae_mean_diag", "mae_diag", "mae_offdiag"}
    assert sum(v["count"] for v in summary["test_by_crystal_system"].values()) == 2
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["test"] == pytest.approx(summary["test"])
    saved = np.load(tmp_path / "test_predictions.npz")
    assert saved["predicted"].shape == (summary["n_test"], 3, 3)


def test_fit_trains_another_module_in_the_same_harness(data, tmp_path):
    """fit(model=...) trains a from-scratch network on bare geometry (no encoder features)."""
    from dtnn_jax.models.painn import PaiNN, PaiNNConfig

    bare = [
        g._replace(
            nodes={k: g.nodes[k] for k in ("positions", "species")},
            edges={"shifts": g.edges["shifts"]},
        )
        for g in (*data[0], *data[1])
    ]
    train, val = bare[:16], bare[16:]
    with pytest.raises(ValueError, match="features"):
        fit(config(2), train, val)  # the default DTNN readout needs encoder features
    painn = PaiNN(PaiNNConfig(features=8, n_blocks=1, n_radial=4, cutoff_angstrom=4.0))
    result = fit(config(2), train, val, tmp_path, model=painn)
    assert result.epochs_run == 2 and np.isfinite(result.best_val_mae)
    assert set(result.params["params"]) == set(
        painn.init(jax.random.key(0), next(padded_batches(val, config().train.batch))[1])["params"]
    )
    assert all(h["seconds"] > 0 for h in result.history)
    pred = evaluate(result.params, config(2), val, result.scaler, model=painn)
    assert pred.shape == (len(val), 3, 3) and np.all(np.isfinite(pred))
    other = PaiNN(PaiNNConfig(features=4, n_blocks=1, n_radial=4, cutoff_angstrom=4.0))
    with pytest.raises(ValueError, match="model"):
        fit(config(2), train, val, tmp_path, model=other)


def test_matrix_exp_output_learns_and_is_positive_definite(data):
    cfg = config(6)
    cfg = dataclasses.replace(
        cfg, readout=dataclasses.replace(cfg.readout, output_map="matrix_exp")
    )
    result = fit(cfg, *data)
    maes = [h["train_mae"] for h in result.history]
    assert maes[-1] < 0.9 * maes[0]
    pred = evaluate(result.params, cfg, data[1], result.scaler)
    assert np.all(np.linalg.eigvalsh(pred) > 0)
