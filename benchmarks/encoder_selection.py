"""Which frozen encoder and layer feed the readout best? Chosen on validation data only.

    python benchmarks/encoder_selection.py --encoders nequix-oam-1 --layers 1 2 3 \
        [--readouts dtnn dtnn_simple] [--targets electronic ionic total] [--seeds 0 1 2 3 4]

For each (encoder, layer, readout) and each target and split seed, trains the shipped
readout configuration (`ExperimentConfig.default`, DTNN or DTNN-simple) on the 80 % training
part of the seed's 80/10/10 split with early stopping on its 10 % validation part, and
records the best validation MAE_tensor. The test part is never evaluated here: the chosen
model is evaluated once by ``benchmarks/accuracy.py``. Results are merged into
``benchmarks/results/encoder_selection.json`` (per seed, so runs can be split over
processes) and rendered to ``encoder_selection.md``: the validation table, and for each
candidate the per-seed paired difference to the reference (``--reference``, default the
previous default SevenNet-0 layer 3 DTNN) with the number of seeds in which it is better.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import time
from pathlib import Path

import numpy as np

from dtnn_jax.config import TARGETS, ExperimentConfig
from dtnn_jax.constants import READOUT_VARIANTS
from dtnn_jax.data import load_petousis2017, split_indices
from dtnn_jax.encoder.features import graphs_with_features
from dtnn_jax.training import fit, with_targets
from dtnn_jax.training.report import machine_description

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "encoder_selection.json"
REFERENCE = "sevennet-0/L3/dtnn"


def candidate_name(encoder: str, layer: int, readout: str) -> str:
    return f"{encoder}/L{layer}/{readout}"


def config_for(encoder: str, layer: int, readout: str, target: str, seed: int):
    config = ExperimentConfig.default(
        target=target, encoder_layer=layer, seed=seed, encoder=encoder, readout=readout
    )
    return dataclasses.replace(config, train=dataclasses.replace(config.train, progress_bar=False))


def validate(config: ExperimentConfig, records, graphs, workdir: Path) -> dict:
    """Trains on the seed's training split; the best validation MAE and what it cost."""
    keep = [i for i, r in enumerate(records) if r.has_target(config.target)]
    targets = np.stack([np.asarray(records[i].target(config.target)) for i in keep])
    labelled = with_targets([graphs[i] for i in keep], targets)
    train_idx, val_idx, _ = split_indices(len(keep), config.seed)  # test: not touched
    start = time.perf_counter()
    result = fit(config, [labelled[i] for i in train_idx], [labelled[i] for i in val_idx], workdir)
    return {
        "seed": config.seed,
        "best_val_mae_tensor": result.best_val_mae,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_wall_time_s": time.perf_counter() - start,
    }


def save(new: dict) -> dict:
    """Merges runs into the results file (locked: candidates may run in parallel)."""
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(OUT.read_text()) if OUT.exists() else {"per_seed": {}}
        merged = old["per_seed"]
        for name, by_target in new.items():
            for target, runs in by_target.items():
                have = {r["seed"]: r for r in merged.setdefault(name, {}).get(target, [])}
                have.update({r["seed"]: r for r in runs})
                merged[name][target] = [have[s] for s in sorted(have)]
        result = {
            "machine": machine_description(),
            "date": time.strftime("%Y-%m-%d"),
            "protocol": (
                "best validation MAE_tensor of the shipped readout config, 80/10/10 split of "
                "each seed, test split not evaluated"
            ),
            "per_seed": dict(sorted(merged.items())),
        }
        OUT.write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "encoder_selection.md").write_text(render(result))
    return result


def render(result: dict, reference: str = REFERENCE) -> str:
    """Validation table plus paired per-seed differences to the reference."""
    per_seed = result["per_seed"]
    names = list(per_seed)
    lines = [
        "# Encoder, layer and readout chosen on validation data",
        "",
        f"Machine: {result['machine']}. {result['protocol']}.",
        "",
        "Validation MAE_tensor, mean ± std over seeds (n = seeds run):",
        "",
        "| candidate | electronic | ionic | total |",
        "|---|---|---|---|",
    ]
    for name in names:
        cells = []
        for target in TARGETS:
            runs = per_seed[name].get(target, [])
            v = np.array([r["best_val_mae_tensor"] for r in runs])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f} (n={len(v)})" if len(v) else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired per seed against `{reference}`: mean difference of the validation MAE "
        "(negative = better), its std over seeds, and in how many seeds the candidate is "
        "better.",
        "",
        "| candidate | electronic | ionic | total |",
        "|---|---|---|---|",
    ]
    ref = per_seed.get(reference, {})
    for name in names:
        if name == reference:
            continue
        cells = []
        for target in TARGETS:
            mine = {r["seed"]: r["best_val_mae_tensor"] for r in per_seed[name].get(target, [])}
            base = {r["seed"]: r["best_val_mae_tensor"] for r in ref.get(target, [])}
            seeds = sorted(set(mine) & set(base))
            if not seeds:
                cells.append("-")
                continue
            d = np.array([mine[s] - base[s] for s in seeds])
            cells.append(
                f"{d.mean():+.3f} ± {d.std():.3f}, better in {int((d < 0).sum())}/{len(seeds)}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["nequix-oam-1"])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--readouts", nargs="+", default=["dtnn"], choices=list(READOUT_VARIANTS))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workdir", default="runs/encoder_selection")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        save({})
        return
    records = load_petousis2017()
    structures = [r.structure for r in records]
    for encoder in args.encoders:
        for layer in args.layers:
            graphs = graphs_with_features(structures, layer, progress=False, encoder=encoder)
            for readout in args.readouts:
                name = candidate_name(encoder, layer, readout)
                for target in args.targets:
                    for seed in args.seeds:
                        config = config_for(encoder, layer, readout, target, seed)
                        run = Path(args.workdir) / name / target / f"seed{seed}"
                        res = validate(config, records, graphs, run)
                        save({name: {target: [res]}})
                        print(
                            f"{name} {target} seed {seed}: val {res['best_val_mae_tensor']:.3f} "
                            f"({res['train_wall_time_s']:.0f} s)",
                            flush=True,
                        )
    print((RESULTS / "encoder_selection.md").read_text())


if __name__ == "__main__":
    main()
