"""Accuracy tables and parity plots from test predictions (one or many seeds).

The accuracy file has the shape
``{"models": {MODEL: {TARGET: {METRIC: {"mean": float, "std": float}, ...}}}, "seeds": [...],
"machine": "...", "config": {...}}``, METRIC in DESIGN.md section 5 plus extras, and
``by_crystal_system`` per target. The markdown table follows the paper's Table 2 layout: one
block per target, a row per crystal system and "All", a column per model, mean +- std of
MAE_tensor over seeds.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dtnn_jax.metrics import all_metrics, mae_tensor
from dtnn_jax.properties import refractive_index

CRYSTAL_SYSTEMS = (
    "cubic",
    "hexagonal",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "triclinic",
    "trigonal",
)
# Test crystals with a DFT component above this are excluded from `mae_tensor_no_outliers`.
OUTLIER_COMPONENT = 100.0
MODEL_LABELS = {
    "dtnn": "DTNN",
    "dtnn_simple": "DTNN-simple",
    "painn": "PaiNN",
    "nequip": "NequIP",
    "ridge": "Ridge",
    "mean_predictor": "Mean",
}


def test_metrics(
    pred: np.ndarray, true: np.ndarray, systems: Sequence[str], target: str
) -> dict[str, float | dict]:
    """All reported metrics of one model on one test split.

    Args:
        pred, true: [n, 3, 3] tensors.
        systems: [n] crystal system of each test crystal.
        target: "electronic", "ionic" or "total" (the refractive index is electronic only).
    """
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    out: dict = dict(all_metrics(pred, true))
    keep = np.abs(true).max(axis=(1, 2)) <= OUTLIER_COMPONENT
    out["mae_tensor_no_outliers"] = mae_tensor(pred[keep], true[keep]) if keep.any() else np.nan
    out["n_outliers_excluded"] = int((~keep).sum())
    out["mae_eps_poly"] = out["mae_mean_diag"]
    if target == "electronic":
        # eps_inf >= 1 physically; a prediction below it counts as n = 1 (vacuum).
        floor = np.maximum(np.trace(pred, axis1=1, axis2=2) / 3.0, 1.0)[:, None, None]
        n_pred = refractive_index(np.eye(3) * floor)
        n_true = refractive_index(true)
        out["mae_refractive_index"] = float(np.nanmean(np.abs(n_pred - n_true)))
    systems = np.asarray(systems)
    out["by_crystal_system"] = {
        s: mae_tensor(pred[systems == s], true[systems == s])
        for s in CRYSTAL_SYSTEMS
        if np.any(systems == s)
    }
    return out


def aggregate(per_seed: Mapping[str, Mapping[str, Sequence[dict]]]) -> dict:
    """``{model: {target: [metrics per seed]}}`` -> mean and std over seeds.

    Every scalar in the per-seed dicts is aggregated (an optional ``"seed"`` key is listed
    under ``"seeds"`` instead).
    """

    def stats(values):
        values = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
        if values.size == 0:
            return {"mean": float("nan"), "std": float("nan"), "n": 0}
        return {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}

    models: dict = {}
    for model, by_target in per_seed.items():
        models[model] = {}
        for target, runs in by_target.items():
            entry: dict = {}
            scalar_keys = [
                k for k, v in runs[0].items() if isinstance(v, int | float) and k != "seed"
            ]
            for key in scalar_keys:
                entry[key] = stats([r.get(key) for r in runs])
            if all("seed" in r for r in runs):
                entry["seeds"] = [r["seed"] for r in runs]
            entry["by_crystal_system"] = {
                s: stats([r["by_crystal_system"].get(s) for r in runs])
                for s in CRYSTAL_SYSTEMS
                if any(s in r["by_crystal_system"] for r in runs)
            }
            models[model][target] = entry
    return models


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            return names[0]
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (what ``uptime`` prints), rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_description() -> str:
    """CPU, cores, OS, Python and jax (with its backend): the line every benchmark records."""
    cpu = cpu_model()
    import jax

    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, jax {jax.__version__} ({jax.default_backend()})"
    )


def render_markdown(accuracy: dict) -> str:
    """The paper's Table 2 layout: MAE_tensor per crystal system, mean +- std over seeds."""
    models = [m for m in MODEL_LABELS if m in accuracy["models"]]
    models += [m for m in accuracy["models"] if m not in models]
    targets = [t for t in ("electronic", "ionic", "total") if t in accuracy["models"][models[0]]]
    header = "| Task | " + " | ".join(MODEL_LABELS.get(m, m) for m in models) + " |"
    lines = [
        f"Test MAE_tensor (mean +- std over seeds {accuracy.get('seeds')}); best per row in bold.",
        "",
        header,
        "|" + "---|" * (len(models) + 1),
    ]

    def fmt(s):
        return (
            "-" if s is None or not np.isfinite(s["mean"]) else f"{s['mean']:.3f} ± {s['std']:.3f}"
        )

    for target in targets:
        lines.append(f"| **{target.capitalize()}** |" + " |" * len(models))
        for row in (*CRYSTAL_SYSTEMS, "All"):
            cells = []
            for m in models:
                entry = accuracy["models"][m].get(target, {})
                s = (
                    entry.get("mae_tensor")
                    if row == "All"
                    else entry.get("by_crystal_system", {}).get(row)
                )
                cells.append(s)
            means = [c["mean"] if c and np.isfinite(c["mean"]) else np.inf for c in cells]
            best = int(np.argmin(means))
            text = [
                f"**{fmt(c)}**" if i == best and np.isfinite(means[i]) else fmt(c)
                for i, c in enumerate(cells)
            ]
            lines.append(f"| {row.capitalize()} | " + " | ".join(text) + " |")
    lines += ["", "Other metrics (All):", ""]
    keys = (
        "mae_mean_diag",
        "mae_diag",
        "mae_offdiag",
        "mae_tensor_no_outliers",
        "mae_refractive_index",
    )
    lines.append("| Model | Target | " + " | ".join(keys) + " |")
    lines.append("|" + "---|" * (len(keys) + 2))
    for m in models:
        for target in targets:
            entry = accuracy["models"][m].get(target, {})
            lines.append(
                f"| {MODEL_LABELS.get(m, m)} | {target} | "
                + " | ".join(fmt(entry.get(k)) for k in keys)
                + " |"
            )
    return "\n".join(lines) + "\n"


def parity_plot(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str
) -> None:
    """Predicted vs DFT tensor components, diagonal and off-diagonal, log-log diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    off = ~np.eye(3, dtype=bool)
    for label, (pred, true) in predictions.items():
        d_t, d_p = np.diagonal(true, 0, 1, 2).ravel(), np.diagonal(pred, 0, 1, 2).ravel()
        axes[0].scatter(d_t, d_p, s=8, alpha=0.6, label=label)
        axes[1].scatter(true[:, off].ravel(), pred[:, off].ravel(), s=8, alpha=0.6, label=label)
    for ax, name in zip(axes, ("diagonal components", "off-diagonal components"), strict=True):
        lo, hi = ax.get_xlim()
        lo, hi = min(lo, ax.get_ylim()[0]), max(hi, ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("DFT")
        ax.set_ylabel("predicted")
        ax.set_title(name)
        ax.legend(fontsize=8)
    axes[0].set_xscale("symlog", linthresh=1.0)
    axes[0].set_yscale("symlog", linthresh=1.0)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: Mapping[str, Sequence[dict]], workdir: str | Path) -> dict:
    """The report of `dtnn train`: accuracy.json/.md and parity plots in ``workdir``.

    ``results`` maps target -> the summaries `train_and_evaluate` returned for it, one per
    split seed; each test set is read back from ``<summary["workdir"]>/test_predictions.npz``.
    With several seeds the table gives mean +- std over them and the parity plots pool them.
    """
    workdir = Path(workdir)
    per_seed: dict = {"dtnn": {}, "mean_predictor": {}, "ridge": {}}
    for target, summaries in results.items():
        pooled_pred, pooled_true = [], []
        for summary in summaries:
            with np.load(Path(summary["workdir"]) / "test_predictions.npz") as f:
                true, systems = f["true"], f["crystal_system"]
                preds = {
                    "dtnn": f["predicted"],
                    "mean_predictor": f["mean_predictor"],
                    "ridge": f["ridge"],
                }
            for model, pred in preds.items():
                per_seed[model].setdefault(target, []).append(
                    test_metrics(pred, true, systems, target)
                )
            pooled_pred.append(preds["dtnn"])
            pooled_true.append(true)
        seeds = [s["config"]["seed"] for s in summaries]
        title = f"{target}: test splits of seed(s) {', '.join(map(str, seeds))}"
        pooled = {"DTNN": (np.concatenate(pooled_pred), np.concatenate(pooled_true))}
        parity_plot(pooled, workdir / f"parity_{target}.png", title)
    seeds = sorted({int(s["config"]["seed"]) for runs in results.values() for s in runs})
    accuracy = {
        "models": aggregate(per_seed),
        "seeds": seeds,
        "machine": machine_description(),
        "config": {t: runs[0]["config"] for t, runs in results.items()},
        "wall_time_s": {
            t: sum(s.get("wall_time_s", 0.0) for s in runs) for t, runs in results.items()
        },
    }
    (workdir / "accuracy.json").write_text(json.dumps(accuracy, indent=1) + "\n")
    (workdir / "accuracy.md").write_text(render_markdown(accuracy))
    return accuracy
