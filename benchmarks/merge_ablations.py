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


def comparisons(per_seed: dict, reference: str = "dtnn") -> str:
    """Markdown: each model against ``reference``, per target, on MAE_tensor."""
    lines = [
        "# Which differences are larger than the seed-to-seed spread?",
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
        if model == reference:
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


def main() -> None:
    accuracy = json.loads((RESULTS / "accuracy.json").read_text())
    per_seed = accuracy.get("per_seed", {})
    notes = []
    ablation_path = RESULTS / "layer_ablation.json"
    if ablation_path.exists():
        ablation = json.loads(ablation_path.read_text())
        per_seed.update(ablation.get("per_seed", {}))
        notes.append(f"layer ablation: {ablation['machine']}")
    accuracy["scratch_budget"] = {}
    for scratch_path in sorted(RESULTS.glob("scratch_*.json")):
        scratch, budget = scratch_per_seed(scratch_path)
        per_seed.update(scratch)
        train = budget["train_config"]
        for model in scratch:
            accuracy["scratch_budget"][model] = budget
            notes.append(
                f"{model}: trained from scratch, max_epochs {train['max_epochs']}, patience "
                f"{train['patience_epochs']}; {budget['note']} ({scratch_path.name})"
            )
    accuracy["models"] = aggregate(per_seed)
    accuracy["per_seed"] = per_seed
    accuracy["ablation_notes"] = notes
    (RESULTS / "accuracy.json").write_text(json.dumps(accuracy, indent=1) + "\n")
    (RESULTS / "accuracy.md").write_text(
        f"# Accuracy on the shipped data\n\nMachine: {accuracy['machine']}\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + "\n"
        + render_markdown(accuracy)
    )
    (RESULTS / "comparisons.md").write_text(comparisons(per_seed))
    print(render_markdown(accuracy))
    print(comparisons(per_seed))


if __name__ == "__main__":
    main()
