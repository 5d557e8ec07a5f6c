"""The accuracy table: DTNN, DTNN-simple, ridge and the mean predictor over 5 split seeds.

    python benchmarks/accuracy.py [--seeds 0 1 2 3 4] [--models dtnn dtnn_simple]
        [--encoder nequix-oam-1 --layer 2] [--out DIR]

For every (model, target, seed) it trains one readout on the 80 % split with early stopping
on the 10 % validation split and evaluates it once on the 10 % test split; the baselines are
fitted on the very same splits. Writes ``benchmarks/results/accuracy.json`` (shape in
`dtnn_jax.training.report`), ``accuracy.md`` (the paper's Table 2 layout), parity plots
``parity_<target>.png`` (all seeds' test crystals), and ``test_predictions.npz`` (for the
screening evaluation). Run directories go to ``--workdir`` (resumable). Another encoder's
table goes to its own ``--out``; ``merge_ablations.py --extra`` adds it to the main table.
The shipped ensembles are not made here but with ``dtnn train --folds 5`` (members that
together see every labelled crystal; README, "Accuracy").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from dtnn_jax.config import DEFAULT_ENCODER, DEFAULT_ENCODER_LAYER, TARGETS, ExperimentConfig
from dtnn_jax.constants import READOUT_VARIANTS
from dtnn_jax.data import load_petousis2017
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


def config_for(model: str, target: str, seed: int, layer: int, max_epochs: int | None, encoder):
    config = ExperimentConfig.default(
        target=target, encoder_layer=layer, seed=seed, encoder=encoder, readout=model
    )
    train = dataclasses.replace(config.train, progress_bar=False)
    if max_epochs is not None:
        train = dataclasses.replace(train, max_epochs=max_epochs)
    return dataclasses.replace(config, train=train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument(
        "--models", nargs="+", default=["dtnn", "dtnn_simple"], choices=list(READOUT_VARIANTS)
    )
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--layer", type=int, default=DEFAULT_ENCODER_LAYER)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="default runs/accuracy-ENCODER-LLAYER")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    args.workdir = args.workdir or f"runs/accuracy-{args.encoder}-L{args.layer}"

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_petousis2017()
    t0 = time.perf_counter()
    graphs = graphs_with_features([r.structure for r in records], args.layer, encoder=args.encoder)
    featurize_s = time.perf_counter() - t0
    print(f"features of {len(records)} crystals in {featurize_s:.1f} s")

    per_seed: dict = {
        m: {t: [] for t in args.targets} for m in (*args.models, "ridge", "mean_predictor")
    }
    predictions: dict = {}
    for model in args.models:
        for target in args.targets:
            for seed in args.seeds:
                config = config_for(model, target, seed, args.layer, args.max_epochs, args.encoder)
                t1 = time.perf_counter()
                summary, _ = run_experiment(
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
            m: config_for(m, "total", 0, args.layer, args.max_epochs, args.encoder).to_dict()
            for m in args.models
        },
        "encoder": f"{args.encoder} layer {args.layer}",
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


if __name__ == "__main__":
    main()
