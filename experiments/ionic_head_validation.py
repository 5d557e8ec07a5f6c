"""Issue 23 on validation: the readout's edge envelope and the fast model's PSD ionic head.

    python experiments/ionic_head_validation.py --workdir runs/issue23 --seeds 0 1 2 \
        --variants electronic gram1 gram4 ionic_tensor total_tensor

Each variant trains one SevenNet-0 layer-3 model per split seed (80/10/10, the shipped
data; resumable: a finished run is only re-evaluated) and saves its validation predictions.
The table compares, paired per seed, MAE_tensor on the validation split:
ionic heads against each other, and the summed total electronic + ionic(variant) against a
separately trained total head. ``legacy_*`` variants are the same models without the edge
envelope (the readout before issue 23). The test split is not read here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.data import load_petousis2017, split_indices
from dtnn_jax.encoder.features import graphs_with_features
from dtnn_jax.metrics import mae_tensor
from dtnn_jax.training import with_targets
from dtnn_jax.training.experiment import run_experiment
from dtnn_jax.training.loop import evaluate


def variant_config(name: str, seed: int) -> ExperimentConfig:
    """The config of one variant: "electronic", "gramC" (PSD ionic head, C channels),
    "ionic_tensor"/"total_tensor" (the DTNN tensor head), a "legacy_" prefix for no envelope."""
    legacy = name.startswith("legacy_")
    base = name.removeprefix("legacy_")
    if base.startswith("gram"):
        config = ExperimentConfig.default("ionic", seed=seed)
        readout = dataclasses.replace(
            config.readout,
            ionic_channels=int(base[4:]),
            target_scaling="none",
            output_map="affine",
        )
        config = dataclasses.replace(config, readout=readout)
    else:
        config = ExperimentConfig.default(base.removesuffix("_tensor"), seed=seed)
    if legacy:
        readout = dataclasses.replace(config.readout, edge_cutoff_angstrom=None)
        config = dataclasses.replace(config, readout=readout)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, progress_bar=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=[])
    parser.add_argument(
        "--export-bundle",
        type=Path,
        help="write the fast model: the electronic and ionic variants (--ionic) of --seeds "
        "as one bundle (total = electronic + ionic), and its test table beside it",
    )
    parser.add_argument("--ionic", default="gram1", help="the ionic variant of the bundle")
    args = parser.parse_args()
    records = load_petousis2017()
    graphs = graphs_with_features([r.structure for r in records], 3, progress=False)
    if args.export_bundle is not None:
        export(args, records, graphs)
        return
    for name in args.variants:
        for seed in args.seeds:
            out = args.workdir / name / f"seed{seed}"
            if (out / "val_predictions.npz").exists():
                continue
            config = variant_config(name, seed)
            summary, fit = run_experiment(config, out, records, graphs)
            _, val_idx, _ = split_indices(len(records), seed)
            val_graphs = [graphs[i] for i in val_idx]
            target = np.stack([r.target(config.target) for r in (records[i] for i in val_idx)])
            pred = evaluate(fit.params, config, with_targets(val_graphs, target), fit.scaler)
            np.savez(out / "val_predictions.npz", indices=val_idx, predicted=pred, true=target)
            print(
                f"{name} seed {seed}: val MAE_tensor {mae_tensor(pred, target):.4f} "
                f"(best epoch {summary['best_epoch']})",
                flush=True,
            )
    table(args.workdir, args.seeds)


def export(args, records, graphs) -> None:
    """The fast model's bundle from finished (or resumed) runs, and its test table."""
    from dtnn_jax.metrics import all_metrics
    from dtnn_jax.training.export import export_bundle, records_digest

    runs, test = {}, {}
    for target, name in (("electronic", "electronic"), ("ionic", args.ionic)):
        for seed in args.seeds:
            config = variant_config(name, seed)
            summary, fit = run_experiment(
                config, args.workdir / name / f"seed{seed}", records, graphs
            )
            metrics = {**summary["test"], "best_val_mae_tensor": summary["best_val_mae_tensor"]}
            runs.setdefault(target, []).append((config, fit, metrics))
            test.setdefault(target, {})[seed] = summary["test"]
    for seed in args.seeds:
        e, i = (
            np.load(args.workdir / n / f"seed{seed}" / "test_predictions.npz")
            for n in ("electronic", args.ionic)
        )
        assert np.array_equal(e["indices"], i["indices"])
        total = all_metrics(e["predicted"] + i["predicted"], e["true"] + i["true"])
        test.setdefault("total", {})[seed] = total
    table = {
        t: {
            "per_seed": {s: m["mae_tensor"] for s, m in by_seed.items()},
            "mean": float(np.mean([m["mae_tensor"] for m in by_seed.values()])),
            "std": float(np.std([m["mae_tensor"] for m in by_seed.values()])),
        }
        for t, by_seed in test.items()
    }
    print(json.dumps(table, indent=1))
    seeds = ", ".join(map(str, args.seeds))
    path = export_bundle(
        args.export_bundle,
        runs,
        records_digest(records),
        len(records),
        description=(
            "DTNN readouts on frozen SevenNet-0 layer-3 features, trained on the Petousis et "
            "al. 2017 DFPT set: electronic from the tensor head, ionic from the PSD head "
            "(zero for a one-atom cell), total = electronic + ionic; one member per split "
            f"seed ({seeds}; 80/10/10, each member saw its own 80 %)"
        ),
        training_data="dtnn_jax/data/petousis2017.json.gz",
        produced_by="experiments/ionic_head_validation.py --export-bundle",
        name="dtnn-sevennet0-petousis2017",
    )
    (path.parent / f"{path.name}_test.json").write_text(json.dumps(table, indent=1))
    print(f"bundle: {path}")


def table(workdir: Path, seeds: list[int]) -> None:
    """Per-variant validation MAE_tensor per seed, and summed totals; written as JSON."""
    rows = {}
    for path in sorted(workdir.glob("*/seed*/val_predictions.npz")):
        name, seed = path.parent.parent.name, int(path.parent.name[4:])
        d = np.load(path)
        rows.setdefault(name, {})[seed] = (d["predicted"], d["true"])
    result = {}
    for name, by_seed in rows.items():
        result[name] = {s: float(mae_tensor(*by_seed[s])) for s in sorted(by_seed)}
    for prefix in ("", "legacy_"):
        elec = rows.get(prefix + "electronic", {})
        for name, by_seed in rows.items():
            if not name.removeprefix(prefix).startswith(("gram", "ionic")):
                continue
            if name.startswith("legacy_") != bool(prefix):
                continue
            summed = {}
            for s in sorted(set(elec) & set(by_seed)):
                total_true = elec[s][1] + by_seed[s][1]
                summed[s] = float(mae_tensor(elec[s][0] + by_seed[s][0], total_true))
            if summed:
                result[f"{prefix}electronic+{name.removeprefix(prefix)}"] = summed
    for name, by_seed in result.items():
        vals = " ".join(f"{by_seed[s]:.4f}" for s in sorted(by_seed))
        print(f"{name:>28}: {vals}  mean {np.mean(list(by_seed.values())):.4f}")
    (workdir / "validation.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
