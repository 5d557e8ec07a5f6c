"""Dataset summary: counts per crystal system, cell sizes and eps_poly ranges."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dtnn_jax.data.records import CRYSTAL_SYSTEMS, TARGETS, DielectricRecord
from dtnn_jax.metrics import eps_poly


def _min_median_max(values: np.ndarray) -> dict[str, float]:
    return {
        "min": float(np.min(values)),
        "median": float(np.median(values)),
        "max": float(np.max(values)),
    }


def summarize(records: Sequence[DielectricRecord]) -> dict[str, Any]:
    """Counts and ranges of a labelled dataset.

    Returns:
        ``{"n_records", "crystal_systems": {name: count}, "atoms_per_structure":
        {min, median, max}, "eps_poly": {target: {min, median, max, n}}, "elements":
        {n_distinct, most_common: [[symbol, records], ...]}, "born_charges": {n_records,
        n_atoms, trace_over_3: {min, median, max}, max_abs_component}, "sources":
        {source: count}, "fidelities": {fidelity: count}}`` (``born_charges`` only when a
        record has them).
    """
    if not records:
        raise ValueError("no records to summarise")
    counts = Counter(r.crystal_system or "unknown" for r in records)
    order = [c for c in CRYSTAL_SYSTEMS if c in counts] + sorted(
        c for c in counts if c not in CRYSTAL_SYSTEMS
    )
    atoms = np.array([len(r.structure) for r in records])
    poly: dict[str, dict[str, float]] = {}
    for target in TARGETS:
        tensors = [r.target(target) for r in records if r.has_target(target)]
        if tensors:
            poly[target] = {**_min_median_max(eps_poly(np.stack(tensors))), "n": len(tensors)}
    elements = Counter(el.symbol for r in records for el in r.structure.composition.elements)
    out = {
        "n_records": len(records),
        "crystal_systems": {c: counts[c] for c in order},
        "atoms_per_structure": _min_median_max(atoms),
        "eps_poly": poly,
        "elements": {
            "n_distinct": len(elements),
            "most_common": [[e, n] for e, n in elements.most_common(8)],
        },
        "sources": dict(Counter(r.source or "unknown" for r in records)),
        "fidelities": dict(Counter(r.fidelity or "unknown" for r in records)),
    }
    with_born = [r.born_charges for r in records if r.born_charges is not None]
    if with_born:
        z = np.concatenate(with_born)  # [n_atoms_total, 3, 3]
        out["born_charges"] = {
            "n_records": len(with_born),
            "n_atoms": int(z.shape[0]),
            "trace_over_3": _min_median_max(np.trace(z, axis1=1, axis2=2) / 3),
            "max_abs_component": float(np.max(np.abs(z))),
        }
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of :func:`summarize`'s output."""
    lines = [f"records: {summary['n_records']}", "crystal systems:"]
    lines += [f"  {name:<13} {count:5d}" for name, count in summary["crystal_systems"].items()]
    a = summary["atoms_per_structure"]
    lines.append(
        f"atoms per structure: min {a['min']:.0f}, median {a['median']:.0f}, max {a['max']:.0f}"
    )
    lines.append("eps_poly = tr(eps)/3:")
    for target, s in summary["eps_poly"].items():
        lines.append(
            f"  {target:<10} n={s['n']:5d}  min {s['min']:8.3f}  median {s['median']:8.3f}  "
            f"max {s['max']:9.3f}"
        )
    el = summary.get("elements")
    if el:
        common = ", ".join(f"{e} {n}" for e, n in el["most_common"])
        lines.append(f"elements: {el['n_distinct']} distinct; most common: {common}")
    if "sources" in summary:
        lines.append(
            "sources: "
            + ", ".join(f"{k} {v}" for k, v in summary["sources"].items())
            + "; fidelities: "
            + ", ".join(f"{k} {v}" for k, v in summary["fidelities"].items())
        )
    z = summary.get("born_charges")
    if z:
        t = z["trace_over_3"]
        lines.append(
            f"Born charges: {z['n_records']} records, {z['n_atoms']} atoms; tr(Z)/3 min "
            f"{t['min']:.2f}, median {t['median']:.2f}, max {t['max']:.2f}; max |Z_ab| "
            f"{z['max_abs_component']:.2f}"
        )
    return "\n".join(lines)


def plot_summary(records: Sequence[DielectricRecord], path: str | Path) -> Path:
    """Write histograms of eps_poly per target (log x), atoms per structure and, when
    records carry them, tr(Z*)/3 of the Born charges to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_born = [r.born_charges for r in records if r.born_charges is not None]
    n_panels = len(TARGETS) + 1 + bool(with_born)
    fig, axes = plt.subplots(1, n_panels, figsize=(4 * n_panels, 3.2))
    for ax, target in zip(axes, TARGETS, strict=False):
        tensors = [r.target(target) for r in records if r.has_target(target)]
        values = eps_poly(np.stack(tensors)) if tensors else np.zeros(0)
        # Ionic eps_poly can be 0 or slightly negative (DFPT noise); log axes need > 0.
        positive = values[values > 0]
        if positive.size:
            bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()), 40)
            ax.hist(positive, bins=bins)
            ax.set_xscale("log")
        omitted = values.size - positive.size
        note = f", {omitted} <= 0 not shown" if omitted else ""
        ax.set_title(f"{target} (n={values.size}{note})")
        ax.set_xlabel("eps_poly")
    atoms = [len(r.structure) for r in records]
    atoms_ax = axes[len(TARGETS)]
    atoms_ax.hist(atoms, bins=40)
    atoms_ax.set_title("atoms per structure")
    atoms_ax.set_xlabel("atoms")
    if with_born:
        z = np.concatenate(with_born)
        axes[-1].hist(np.trace(z, axis1=1, axis2=2) / 3, bins=60)
        axes[-1].set_title(f"Born charges (n={len(z)} atoms)")
        axes[-1].set_xlabel("tr(Z*)/3 (e)")
    axes[0].set_ylabel("count")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
