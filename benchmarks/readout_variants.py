"""Model selection on validation data only: encoder layer and output map of the DTNN readout.

    python benchmarks/readout_variants.py --targets ionic [--seeds 0 1 2 3 4]
        [--variants L4-affine L3-affine L3-matrix_exp L4-matrix_exp]

Trains DTNN (paper defaults, as in `benchmarks/accuracy.py`) for every variant, target and
split seed, and records the best *validation* MAE_tensor of each run. The test split is never
evaluated here: this is the data the shipped configuration was chosen on. Results are merged
into ``benchmarks/results/readout_variants.json`` (one entry per variant/target/seed, so
targets can run in separate processes) and rendered to ``readout_variants.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import time
from pathlib import Path

import numpy as np
from accuracy import config_for

from dtnn_jax.config import TARGETS
from dtnn_jax.data import load_petousis2017, split_indices
from dtnn_jax.encoder.features import graphs_with_features
from dtnn_jax.training import fit, with_targets
from dtnn_jax.training.report import machine_description

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "readout_variants.json"


def parse_variant(name: str) -> tuple[int, str]:
    """'L3-matrix_exp' -> (3, 'matrix_exp')."""
    layer, output_map = name.split("-", 1)
    return int(layer.removeprefix("L")), output_map


def record(entry: dict) -> None:
    """Adds one run to the shared results file (locked: targets run in parallel)."""
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
        key = (entry["variant"], entry["target"], entry["seed"])
        data["runs"] = [
            r for r in data["runs"] if (r["variant"], r["target"], r["seed"]) != key
        ] + [entry]
        data["machine"] = machine_description()
        OUT.write_text(json.dumps(data, indent=1) + "\n")
        (RESULTS / "readout_variants.md").write_text(render(data))


def render(data: dict) -> str:
    """Markdown table: validation MAE_tensor mean +- std over seeds, per variant and target."""
    variants = sorted({r["variant"] for r in data["runs"]})
    lines = [
        "# DTNN readout variants: validation MAE_tensor (model selection only)",
        "",
        f"Machine: {data['machine']}",
        "",
        "Best validation MAE_tensor (units of eps) per run, mean +- std over split seeds "
        "(n = seeds run). The test split is not used here.",
        "",
        "| variant | " + " | ".join(TARGETS) + " |",
        "|---|" + "---|" * len(TARGETS),
    ]
    for v in variants:
        cells = []
        for t in TARGETS:
            vals = [
                r["best_val_mae"] for r in data["runs"] if (r["variant"], r["target"]) == (v, t)
            ]
            cells.append(
                f"{np.mean(vals):.3f} ± {np.std(vals):.3f} (n={len(vals)})" if vals else "-"
            )
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if data.get("note"):
        lines += ["", data["note"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--variants", nargs="+", default=["L4-affine", "L3-affine", "L3-matrix_exp"]
    )
    args = parser.parse_args()

    records = load_petousis2017()
    structures = [r.structure for r in records]
    for variant in args.variants:
        layer, output_map = parse_variant(variant)
        graphs = graphs_with_features(structures, layer, progress=False)
        for target in args.targets:
            keep = [i for i, r in enumerate(records) if r.has_target(target)]
            targets = np.stack([np.asarray(records[i].target(target)) for i in keep])
            tgraphs = with_targets([graphs[i] for i in keep], targets)
            for seed in args.seeds:
                config = config_for("dtnn", target, seed, layer, None)
                readout = dataclasses.replace(config.readout, output_map=output_map)
                config = dataclasses.replace(config, readout=readout)
                train_idx, val_idx, _ = split_indices(len(keep), seed)
                t0 = time.perf_counter()
                result = fit(config, [tgraphs[i] for i in train_idx], [tgraphs[i] for i in val_idx])
                entry = {
                    "variant": variant,
                    "target": target,
                    "seed": seed,
                    "best_val_mae": result.best_val_mae,
                    "best_epoch": result.best_epoch,
                    "epochs_run": result.epochs_run,
                    "train_wall_time_s": time.perf_counter() - t0,
                }
                record(entry)
                print(json.dumps(entry), flush=True)


if __name__ == "__main__":
    main()
