"""How much of the physics model's top 10 % a fast pre-screen keeps (cost-aware `dtnn screen`).

    python benchmarks/screen_refine.py

`dtnn screen` ranks a pool with the fast feature readout and refines only its best K with
the physics model. A crystal the physics model would rank in its top 10 % is lost when the
pre-screen does not put it in its top K. This measures that loss on crystals neither model
trained on: the test crystals of the 5 split seeds of ``benchmarks/ionic_physics.py test``
(its saved predictions, ``results/ionic_physics_test_predictions.npz``), ranking by
eps_poly of the total tensor (no band gaps). For pre-screens keeping the best 10-50 % it
reports, per seed and pooled, the fraction of the physics top 10 % that is cut, and the
recall of the DFT top 10 % by the physics model alone, the readout alone and the two-stage
screen. Writes ``results/screen_refine.{json,md}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from dtnn_jax.data import load_petousis2017

RESULTS = Path(__file__).parent / "results"
PRESCREEN_FRACTIONS = (0.1, 0.2, 0.3, 0.5)
TOP_FRACTION = 0.1


def eps_poly(tensors: np.ndarray) -> np.ndarray:
    return np.trace(tensors, axis1=-2, axis2=-1) / 3.0


def top(scores: np.ndarray, fraction: float) -> set[int]:
    k = max(1, round(fraction * len(scores)))
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def main() -> None:
    saved = np.load(RESULTS / "ionic_physics_test_predictions.npz")
    records = load_petousis2017()
    total = np.stack([np.asarray(r.target("total")) for r in records])
    seeds = sorted({int(k.split("/")[0].removeprefix("seed")) for k in saved.files})
    per_seed = []
    for seed in seeds:
        idx = saved[f"seed{seed}/test"]
        physics = eps_poly(saved[f"seed{seed}/physics_total"])
        readout = eps_poly(saved[f"seed{seed}/readout_total"])
        truth = eps_poly(total[idx])
        best_physics, best_true = top(physics, TOP_FRACTION), top(truth, TOP_FRACTION)
        row = {"seed": seed, "n_test": len(idx), "n_top": len(best_physics), "prescreen": {}}
        row["dft_top_recall_physics"] = len(best_true & best_physics) / len(best_true)
        row["dft_top_recall_readout"] = len(best_true & top(readout, TOP_FRACTION)) / len(best_true)
        for fraction in PRESCREEN_FRACTIONS:
            kept = top(readout, fraction)
            # the two-stage screen: physics re-ranks the kept ones, its best 10 % of all win
            k = max(1, round(TOP_FRACTION * len(idx)))
            staged = sorted(kept, key=lambda i: -physics[i])[:k]
            row["prescreen"][f"{fraction:g}"] = {
                "physics_top_cut": len(best_physics - kept) / len(best_physics),
                "dft_top_recall_two_stage": len(best_true & set(staged)) / len(best_true),
            }
        per_seed.append(row)
    pooled = {
        f"{f:g}": {
            key: float(np.mean([r["prescreen"][f"{f:g}"][key] for r in per_seed]))
            for key in ("physics_top_cut", "dft_top_recall_two_stage")
        }
        for f in PRESCREEN_FRACTIONS
    }
    data = {
        "date": time.strftime("%Y-%m-%d"),
        "source": "benchmarks/results/ionic_physics_test_predictions.npz (test crystals)",
        "ranking": "eps_poly of the total tensor",
        "per_seed": per_seed,
        "mean_over_seeds": pooled,
        "dft_top_recall_physics": float(np.mean([r["dft_top_recall_physics"] for r in per_seed])),
        "dft_top_recall_readout": float(np.mean([r["dft_top_recall_readout"] for r in per_seed])),
    }
    (RESULTS / "screen_refine.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [
        "# Cost-aware screening: what the fast pre-screen cuts",
        "",
        "Written by `benchmarks/screen_refine.py` from the test predictions of "
        "`ionic_physics.py test` (5 split seeds, ~106 test crystals each; neither model saw "
        "them). Ranked by eps_poly of the total tensor. Pre-screen: the SevenNet-0 feature "
        "readout; refine: the physics model (Nequix-OAM-1-PFT electronic readout + Born "
        "charges x K).",
        "",
        "| pre-screen keeps | physics top 10 % cut (mean over seeds) | per seed | "
        "DFT top 10 % found by the two-stage screen |",
        "|---|---|---|---|",
    ]
    for f in PRESCREEN_FRACTIONS:
        cuts = [r["prescreen"][f"{f:g}"]["physics_top_cut"] for r in per_seed]
        lines.append(
            f"| best {f:.0%} | {pooled[f'{f:g}']['physics_top_cut']:.0%} | "
            + " ".join(f"{c:.0%}" for c in cuts)
            + f" | {pooled[f'{f:g}']['dft_top_recall_two_stage']:.0%} |"
        )
    lines += [
        "",
        f"DFT top 10 % found by the physics model alone: {data['dft_top_recall_physics']:.0%}; "
        f"by the feature readout alone: {data['dft_top_recall_readout']:.0%}.",
        "",
    ]
    (RESULTS / "screen_refine.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
