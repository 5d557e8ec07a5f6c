"""Which SevenNet-0 layer feeds the readout best? (the paper's PFP-L1..L5 study, Fig. 5a)

    python benchmarks/layer_ablation.py [--layers 1 2 3 4 5 3+4] [--targets total]
        [--seeds 0 1 2 3 4]

Trains DTNN (the shipped defaults, as in `benchmarks/accuracy.py`) on the node features of
each encoder layer, on the same 80/10/10 splits; ``3+4`` concatenates the features of two
layers per atom (input irreps of both, one after the other). Results are merged, per model
and target, into ``benchmarks/results/layer_ablation.json`` (models ``dtnn_L<k>`` and
``dtnn_L<j>+L<k>``, same shape as ``accuracy.json``, plus the per-seed metrics) and
rendered to ``layer_ablation.md``; targets can run in separate processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import time
from pathlib import Path

import e3nn_jax as e3nn
import numpy as np
from accuracy import config_for

from dtnn_jax.config import TARGETS, encoder_layer_irreps
from dtnn_jax.data import load_petousis2017
from dtnn_jax.encoder.features import graphs_with_features
from dtnn_jax.training.experiment import run_experiment
from dtnn_jax.training.report import aggregate, machine_description, render_markdown, test_metrics

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "layer_ablation.json"


def layer_graphs(spec: str, structures) -> tuple[list, str, str]:
    """Graphs, input irreps and model name for a layer spec: ``"3"`` or ``"3+4"``."""
    layers = [int(k) for k in spec.split("+")]
    per_layer = [graphs_with_features(structures, k, progress=False) for k in layers]
    irreps = e3nn.Irreps("+".join(encoder_layer_irreps(k) for k in layers))
    graphs = [
        gs[0]._replace(
            nodes={
                **gs[0].nodes,
                "features": np.concatenate([g.nodes["features"] for g in gs], axis=-1),
            }
        )
        for gs in zip(*per_layer, strict=True)
    ]
    return graphs, str(irreps), "dtnn_" + "+".join(f"L{k}" for k in layers)


def save(per_seed: dict, seeds: list[int], config: dict) -> dict:
    """Merges these runs into the results file (locked: targets may run in parallel)."""
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(OUT.read_text()) if OUT.exists() else {}
        merged = old.get("per_seed", {})
        for model, by_target in per_seed.items():
            merged.setdefault(model, {}).update(by_target)
        merged = dict(sorted(merged.items()))  # dtnn_L1, dtnn_L2, dtnn_L3, dtnn_L3+L4, ...
        result = {
            "models": aggregate(merged),
            "seeds": seeds,
            "machine": machine_description(),
            "config": config,
            "date": time.strftime("%Y-%m-%d"),
            "per_seed": merged,
        }
        OUT.write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "layer_ablation.md").write_text(
            "# DTNN on the features of each SevenNet-0 layer\n\n"
            f"Machine: {result['machine']}\n\n"
            + validation_table(result["models"])
            + "\n"
            + render_markdown(result)
        )
    return result


def validation_table(models: dict) -> str:
    """Markdown: best validation MAE_tensor per model and target (what the layer is chosen on)."""
    names = sorted(models, key=lambda m: (len(m), m))
    lines = [
        "Validation MAE_tensor (best epoch; mean +- std over seeds): the default layer is "
        "chosen on this, not on the test tables below.",
        "",
        "| Target | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for target in ("electronic", "ionic", "total"):
        cells = []
        for m in names:
            v = models[m].get(target, {}).get("best_val_mae_tensor")
            cells.append(f"{v['mean']:.3f} ± {v['std']:.3f}" if v else "-")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", nargs="+", default=["1", "2", "3", "4", "5", "3+4"])
    parser.add_argument("--targets", nargs="+", default=["total"], choices=TARGETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workdir", default="runs/layer_ablation")
    parser.add_argument("--render-only", action="store_true", help="re-render the markdown")
    args = parser.parse_args()
    if args.render_only:
        save({}, args.seeds, json.loads(OUT.read_text())["config"])
        return

    records = load_petousis2017()
    structures = [r.structure for r in records]
    for spec in args.layers:
        graphs, irreps, name = layer_graphs(spec, structures)
        for target in args.targets:
            per_seed: list[dict] = []
            for seed in args.seeds:
                config = config_for("dtnn", target, seed, int(spec.split("+")[0]), None)
                config = dataclasses.replace(
                    config, readout=dataclasses.replace(config.readout, input_irreps=irreps)
                )
                run = Path(args.workdir) / name / target / f"seed{seed}"
                t0 = time.perf_counter()
                summary, _ = run_experiment(config, run, records, graphs)
                seconds = time.perf_counter() - t0
                with np.load(run / "test_predictions.npz") as f:
                    metrics = test_metrics(f["predicted"], f["true"], f["crystal_system"], target)
                metrics["train_wall_time_s"] = seconds
                metrics["epochs_run"] = summary["epochs_run"]
                metrics["best_val_mae_tensor"] = summary["best_val_mae_tensor"]
                metrics["seed"] = seed
                per_seed.append(metrics)
                print(f"{name} {target} seed {seed}: {metrics['mae_tensor']:.3f}", flush=True)
            result = save({name: {target: per_seed}}, args.seeds, config.to_dict())
    print(render_markdown(result))


if __name__ == "__main__":
    main()
