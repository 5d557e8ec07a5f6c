"""Which SevenNet-0 layer feeds the readout best? (the paper's PFP-L1..L5 study, Fig. 5a)

    python benchmarks/layer_ablation.py [--layers 1 2 3 4 5] [--targets total] [--seeds 0 1 2 3 4]

Trains DTNN (paper defaults, as in `benchmarks/accuracy.py`) on the node features of each
encoder layer, on the same 80/10/10 splits, and writes ``benchmarks/results/layer_ablation.json``
(models ``dtnn_L<k>``, same shape as ``accuracy.json``) and ``layer_ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from accuracy import config_for

from dtnn_jax.config import TARGETS
from dtnn_jax.data import load_petousis2017
from dtnn_jax.features import featurized_graphs
from dtnn_jax.training.experiment import run_experiment
from dtnn_jax.training.report import aggregate, machine_description, render_markdown, test_metrics

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--targets", nargs="+", default=["total"], choices=TARGETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workdir", default="runs/layer_ablation")
    args = parser.parse_args()

    records = load_petousis2017()
    per_seed: dict = {}
    for layer in args.layers:
        graphs = featurized_graphs([r.structure for r in records], layer, progress=False)
        name = f"dtnn_L{layer}"
        per_seed[name] = {t: [] for t in args.targets}
        for target in args.targets:
            for seed in args.seeds:
                config = config_for("dtnn", target, seed, layer, None)
                run = Path(args.workdir) / name / target / f"seed{seed}"
                t0 = time.perf_counter()
                run_experiment(config, run, records, graphs)
                seconds = time.perf_counter() - t0
                with np.load(run / "test_predictions.npz") as f:
                    metrics = test_metrics(f["predicted"], f["true"], f["crystal_system"], target)
                metrics["train_wall_time_s"] = seconds
                per_seed[name][target].append(metrics)
                print(f"{name} {target} seed {seed}: {metrics['mae_tensor']:.3f}", flush=True)

    models = aggregate(per_seed)
    result = {
        "models": models,
        "seeds": args.seeds,
        "machine": machine_description(),
        "config": config_for("dtnn", args.targets[0], 0, 4, None).to_dict(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (RESULTS / "layer_ablation.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "layer_ablation.md").write_text(
        "# DTNN on the features of each SevenNet-0 layer\n\n"
        f"Machine: {result['machine']}\n\n" + render_markdown(result)
    )
    print(render_markdown(result))


if __name__ == "__main__":
    main()
