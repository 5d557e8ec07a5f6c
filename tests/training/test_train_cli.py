"""End-to-end smoke test of the main job: `dtnn train --quick` on a slice of the shipped data."""

from __future__ import annotations

import json

import numpy as np

from dtnn_jax.cli import main


def test_dtnn_train_quick_writes_table_and_plots(tmp_path):
    workdir = tmp_path / "run"
    code = main(
        [
            "train",
            "--quick",
            "--limit",
            "40",
            "--target",
            "all",
            "--workdir",
            str(workdir),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
    )
    assert code == 0
    accuracy = json.loads((workdir / "accuracy.json").read_text())
    assert set(accuracy["models"]) == {"dtnn", "mean_predictor", "ridge"}
    for model in accuracy["models"].values():
        assert set(model) == {"electronic", "ionic", "total"}
        for target in model.values():
            for metric in ("mae_tensor", "mae_mean_diag", "mae_diag", "mae_offdiag"):
                assert target[metric]["mean"] >= 0 and target[metric]["std"] == 0
    assert accuracy["seeds"] == [0]
    assert "| All |" in (workdir / "accuracy.md").read_text()
    for target in ("electronic", "ionic", "total"):
        assert (workdir / f"parity_{target}.png").stat().st_size > 10_000
        assert (workdir / target / "metrics.json").exists()
    # the trained readouts are a bundle that predict can use at once
    from dtnn_jax.inference import load_model
    from tests.properties.tiny_model import BUDGET

    model = load_model(workdir)
    assert model.targets == ("electronic", "ionic", "total")
    assert {model.ensemble_size(t) for t in model.targets} == {1}
    assert model.bundle.metadata["encoder_sha256"] == model.encoder.weights_sha256
    assert len(model.bundle.metadata["training_data_sha256"]) == 64
    from dtnn_jax.data import load_petousis2017

    pred = model.predict_detailed([load_petousis2017()[0].structure], budget=BUDGET)
    assert all(np.isfinite(pred.mean[t]).all() for t in model.targets)
    # each target's run directory holds its own one-member bundle too
    assert load_model(workdir / "ionic").targets == ("ionic",)


def test_dtnn_train_folds_writes_a_bundle_of_fold_members(tmp_path):
    workdir = tmp_path / "run"
    argv = ["train", "--quick", "--limit", "30", "--target", "electronic", "--folds", "2"]
    argv += ["--workdir", str(workdir), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0
    assert not (workdir / "accuracy.json").exists()  # no test split, no table
    from dtnn_jax.inference import load_model

    model = load_model(workdir)
    assert model.ensemble_size("electronic") == 2
    summaries = [
        json.loads((workdir / f"electronic/fold{k}/metrics.json").read_text()) for k in (0, 1)
    ]
    assert [s["n_test"] for s in summaries] == [0, 0]
    assert [s["n_train"] + s["n_val"] for s in summaries] == [30, 30]
    assert "fold 1 of 2" in summaries[1]["split"]
    members = model.bundle.targets["electronic"].members
    assert all("val_mae_tensor" in m.metrics for m in members)


def test_a_rerun_for_one_target_keeps_the_other_targets_in_the_bundle(tmp_path, capsys):
    workdir = tmp_path / "run"
    base = ["train", "--quick", "--limit", "20", "--max-epochs", "1", "--workdir", str(workdir)]
    base += ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main([*base, "--target", "ionic"]) == 0
    before = json.loads((workdir / "bundle.json").read_text())["targets"]
    assert main([*base, "--target", "electronic"]) == 0
    after = json.loads((workdir / "bundle.json").read_text())["targets"]
    assert list(after) == ["electronic", "ionic"]
    assert after["ionic"] == before["ionic"]
    assert "keeps its ionic model(s)" in capsys.readouterr().out
    from dtnn_jax.inference import load_model

    assert load_model(workdir).targets == ("electronic", "ionic", "total")  # total: e + i
