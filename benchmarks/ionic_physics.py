"""Physics ionic model (learned Born charges x Kinv of a frozen potential) against the readout.

    python benchmarks/ionic_physics.py select [--candidates drop_negative/L2/dtnn ...]
    python benchmarks/ionic_physics.py test --candidate drop_negative/L2/dtnn \
        --electronic nequix-oam-1-pft/L2/dtnn
    python benchmarks/ionic_physics.py calibrate --candidate drop_negative/L2/dtnn --seeds 0

``select`` trains each candidate (a treatment of the negative / soft optical modes, the
feature layer the Born-charge head reads and its trunk: a `READOUT_VARIANTS` name) on the
80 % training part of each split seed with early stopping on its 10 % validation part and
records the best validation MAE_tensor of eps_ion, and the validation MAE of the summed
total (the validation electronic predictions of the feature readout of
``benchmarks/encoder_selection.py``, same seed and split, plus the physics ionic), beside the
feature readouts' ionic and directly trained total. The test split is never read there.
Results merge into ``benchmarks/results/ionic_physics.json`` / ``.md``.

``test`` evaluates one chosen candidate on the test split of every seed, once, against the
feature readout on the same splits (its runs in ``--readout-runs``), for ionic and for
total = electronic + ionic: MAE_tensor overall, without the outliers (crystals with a true
component > 100), per crystal system, and the crystals with a component > 100 one by one.

``calibrate`` trains an ensemble per split seed and checks its standard deviation against the
test errors (see `calibrate`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.data import MeanPredictor, load_petousis2017, split_indices
from dtnn_jax.metrics import mae_tensor
from dtnn_jax.physics.born import IonicDielectric
from dtnn_jax.physics.training import DEFAULT_PHYSICS_ENCODER, ionic_graphs
from dtnn_jax.training import evaluate, fit, with_targets
from dtnn_jax.training.report import machine_description

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "ionic_physics.json"
SEEDS = (0, 1, 2, 3, 4)
OUTLIER = 100.0  # a true component above this makes a crystal an outlier (soft mode)


def parse(candidate: str) -> tuple[str, int, str]:
    treatment, layer, trunk = candidate.split("/")
    return treatment, int(layer.removeprefix("L")), trunk


def physics_config(layer: int, trunk: str, seed: int, encoder: str) -> ExperimentConfig:
    config = ExperimentConfig.default(
        target="ionic", encoder_layer=layer, seed=seed, encoder=encoder, readout=trunk
    )
    readout = dataclasses.replace(config.readout, target_scaling="none", output_map="affine")
    train = dataclasses.replace(config.train, progress_bar=False)
    return dataclasses.replace(config, readout=readout, train=train)


def readout_predictions(candidate: str, target: str, seed: int, graphs, records, workdir: Path):
    """The feature readout of `encoder_selection.py` (finished run, resumed): predictions on
    the seed's validation and test parts."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from encoder_selection import config_for

    encoder, layer, readout = candidate.split("/")
    config = config_for(encoder, int(layer.removeprefix("L")), readout, target, seed)
    targets = np.stack([np.asarray(r.target(target)) for r in records])
    labelled = with_targets(graphs, targets)
    train, val, test = split_indices(len(records), seed)
    result = fit(
        config,
        [labelled[i] for i in train],
        [labelled[i] for i in val],
        workdir / candidate / target / f"seed{seed}",
    )
    if result.start_epoch < result.epochs_run:
        print(f"note: {candidate} {target} seed {seed} was not finished; trained it here")
    predict = evaluate(result.params, config, [labelled[i] for i in val], result.scaler)
    return predict, evaluate(result.params, config, [labelled[i] for i in test], result.scaler)


def train_physics(candidate: str, seed: int, graphs, targets, encoder: str, workdir: Path):
    _, layer, trunk = parse(candidate)
    config = physics_config(layer, trunk, seed, encoder)
    labelled = with_targets(graphs, targets)
    train, val, test = split_indices(len(graphs), seed)
    model = IonicDielectric(config.readout)
    start = time.perf_counter()
    result = fit(
        config,
        [labelled[i] for i in train],
        [labelled[i] for i in val],
        workdir / candidate / f"seed{seed}",
        model=model,
    )
    return config, model, result, time.perf_counter() - start, (train, val, test)


def load() -> dict:
    return json.loads(OUT.read_text()) if OUT.exists() else {"select": {}, "test": {}}


def save(data: dict) -> None:
    data["machine"] = machine_description()
    data["date"] = time.strftime("%Y-%m-%d")
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    (RESULTS / "ionic_physics.md").write_text(render(data))


def _mean_std(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "-"


def render(data: dict) -> str:
    lines = [
        "# Physics ionic model: learned Born charges x Kinv of a frozen potential",
        "",
        f"Machine: {data.get('machine', '?')}. K from `{data.get('k_encoder', '?')}` at the "
        "DFPT geometry; the Born-charge head reads that encoder's features.",
        "",
        "## Chosen on validation (80/10/10 split of each seed; test not read)",
        "",
        "Best validation MAE_tensor, mean ± std over seeds, and the paired difference to the "
        "feature readout (negative = physics better; seeds better).",
        "",
        "| candidate | ionic | vs readout ionic | total = electronic + ionic | vs readout total |",
        "|---|---|---|---|---|",
    ]
    for name, runs in data["select"].items():
        ion = [r["val_ionic"] for r in runs]
        tot = [r["val_total_sum"] for r in runs]
        d_ion = np.array([r["val_ionic"] - r["readout_val_ionic"] for r in runs])
        d_tot = np.array([r["val_total_sum"] - r["readout_val_total"] for r in runs])
        lines.append(
            f"| {name} | {_mean_std(ion)} | {d_ion.mean():+.3f}, {int((d_ion < 0).sum())}/"
            f"{len(runs)} | {_mean_std(tot)} | {d_tot.mean():+.3f}, {int((d_tot < 0).sum())}/"
            f"{len(runs)} |"
        )
    if data["select"]:
        first = next(iter(data["select"].values()))
        lines += [
            "",
            f"Feature readout (`{data.get('readout', '?')}`): ionic "
            f"{_mean_std([r['readout_val_ionic'] for r in first])}, total "
            f"{_mean_std([r['readout_val_total'] for r in first])}.",
        ]
    for name, test in data.get("test", {}).items():
        lines += ["", f"## Test (once, candidate `{name}`, seeds {test['seeds']})", ""]
        lines += [
            f"physics = the physics model: electronic from the feature readout "
            f"`{data.get('electronic') or data.get('readout')}`, ionic = Born charges x Kinv, "
            f"total = their sum; readout = `{data.get('readout')}`, one readout per target.",
            "",
        ]
        lines += [
            "| target | model | MAE_tensor | no-outlier MAE | vs mean predictor |",
            "|---|---|---|---|---|",
        ]
        for target in ("electronic", "ionic", "total"):
            for model in ("physics", "readout", "mean_predictor"):
                if target not in test:
                    continue
                m = test[target][model]
                lines.append(
                    f"| {target} | {model} | {_mean_std(m['mae'])} | "
                    f"{_mean_std(m['mae_no_outliers'])} | "
                    f"{np.mean(m['mae']) / np.mean(test[target]['mean_predictor']['mae']):.2f}x |"
                )
        lines += ["", "Per crystal system (pooled test crystals of all seeds), MAE_tensor:", ""]
        lines += ["| system | n | ionic physics | ionic readout | total physics | total readout |"]
        lines += ["|---|---|---|---|---|---|"]
        for system, row in test["by_system"].items():
            lines.append(
                f"| {system} | {row['n']} | {row['physics_ionic']:.3f} | "
                f"{row['readout_ionic']:.3f} | {row['physics_total']:.3f} | "
                f"{row['readout_total']:.3f} |"
            )
        lines += ["", f"Test crystals with a true ionic component > {OUTLIER:g}:", ""]
        lines += [
            "| seed | formula | true max | readout max | physics max | MAE physics | MAE readout |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        for r in test["outliers"]:
            lines.append(
                f"| {r['seed']} | {r['formula']} | {r['true_max']:.1f} | {r['readout_max']:.1f} | "
                f"{r['physics_max']:.1f} | {r['mae_physics']:.2f} | {r['mae_readout']:.2f} |"
            )
    cal = data.get("calibration")
    if cal:
        lines += [
            "",
            f"## Ensemble calibration (test; {cal['members']} members per split seed, "
            f"`{cal['candidate']}`)",
            "",
            "Fraction of the true diagonal ionic components (xx, yy, zz of each crystal; "
            "off-diagonal ones that symmetry fixes at 0 have std ~ 0) within k ensemble "
            "standard deviations of the ensemble mean; the scale is fitted on validation "
            "(68.3 % within 1 scaled std) and applied to test. Nominal: 68.3 % and 95.4 %.",
            "",
            "| seed | within 1 std | within 2 std | val-fitted scale | within 1 scaled | "
            "within 2 scaled | ensemble test MAE |",
            "|---|---|---|---|---|---|---|",
        ]
        for seed, r in cal["seeds"].items():
            lines.append(
                f"| {seed} | {r['test_within_1_std']:.0%} | {r['test_within_2_std']:.0%} | "
                f"{r['val_fitted_scale']:.2f} | {r['test_within_1_scaled_std']:.0%} | "
                f"{r['test_within_2_scaled_std']:.0%} | {r['test_mae_tensor_ensemble']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def render_only() -> None:
    """Rewrites the markdown from the JSON (no training)."""
    (RESULTS / "ionic_physics.md").write_text(render(load()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["select", "test", "calibrate"])
    parser.add_argument("--members", type=int, default=5, help="ensemble size (calibrate)")
    parser.add_argument("--candidates", nargs="+", default=["drop_negative/L2/dtnn"])
    parser.add_argument("--candidate", default=None, help="the chosen candidate (test)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--k-encoder", default=DEFAULT_PHYSICS_ENCODER)
    parser.add_argument(
        "--readout", default="sevennet-0/L3/dtnn", help="the feature readout compared with"
    )
    parser.add_argument(
        "--electronic",
        default=None,
        help="the feature readout whose electronic part the summed total uses (default: "
        "--readout); the shipped physics bundle reads one encoder for both",
    )
    parser.add_argument("--readout-runs", default="runs/encoder_selection")
    parser.add_argument("--workdir", default="runs/ionic_physics")
    args = parser.parse_args()

    records = load_petousis2017()
    structures = [r.structure for r in records]
    ionic = np.stack([np.asarray(r.target("ionic")) for r in records])
    total = np.stack([np.asarray(r.target("total")) for r in records])
    from dtnn_jax.encoder.features import graphs_with_features

    enc, layer, _ = args.readout.split("/")
    readout_graphs = graphs_with_features(structures, int(layer[1:]), encoder=enc)
    args.electronic = args.electronic or args.readout
    enc, layer, _ = args.electronic.split("/")
    electronic_graphs = (
        readout_graphs
        if args.electronic == args.readout
        else graphs_with_features(structures, int(layer[1:]), encoder=enc)
    )
    electronic = np.stack([np.asarray(r.target("electronic")) for r in records])
    data = load()
    data["k_encoder"], data["readout"] = args.k_encoder, args.readout
    data["electronic"] = args.electronic
    workdir = Path(args.workdir)
    readout_runs = Path(args.readout_runs)

    if args.mode == "calibrate":
        treatment, layer, _ = parse(args.candidate)
        graphs = ionic_graphs(structures, layer, args.k_encoder, args.k_encoder, treatment)
        data["calibration"] = calibrate(args, graphs, ionic, workdir)
        save(data)
        print(json.dumps(data["calibration"], indent=1))
        return
    candidates = args.candidates if args.mode == "select" else [args.candidate]
    for candidate in candidates:
        treatment, layer, _ = parse(candidate)
        graphs = ionic_graphs(structures, layer, args.k_encoder, args.k_encoder, treatment)
        rows, test_rows = [], []
        for seed in args.seeds:
            config, model, result, seconds, (_, val, test) = train_physics(
                candidate, seed, graphs, ionic, args.k_encoder, workdir
            )
            split = val if args.mode == "select" else test
            pred_ion = evaluate(
                result.params, config, [graphs[i] for i in split], None, model=model
            )
            ion_val_r, ion_test_r = readout_predictions(
                args.readout, "ionic", seed, readout_graphs, records, readout_runs
            )
            ele_val, ele_test = readout_predictions(
                args.electronic, "electronic", seed, electronic_graphs, records, readout_runs
            )
            _, ele_test_r = readout_predictions(
                args.readout, "electronic", seed, readout_graphs, records, readout_runs
            )
            tot_val_r, tot_test_r = readout_predictions(
                args.readout, "total", seed, readout_graphs, records, readout_runs
            )
            if args.mode == "select":
                row = {
                    "seed": seed,
                    "val_ionic": mae_tensor(pred_ion, ionic[val]),
                    "best_val_mae_tensor": result.best_val_mae,
                    "val_total_sum": mae_tensor(ele_val + pred_ion, total[val]),
                    "readout_val_ionic": mae_tensor(ion_val_r, ionic[val]),
                    "readout_val_total": mae_tensor(tot_val_r, total[val]),
                    "readout_val_total_sum": mae_tensor(ele_val + ion_val_r, total[val]),
                    "epochs_run": result.epochs_run,
                    "train_wall_time_s": seconds,
                }
                rows.append(row)
                print(
                    f"{candidate} seed {seed}: val ionic {row['val_ionic']:.3f} (readout "
                    f"{row['readout_val_ionic']:.3f}), total sum {row['val_total_sum']:.3f} "
                    f"(readout total {row['readout_val_total']:.3f}) in {seconds:.0f} s",
                    flush=True,
                )
            else:
                test_rows.append(
                    {
                        "seed": seed,
                        "test": test,
                        "physics_electronic": ele_test,
                        "readout_electronic": ele_test_r,
                        "mean_electronic": _mean_prediction(electronic, seed, len(test)),
                        "physics_ionic": pred_ion,
                        "readout_ionic": ion_test_r,
                        "physics_total": ele_test + pred_ion,
                        "readout_total": tot_test_r,
                        "mean_ionic": _mean_prediction(ionic, seed, len(test)),
                        "mean_total": _mean_prediction(total, seed, len(test)),
                    }
                )
        if args.mode == "select":
            data["select"][candidate] = rows
        else:
            data["test"][candidate] = test_table(test_rows, records, electronic, ionic, total)
            np.savez_compressed(
                RESULTS / "ionic_physics_test_predictions.npz",
                **{
                    f"seed{r['seed']}/{k}": np.asarray(v)
                    for r in test_rows
                    for k, v in r.items()
                    if k != "seed"
                },
            )
        save(data)
    print(render(data))


def calibrate(args, graphs, ionic: np.ndarray, workdir: Path) -> dict:
    """Ensemble std against the error on test: ``--members`` physics models per split seed
    (same split, initialisation seeds ``seed + 100 m``; m = 0 is the run ``test`` read), the
    fraction of true components within 1 and 2 std of the ensemble mean, and the std scale
    fitted on validation (the 68.3 % quantile of |error| / std) applied to test."""
    _, layer, trunk = parse(args.candidate)
    out = {"candidate": args.candidate, "members": args.members, "seeds": {}}
    for seed in args.seeds:
        labelled = with_targets(graphs, ionic)
        train, val, test = split_indices(len(graphs), seed)
        preds = {"val": [], "test": []}
        for m in range(args.members):
            config = physics_config(layer, trunk, seed + 100 * m, args.k_encoder)
            model = IonicDielectric(config.readout)
            run = workdir / args.candidate / (f"seed{seed}" if m == 0 else f"seed{seed}-m{m}")
            result = fit(
                config, [labelled[i] for i in train], [labelled[i] for i in val], run, model=model
            )
            for part, idx in (("val", val), ("test", test)):
                preds[part].append(
                    evaluate(result.params, config, [graphs[i] for i in idx], None, model=model)
                )
        row = {}
        for part, idx in (("val", val), ("test", test)):
            p = np.stack(preds[part])  # [M, n, 3, 3]
            diag = np.arange(3)  # xx, yy, zz: off-diagonal zeros fixed by symmetry have std ~ 0
            err = np.abs(p.mean(0) - ionic[idx])[:, diag, diag].reshape(-1)
            std = np.maximum(p.std(0)[:, diag, diag].reshape(-1), 1e-12)
            row[part] = {"z": err / std, "mae_tensor_ensemble": mae_tensor(p.mean(0), ionic[idx])}
        scale = float(np.quantile(row["val"]["z"], 0.683))
        z = row["test"]["z"]
        out["seeds"][str(seed)] = {
            "test_within_1_std": float(np.mean(z <= 1)),
            "test_within_2_std": float(np.mean(z <= 2)),
            "val_fitted_scale": scale,
            "test_within_1_scaled_std": float(np.mean(z <= scale)),
            "test_within_2_scaled_std": float(np.mean(z <= 2 * scale)),
            "test_mae_tensor_ensemble": row["test"]["mae_tensor_ensemble"],
        }
        print(seed, out["seeds"][str(seed)], flush=True)
    return out


def _mean_prediction(tensors: np.ndarray, seed: int, n: int) -> np.ndarray:
    """The mean-predictor baseline of the seed's split: its training mean, n times."""
    return MeanPredictor.fit(tensors[split_indices(len(tensors), seed)[0]]).predict(n)


def test_table(rows, records, electronic, ionic, total) -> dict:
    """The test metrics of `main`'s ``test`` mode (see the module docstring)."""
    out: dict = {"seeds": [r["seed"] for r in rows]}
    for target, truth in (("electronic", electronic), ("ionic", ionic), ("total", total)):
        out[target] = {}
        for model, key in (
            ("physics", f"physics_{target}"),
            ("readout", f"readout_{target}"),
            ("mean_predictor", f"mean_{target}"),
        ):
            mae, clean = [], []
            for r in rows:
                true = truth[r["test"]]
                keep = np.abs(ionic[r["test"]]).max(axis=(1, 2)) <= OUTLIER
                mae.append(mae_tensor(r[key], true))
                clean.append(mae_tensor(r[key][keep], true[keep]))
            out[target][model] = {"mae": mae, "mae_no_outliers": clean}
    systems = np.array([records[i].crystal_system for r in rows for i in r["test"]])
    pooled = {
        k: np.concatenate([r[k] for r in rows])
        for k in ("physics_ionic", "readout_ionic", "physics_total", "readout_total")
    }
    idx = np.concatenate([r["test"] for r in rows])
    out["by_system"] = {}
    for system in sorted(set(systems)):
        m = systems == system
        out["by_system"][system] = {"n": int(m.sum())} | {
            k: mae_tensor(v[m], (ionic if "ionic" in k else total)[idx[m]])
            for k, v in pooled.items()
        }
    out["outliers"] = []
    for r in rows:
        for j, i in enumerate(r["test"]):
            if np.abs(ionic[i]).max() > OUTLIER:
                out["outliers"].append(
                    {
                        "seed": r["seed"],
                        "formula": records[i].structure.composition.reduced_formula,
                        "true_max": float(np.abs(ionic[i]).max()),
                        "readout_max": float(np.abs(r["readout_ionic"][j]).max()),
                        "physics_max": float(np.abs(r["physics_ionic"][j]).max()),
                        "mae_physics": mae_tensor(r["physics_ionic"][j : j + 1], ionic[i : i + 1]),
                        "mae_readout": mae_tensor(r["readout_ionic"][j : j + 1], ionic[i : i + 1]),
                    }
                )
    return out


if __name__ == "__main__":
    main()
