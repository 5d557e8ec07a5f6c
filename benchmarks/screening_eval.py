"""Screening evaluation on held-out crystals: does the model find the best candidates?

    python benchmarks/screening_eval.py [--predictions benchmarks/results/test_predictions.npz]
        [--out benchmarks/results] [--fraction 0.1]

Reads the test-set predictions that ``benchmarks/accuracy.py`` writes (keys
``"<model>/<target>/seed<s>/predicted|true|indices"``, indices into `load_petousis2017`), and
per model and split seed computes on that seed's test crystals:

* recall@10 %: the share of the true top-10 % by FOM = band gap x eps_poly(total) that is
  in the predicted top-10 % (band gaps are the dataset's DFT gaps, so only eps is
  predicted). Two references on the same crystals: a random ranking (expected recall =
  k / n) and ranking by band gap alone (what a constant-eps predictor achieves);
* recall@10 % of eps_poly(total) alone (the high-k screen without the gap);
* Spearman rank correlation of predicted vs true eps_poly, per target, and of the FOM.

Writes ``screening_eval.json`` and ``screening_eval.md`` (mean +- std over seeds).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from dtnn_jax.data import load_petousis2017
from dtnn_jax.metrics import recall_at_top_fraction, spearman, top_k_size
from dtnn_jax.properties import eps_poly, figure_of_merit

RESULTS = Path(__file__).parent / "results"
_KEY = re.compile(r"^(?P<model>[^/]+)/(?P<target>[^/]+)/seed(?P<seed>\d+)/(?P<kind>\w+)$")


def load_predictions(path: Path) -> dict:
    """``{model: {target: {seed: {"predicted", "true", "indices"}}}}`` from the npz."""
    runs: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    with np.load(path) as f:
        for key in f.files:
            m = _KEY.match(key)
            if m is None:
                raise ValueError(f"{path}: unexpected key {key!r}")
            runs[m["model"]][m["target"]][int(m["seed"])][m["kind"]] = f[key]
    for model, targets in runs.items():
        for target, seeds in targets.items():
            for seed, arrays in seeds.items():
                missing = {"predicted", "true", "indices"} - set(arrays)
                if missing:
                    raise ValueError(f"{path}: {model}/{target}/seed{seed} lacks {missing}")
    return runs


def evaluate_seed(
    arrays: dict, target: str, band_gap_ev: np.ndarray, records, fraction: float
) -> dict:
    """Metrics of one (model, target, seed) test set."""
    pred, true, idx = arrays["predicted"], arrays["true"], arrays["indices"]
    # the stored truth must be the dataset's tensors of those indices (guards the mapping)
    ref = np.stack([records[i].target(target) for i in idx])
    if not np.allclose(true, ref, atol=1e-4):
        raise ValueError(f"{target}: stored true tensors do not match the records' indices")
    p_poly, t_poly = eps_poly(pred), eps_poly(true)  # [n]
    out = {"n_test": len(idx), "spearman_eps_poly": spearman(p_poly, t_poly)}
    if target == "total":
        gap = band_gap_ev[idx]  # [n]
        p_fom, t_fom = figure_of_merit(gap, p_poly), figure_of_merit(gap, t_poly)
        out |= {
            "k": top_k_size(len(idx), fraction),
            "recall_fom": recall_at_top_fraction(t_fom, p_fom, fraction),
            "recall_fom_band_gap_only": recall_at_top_fraction(t_fom, gap, fraction),
            "recall_fom_random": top_k_size(len(idx), fraction) / len(idx),
            "recall_eps_poly": recall_at_top_fraction(t_poly, p_poly, fraction),
            "spearman_fom": spearman(p_fom, t_fom),
        }
    return out


def _mean_std(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(np.mean(v)), "std": float(np.std(v)), "n_seeds": len(v)}


def evaluate(path: Path, fraction: float) -> dict:
    records = load_petousis2017()
    band_gap_ev = np.array([r.band_gap_ev for r in records])
    runs = load_predictions(path)
    result: dict = {}
    for model, targets in runs.items():
        result[model] = {}
        for target, seeds in targets.items():
            per_seed = {
                s: evaluate_seed(seeds[s], target, band_gap_ev, records, fraction)
                for s in sorted(seeds)
            }
            metrics = [k for k in next(iter(per_seed.values())) if k not in ("n_test", "k")]
            result[model][target] = {
                "per_seed": per_seed,
                "summary": {m: _mean_std([v[m] for v in per_seed.values()]) for m in metrics},
            }
    return result


def render_markdown(report: dict) -> str:
    frac = f"{100 * report['fraction']:g} %"
    lines = [
        "# Screening evaluation on held-out crystals",
        "",
        f"Predictions: `{report['predictions']}`; date {report['date']}.",
        f"Machine: {report['machine']}.",
        "",
        f"Per split seed, on that seed's test crystals; mean +- std over seeds. Top {frac}: "
        "k = round(fraction x n_test). FOM = DFT band gap x eps_poly(total).",
        "",
        f"| model | seeds | recall@{frac} FOM | band gap only | random | "
        f"recall@{frac} eps_poly | Spearman FOM |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]

    def fmt(s):
        return f"{s['mean']:.3f} +- {s['std']:.3f}"

    for model, targets in report["models"].items():
        if "total" not in targets:
            lines.append(f"| {model} | - | (no total-tensor predictions) | | | | |")
            continue
        s = targets["total"]["summary"]
        seeds = ",".join(str(k) for k in targets["total"]["per_seed"])
        lines.append(
            f"| {model} | {seeds} | {fmt(s['recall_fom'])} | {fmt(s['recall_fom_band_gap_only'])}"
            f" | {fmt(s['recall_fom_random'])} | {fmt(s['recall_eps_poly'])} "
            f"| {fmt(s['spearman_fom'])} |"
        )
    lines += ["", "Spearman rank correlation of predicted vs true eps_poly:", ""]
    targets = ("electronic", "ionic", "total")
    lines += ["| model | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
    for model, by_target in report["models"].items():
        cells = [
            fmt(by_target[t]["summary"]["spearman_eps_poly"]) if t in by_target else "-"
            for t in targets
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", default=str(RESULTS / "test_predictions.npz"))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--fraction", type=float, default=0.1)
    args = parser.parse_args()

    from dtnn_jax.training.report import machine_description

    path = Path(args.predictions)
    if not path.exists():
        raise SystemExit(f"{path}: not found; run benchmarks/accuracy.py first")
    report = {
        "predictions": str(path),
        "fraction": args.fraction,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "models": evaluate(path, args.fraction),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "screening_eval.json").write_text(json.dumps(report, indent=1) + "\n")
    text = render_markdown(report)
    (out / "screening_eval.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
