"""From-scratch equivariant baselines (PaiNN, NequIP) trained in the DTNN readout's harness.

Both networks see only atomic numbers and geometry (no pretrained encoder) and are trained
end to end by `dtnn_jax.training.fit` itself (``fit(config, ..., model=...)``): the same
optimizer, schedule, loss, target scaling, output map, batching and early stopping as the
DTNN readout, on the same `dtnn_jax.data.split_indices` splits.

Usage (the full benchmark: 2 models x 3 targets x 5 seeds at the DTNN's 100 epochs):

    python benchmarks/scratch_baselines.py --out benchmarks/results/scratch_baselines.json

On a 2-core CPU that is many hours (PaiNN and NequIP take seconds per epoch, the DTNN
readout 0.15 s): pass ``--targets`` / ``--max-epochs`` / ``--patience`` for a reduced budget
(recorded in the JSON), or run on an accelerator. ``benchmarks/merge_ablations.py`` merges
the results into ``accuracy.json``.

A quick check (one seed, one target, a few epochs, reports the time per epoch):

    python benchmarks/scratch_baselines.py --models painn nequip --targets electronic \\
        --seeds 0 --max-epochs 3 --out /tmp/scratch_quick.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jraph
import numpy as np

from dtnn_jax.config import OUTPUT_MAPS, TARGETS, ExperimentConfig, TrainConfig
from dtnn_jax.data import MeanPredictor, load_petousis2017, split_indices
from dtnn_jax.graph import graph_from_structure
from dtnn_jax.metrics import all_metrics, mae_tensor_by_crystal_system
from dtnn_jax.models.nequip import NequIP, NequIPConfig
from dtnn_jax.models.painn import PaiNN, PaiNNConfig
from dtnn_jax.models.readout import count_params
from dtnn_jax.training import evaluate, fit, with_targets
from dtnn_jax.training.report import machine_description

CUTOFF_ANGSTROM = 5.0
MODELS = ("painn", "nequip")


# Edges per atom within 5 A over the shipped set (27.1): one constant for every split, so the
# module (and its compiled train step) is the same for all seeds.
AVG_NUM_NEIGHBORS = 27.0


def build_model(name: str) -> nn.Module:
    """The baseline called ``name`` at its default (published-like) size."""
    if name == "painn":
        return PaiNN(PaiNNConfig(avg_num_neighbors=AVG_NUM_NEIGHBORS))
    if name == "nequip":
        return NequIP(NequIPConfig(avg_num_neighbors=AVG_NUM_NEIGHBORS))
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def run_one(
    name: str,
    target: str,
    seed: int,
    records: Sequence[Any],
    graphs: Sequence[jraph.GraphsTuple],
    train: TrainConfig,
    output_map: str,
) -> dict[str, Any]:
    """Trains and tests one baseline on one split; returns a JSON-ready summary."""
    keep = [i for i, r in enumerate(records) if r.has_target(target)]
    recs = [records[i] for i in keep]
    targets = np.stack([np.asarray(r.target(target), np.float64) for r in recs])
    labelled = with_targets([graphs[i] for i in keep], targets)
    train_idx, val_idx, test_idx = split_indices(len(recs), seed)
    train_graphs = [labelled[i] for i in train_idx]
    model = build_model(name)
    base = ExperimentConfig.default(target=target, seed=seed)
    config = dataclasses.replace(
        base, train=train, readout=dataclasses.replace(base.readout, output_map=output_map)
    )

    start = time.perf_counter()
    result = fit(config, train_graphs, [labelled[i] for i in val_idx], model=model)
    wall = time.perf_counter() - start
    pred = evaluate(
        result.params, config, [labelled[i] for i in test_idx], result.scaler, model=model
    )
    true = targets[test_idx]
    systems = [recs[i].crystal_system for i in test_idx]
    mean_pred = MeanPredictor.fit(targets[train_idx]).predict(len(test_idx))
    seconds = [h["seconds"] for h in result.history]
    return {
        "model": name,
        "target": target,
        "seed": seed,
        "config": dataclasses.asdict(model.config),
        "output_map": output_map,
        "n_params": count_params(result.params),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
        "best_val_mae_tensor": result.best_val_mae,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "epoch_seconds": seconds,
        # The first epochs meet new padded shapes (a jit compilation each); the median is
        # the steady cost.
        "median_epoch_seconds": float(np.median(seconds)),
        "train_wall_time_s": wall,
        "target_scaler": result.scaler.as_dict(),
        "predicted": pred.tolist(),
        "true": true.tolist(),
        "crystal_system": systems,
        "test": all_metrics(pred, true),
        "test_by_crystal_system": {
            k: {"mae_tensor": v[0], "count": v[1]}
            for k, v in mae_tensor_by_crystal_system(pred, true, systems).items()
        },
        "mean_predictor": all_metrics(mean_pred, true),
        "history": result.history,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--targets", nargs="+", default=list(TARGETS), choices=TARGETS, help="dielectric targets"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-epochs", type=int, default=None, help="override TrainConfig")
    parser.add_argument("--patience", type=int, default=None, help="override TrainConfig")
    parser.add_argument(
        "--output-map", default="affine", choices=OUTPUT_MAPS, help="as the DTNN readout's"
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--note", default="", help="why this budget (recorded in the JSON)")
    args = parser.parse_args(argv)

    overrides = {"progress_bar": False}
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.patience is not None:
        overrides["patience_epochs"] = args.patience
    train = dataclasses.replace(TrainConfig(), **overrides)

    records = load_petousis2017()
    graphs = [graph_from_structure(r.structure, CUTOFF_ANGSTROM) for r in records]
    runs = []
    for name in args.models:
        for target in args.targets:
            for seed in args.seeds:
                print(f"{name} {target} seed {seed}", flush=True)
                summary = run_one(name, target, seed, records, graphs, train, args.output_map)
                print(
                    f"  test MAE_tensor {summary['test']['mae_tensor']:.3f} "
                    f"(mean predictor {summary['mean_predictor']['mae_tensor']:.3f}), "
                    f"{summary['n_params']} params, "
                    f"median epoch {summary['median_epoch_seconds']:.1f} s",
                    flush=True,
                )
                runs.append(summary)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(
                    json.dumps(
                        {
                            "machine": machine_description(),
                            "note": args.note,
                            "train_config": dataclasses.asdict(train),
                            "cutoff_angstrom": CUTOFF_ANGSTROM,
                            "runs": runs,
                        },
                        indent=1,
                    )
                )


if __name__ == "__main__":
    main()
