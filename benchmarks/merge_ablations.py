"""Adds the ablations and from-scratch baselines to the accuracy table.

    python benchmarks/merge_ablations.py

Reads ``benchmarks/results/accuracy.json`` (written by ``accuracy.py``), the per-seed test
metrics of ``layer_ablation.json`` (models ``dtnn_L<k>``, ``dtnn_L<j>+L<k>``) and the runs of
``scratch_*.json`` (written by ``scratch_baselines.py``: models ``painn``, ``nequip``), and
writes them all back into ``accuracy.json`` / ``accuracy.md`` on the same splits and metrics.
It also writes ``comparisons.md``: for every model against ``dtnn`` on each target, the
difference of the mean test MAE_tensor, whether it is larger than the seed-to-seed spread
(the larger of the two standard deviations over seeds), and in how many seeds (same split
for both models) the model was better. Differences are only called real when they pass both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dtnn_jax.training.report import aggregate, render_markdown, test_metrics

RESULTS = Path(__file__).parent / "results"


def scratch_per_seed(path: Path) -> tuple[dict, dict]:
    """model -> target -> [per-seed metrics] from scratch_baselines.json, and its budget."""
    data = json.loads(path.read_text())
    per_seed: dict = {}
    for run in sorted(data["runs"], key=lambda r: (r["model"], r["target"], r["seed"])):
        metrics = test_metrics(
            np.asarray(run["predicted"]),
            np.asarray(run["true"]),
            np.asarray(run["crystal_system"]),
            run["target"],
        )
        metrics["train_wall_time_s"] = run["train_wall_time_s"]
        metrics["epochs_run"] = run["epochs_run"]
        metrics["n_params"] = run["n_params"]
        metrics["median_epoch_seconds"] = run["median_epoch_seconds"]
        metrics["seed"] = run["seed"]
        per_seed.setdefault(run["model"], {}).setdefault(run["target"], []).append(metrics)
    budget = {
        "train_config": data["train_config"],
        "machine": data["machine"],
        "note": data.get("note", ""),
    }
    return per_seed, budget


def comparisons(per_seed: dict, reference: str = "dtnn", models=None, title=None) -> str:
    """Markdown: each model (default: all) against ``reference``, per target, on MAE_tensor."""
    lines = [
        title or "# Which differences are larger than the seed-to-seed spread?",
        "",
        f"Test MAE_tensor of each model minus that of `{reference}` (negative: better), "
        "averaged over the seeds both have run; `spread` is the larger of the two standard "
        "deviations over seeds; `better in` counts the seeds (same split for both) where the "
        "model beat the reference. A difference is called real only if it exceeds the spread "
        "and has the same sign in every seed.",
        "",
        "| model | target | seeds | difference | spread | better in | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, by_target in per_seed.items():
        if model == reference or (models is not None and model not in models):
            continue
        for target, runs in by_target.items():
            ref_runs = per_seed.get(reference, {}).get(target)
            if not ref_runs:
                continue
            ref_by_seed = {r["seed"]: r["mae_tensor"] for r in ref_runs}
            pairs = [
                (r["mae_tensor"], ref_by_seed[r["seed"]]) for r in runs if r["seed"] in ref_by_seed
            ]
            if not pairs:
                continue
            a, b = np.array(pairs).T
            diff = float(np.mean(a - b))
            spread = float(max(np.std(a), np.std(b)))
            wins = int(np.sum(a < b))
            same_sign = wins in (0, len(a))
            verdict = "real" if abs(diff) > spread and same_sign else "within spread"
            lines.append(
                f"| {model} | {target} | {len(a)} | {diff:+.3f} | {spread:.3f} | "
                f"{wins}/{len(a)} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def cost_table(models: dict) -> str:
    """Markdown: training wall time (and epochs, parameters where known) per model and target."""
    lines = [
        "Training cost per run (mean over seeds; wall time on the machine above, often shared "
        "by two jobs; DTNN times exclude the one-off encoder pass, ~5 s for the whole set):",
        "",
        "| Model | Target | train wall time (s) | epochs run | s per epoch | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for model, by_target in models.items():
        for target, entry in by_target.items():
            wall = entry.get("train_wall_time_s")
            if not wall:
                continue
            epochs = entry.get("epochs_run", {}).get("mean")
            per_epoch = entry.get("median_epoch_seconds", {}).get("mean")
            params = entry.get("n_params", {}).get("mean")
            lines.append(
                f"| {model} | {target} | {wall['mean']:.0f} | "
                f"{'-' if epochs is None else f'{epochs:.0f}'} | "
                f"{'-' if per_epoch is None else f'{per_epoch:.1f}'} | "
                f"{'-' if params is None else f'{params:,.0f}'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--extra",
        nargs="*",
        default=[],
        metavar="NAME=ACCURACY_JSON:NOTE",
        help="add the dtnn runs of another accuracy.py output as model NAME "
        "(e.g. a same-budget control for the scratch baselines)",
    )
    args = parser.parse_args()
    accuracy = json.loads((RESULTS / "accuracy.json").read_text())
    per_seed = accuracy.get("per_seed", {})
    notes = []
    for spec in args.extra:
        name, rest = spec.split("=", 1)
        path, note = rest.split(":", 1)
        runs = json.loads(Path(path).read_text())["per_seed"]["dtnn"]
        per_seed.setdefault(name, {}).update(runs)  # the same NAME may come in per target
        notes.append(f"{name} ({', '.join(runs)}): {note}")
    ablation_path = RESULTS / "layer_ablation.json"
    if ablation_path.exists():
        ablation = json.loads(ablation_path.read_text())
        per_seed.update(ablation.get("per_seed", {}))
        notes.append(f"layer ablation: {ablation['machine']}")
    accuracy["scratch_budget"] = {}
    for scratch_path in sorted(RESULTS.glob("scratch_*.json")):  # one file per model/target
        scratch, budget = scratch_per_seed(scratch_path)
        train = budget["train_config"]
        for model, by_target in scratch.items():
            per_seed.setdefault(model, {}).update(by_target)
            accuracy["scratch_budget"][f"{model}/{'+'.join(by_target)}"] = budget
            notes.append(
                f"{model} ({', '.join(by_target)}): trained from scratch, max_epochs "
                f"{train['max_epochs']}, patience {train['patience_epochs']}; {budget['note']} "
                f"({scratch_path.name})"
            )
    # accuracy.py resumed the finished dtnn_L3 runs of the layer ablation (same configuration,
    # same seeds: the runs are identical), which costs seconds: report their training time.
    for target, runs in per_seed.get("dtnn", {}).items():
        ablation_runs = {r["seed"]: r for r in per_seed.get("dtnn_L3", {}).get(target, [])}
        for r in runs:
            same = ablation_runs.get(r.get("seed"))
            if same is not None and np.isclose(same["mae_tensor"], r["mae_tensor"]):
                r["train_wall_time_s"] = same["train_wall_time_s"]
    accuracy["models"] = aggregate(per_seed)
    accuracy["per_seed"] = per_seed
    accuracy["ablation_notes"] = notes
    (RESULTS / "accuracy.json").write_text(json.dumps(accuracy, indent=1) + "\n")
    (RESULTS / "accuracy.md").write_text(
        f"# Accuracy on the shipped data\n\nMachine: {accuracy['machine']}\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + "\n"
        + render_markdown(accuracy)
        + "\n"
        + cost_table(accuracy["models"])
    )
    text = comparisons(per_seed) + (
        "\n`dtnn_L3` is the same set of runs as `dtnn` (layer 3 is the default).\n"
    )
    if "dtnn_30ep" in per_seed:
        text += "\n" + comparisons(
            per_seed,
            "dtnn_30ep",
            models=("painn", "nequip"),
            title="## From-scratch models against DTNN on the same 30-epoch budget",
        )
    (RESULTS / "comparisons.md").write_text(text)
    print(render_markdown(accuracy))
    print(text)


if __name__ == "__main__":
    main()
