"""What `dtnn screen` writes: the ranked CSV, element statistics and the plots.

* ``ranked.csv``: one row per crystal, best first (failed inputs last, with the reason);
* ``element_frequency.json`` / ``.png``: how often each element occurs in the top-K against
  the whole pool (paper Fig. 6c);
* ``eps_vs_band_gap.png``: predicted eps vs band gap as density contours (Fig. 6a/b;
  needs band gaps);
* ``fom_distribution.png``: the FOM distribution (Fig. 6d), or eps_poly without band gaps.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.ndimage


def jsonable(obj):
    """``obj`` with NaN/inf floats as None and numpy scalars as Python numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj


def write_ranked_csv(ranked: list[dict], targets, path: Path) -> None:
    """The ranked rows as CSV (NaN as empty cells)."""
    columns = ["rank", "id", "source", "formula", "band_gap_ev", "fom", "fom_std"]
    for t in targets:
        columns += [f"eps_poly_{t}", f"eps_poly_{t}_std", f"anisotropy_{t}"]
    columns += ["rank_anisotropy", "refractive_index", "likely_metal", "small_gap_proxy"]
    columns += ["excluded"]
    columns += ["e_above_hull_ev", "sources", "warning", "error"]
    if any("stage" in row for row in ranked):  # a refined screen (see screening.refine)
        keys = sorted({k for row in ranked for k in row if k.startswith("prescreen_eps_poly_")})
        columns[1:1] = ["stage", "prescreen_rank", *keys]

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.6g}"
        return v

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in ranked:
            writer.writerow([fmt(row.get(c)) for c in columns])


def element_frequency(top: list[dict], pool: list[dict]) -> dict:
    """Element occurrence in the top candidates against the pool (paper Fig. 6c).

    A crystal counts once per element it contains. Fractions are over crystals, so they
    need not sum to 1; ``enrichment`` = top fraction / pool fraction.
    """
    top_counts = Counter(el for r in top for el in r["elements"])
    pool_counts = Counter(el for r in pool for el in r["elements"])
    n_top, n_pool = len(top), len(pool)
    elements = {}
    for el, count in sorted(top_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        pool_fraction = pool_counts[el] / n_pool
        elements[el] = {
            "top_count": count,
            "top_fraction": count / n_top,
            "pool_count": pool_counts[el],
            "pool_fraction": pool_fraction,
            "enrichment": (count / n_top) / pool_fraction,
        }
    return {"n_top": n_top, "n_pool": n_pool, "elements": elements}


def plot_element_frequency(frequency: dict, path: Path, max_elements: int = 30) -> Path:
    """Bar chart: share of top-K crystals containing each element vs the pool share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(frequency["elements"])[:max_elements]
    top = [frequency["elements"][e]["top_fraction"] for e in names]
    pool = [frequency["elements"][e]["pool_fraction"] for e in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(names) + 1.5), 3.5))
    ax.bar(x - 0.2, top, 0.4, label=f"top {frequency['n_top']}")
    ax.bar(x + 0.2, pool, 0.4, label=f"pool ({frequency['n_pool']})", alpha=0.6)
    ax.set_xticks(x, names, rotation=90)
    ax.set_ylabel("fraction of crystals containing it")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _density_contours(ax, x: np.ndarray, y: np.ndarray, bins: int = 40) -> None:
    """Filled contours of a Gaussian-smoothed 2D histogram, points on top when few."""
    if len(x) >= 20:
        h, xe, ye = np.histogram2d(x, y, bins=bins)
        h = scipy.ndimage.gaussian_filter(h, sigma=1.2, mode="constant", truncate=2.5)
        xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
        if h.max() > 0:
            levels = np.linspace(0.02 * h.max(), h.max(), 8)
            ax.contourf(xc, yc, h.T, levels=levels, cmap="Blues")
            ax.contour(xc, yc, h.T, levels=levels, colors="k", linewidths=0.3)
    ax.scatter(x, y, s=4 if len(x) >= 20 else 16, c="C1", alpha=0.5, lw=0)


def plot_eps_vs_band_gap(rows: list[dict], targets, path: Path) -> Path:
    """Predicted eps_poly vs band gap, one panel per target (paper Fig. 6a/b)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), squeeze=False)
    for ax, t in zip(axes[0], targets, strict=True):
        pts = [
            (r["band_gap_ev"], r[f"eps_poly_{t}"])
            for r in rows
            if r["error"] is None and np.isfinite(r["band_gap_ev"])
        ]
        if pts:
            x, y = np.array(pts).T
            _density_contours(ax, x, y)
        ax.set_xlabel("band gap (eV)")
        ax.set_ylabel(f"predicted eps_poly ({t})")
        ax.set_title(f"{t}: {len(pts)} crystals")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_score_distribution(scores, label: str, top_scores, path: Path) -> Path:
    """Histogram of the ranking score over the pool with the top-K marked (paper Fig. 6d)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, np.float64)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if len(scores):
        ax.hist(scores, bins=min(60, max(5, len(scores) // 5)), color="C0", alpha=0.8)
    if top_scores:
        ax.axvline(min(top_scores), color="C3", ls="--", label=f"top {len(top_scores)} cut")
        ax.legend()
    ax.set_xlabel(label)
    ax.set_ylabel("crystals")
    ax.set_yscale("log" if len(scores) > 200 else "linear")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
