"""The accuracy table: DTNN, DTNN-simple, ridge and the mean predictor over 5 split seeds.

    python benchmarks/accuracy.py [--seeds 0 1 2 3 4] [--models dtnn dtnn_simple]
        [--export-bundle dtnn_jax/pretrained/dtnn-sevennet0-petousis2017]

For every (model, target, seed) it trains one readout on the 80 % split with early stopping
on the 10 % validation split and evaluates it once on the 10 % test split; the baselines are
fitted on the very same splits. Writes ``benchmarks/results/accuracy.json`` (shape in
`dtnn_jax.training.report`), ``accuracy.md`` (the paper's Table 2 layout), parity plots
``parity_<target>.png`` (all seeds' test crystals), and ``test_predictions.npz`` (for the
screening evaluation). With ``--export-bundle`` the DTNN models of all seeds become the
shipped ensemble (one member per seed; each member's test metrics are its own split's).
Run directories go to ``--workdir`` (resumable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from dtnn_jax.config import DEFAULT_ENCODER_LAYER, TARGETS, ExperimentConfig
from dtnn_jax.data import load_petousis2017
from dtnn_jax.encoder import get_encoder
from dtnn_jax.encoder.features import graphs_with_features
from dtnn_jax.metrics import mae_tensor
from dtnn_jax.training.experiment import run_experiment
from dtnn_jax.training.report import (
    aggregate,
    machine_description,
    parity_plot,
    render_markdown,
    test_metrics,
)

RESULTS = Path(__file__).parent / "results"


def config_for(model: str, target: str, seed: int, layer: int, max_epochs: int | None):
    config = ExperimentConfig.default(target=target, encoder_layer=layer, seed=seed)
    readout = dataclasses.replace(config.readout, use_edges=(model == "dtnn"))
    train = dataclasses.replace(config.train, progress_bar=False)
    if max_epochs is not None:
        train = dataclasses.replace(train, max_epochs=max_epochs)
    return dataclasses.replace(config, readout=readout, train=train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument(
        "--models", nargs="+", default=["dtnn", "dtnn_simple"], choices=["dtnn", "dtnn_simple"]
    )
    parser.add_argument("--layer", type=int, default=DEFAULT_ENCODER_LAYER)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--workdir", default="runs/accuracy")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--export-bundle", default=None)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_petousis2017()
    t0 = time.perf_counter()
    graphs = graphs_with_features([r.structure for r in records], args.layer)
    featurize_s = time.perf_counter() - t0
    print(f"features of {len(records)} crystals in {featurize_s:.1f} s")

    per_seed: dict = {
        m: {t: [] for t in args.targets} for m in (*args.models, "ridge", "mean_predictor")
    }
    members: dict = {t: [] for t in args.targets}
    predictions: dict = {}
    for model in args.models:
        for target in args.targets:
            for seed in args.seeds:
                config = config_for(model, target, seed, args.layer, args.max_epochs)
                t1 = time.perf_counter()
                summary, fit = run_experiment(
                    config, Path(args.workdir) / model / target / f"seed{seed}", records, graphs
                )
                seconds = time.perf_counter() - t1
                run = Path(args.workdir) / model / target / f"seed{seed}"
                with np.load(run / "test_predictions.npz") as f:
                    true, systems = f["true"], f["crystal_system"]
                    pred = {
                        model: f["predicted"],
                        "ridge": f["ridge"],
                        "mean_predictor": f["mean_predictor"],
                    }
                    indices = f["indices"]
                metrics = test_metrics(pred[model], true, systems, target)
                # scalars in the per-seed dict are averaged over seeds by `aggregate`
                metrics["train_wall_time_s"] = seconds
                metrics["epochs_run"] = summary["epochs_run"]
                metrics["best_val_mae_tensor"] = summary["best_val_mae_tensor"]
                metrics["seed"] = seed
                per_seed[model][target].append(metrics)
                if model == args.models[0]:
                    for base in ("ridge", "mean_predictor"):
                        per_seed[base][target].append(
                            {**test_metrics(pred[base], true, systems, target), "seed": seed}
                        )
                predictions[f"{model}/{target}/seed{seed}/predicted"] = pred[model]
                predictions[f"{model}/{target}/seed{seed}/true"] = true
                predictions[f"{model}/{target}/seed{seed}/indices"] = indices
                if model == "dtnn":
                    members[target].append((fit, config, summary, metrics))
                print(
                    f"{model:>11} {target:>10} seed {seed}: test MAE_tensor "
                    f"{metrics['mae_tensor']:.3f} (mean predictor "
                    f"{mae_tensor(pred['mean_predictor'], true):.3f}) "
                    f"epochs {summary['epochs_run']} in {seconds:.0f} s",
                    flush=True,
                )

    models = aggregate(per_seed)
    accuracy = {
        "models": models,
        "seeds": args.seeds,
        "machine": machine_description(),
        "featurize_wall_time_s": featurize_s,
        "config": {
            m: config_for(m, "total", 0, args.layer, args.max_epochs).to_dict() for m in args.models
        },
        "data": "Petousis et al. 2017 (1,056 crystals), 80/10/10 splits by seed",
        "date": time.strftime("%Y-%m-%d"),
        "per_seed": per_seed,
    }
    (out / "accuracy.json").write_text(json.dumps(accuracy, indent=1) + "\n")
    (out / "accuracy.md").write_text(
        f"# Accuracy on the shipped data\n\nMachine: {accuracy['machine']}\n\n"
        + render_markdown(accuracy)
    )
    np.savez_compressed(out / "test_predictions.npz", **predictions)
    for target in args.targets:
        pooled = {
            m: (
                np.concatenate(
                    [predictions[f"{m}/{target}/seed{s}/predicted"] for s in args.seeds]
                ),
                np.concatenate([predictions[f"{m}/{target}/seed{s}/true"] for s in args.seeds]),
            )
            for m in args.models
        }
        parity_plot(
            pooled, out / f"parity_{target}.png", f"{target}: test crystals of seeds {args.seeds}"
        )
    print(render_markdown(accuracy))
    if args.export_bundle:
        export_bundle(members, Path(args.export_bundle), records)


def export_bundle(members: dict, path: Path, records) -> None:
    """The DTNN models of all seeds as one ensemble per target."""
    import hashlib

    from dtnn_jax.inference import Member, ModelBundle, TargetModel, save_bundle

    data_hash = hashlib.sha256(
        (Path(__file__).parent.parent / "dtnn_jax" / "data" / "petousis2017.json.gz").read_bytes()
    ).hexdigest()
    targets = {}
    for target, runs in members.items():
        base_config = dataclasses.replace(runs[0][1], seed=0)
        targets[target] = TargetModel(
            config=base_config,
            members=tuple(
                Member(
                    params=fit.params,
                    scaler=fit.scaler,
                    seed=config.seed,
                    metrics={k: v for k, v in metrics.items() if isinstance(v, float | int)},
                )
                for fit, config, _, metrics in runs
            ),
        )
    encoder = get_encoder()
    bundle = ModelBundle(
        name=path.name,
        targets=targets,
        metadata={
            "description": (
                "DTNN readouts on frozen SevenNet-0 layer-"
                f"{base_config.encoder_layer} features, trained on the Petousis et al. 2017 "
                "DFPT set; ensemble of the models of the 5 80/10/10 split seeds "
                "(each member saw a different 80 %)."
            ),
            "licence": "MIT (model); training data CC BY 4.0 (Materials Project)",
            "encoder": "SevenNet-0 (11Jul2024), MIT",
            "encoder_sha256": encoder.weights_sha256,
            "training_data": "dtnn_jax/data/petousis2017.json.gz",
            "training_data_sha256": data_hash,
            "n_training_records": len(records),
            "created": time.strftime("%Y-%m-%d"),
            "produced_by": "benchmarks/accuracy.py --export-bundle",
        },
    )
    save_bundle(bundle, path)
    size = sum(f.stat().st_size for f in path.iterdir())
    print(f"bundle written to {path} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
