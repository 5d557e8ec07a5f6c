"""Force constants from Nequix-OAM-1-PFT: speed against crystal size, and the shipped set.

Two parts, each updating its own key of ``benchmarks/results/force_constants.json`` (and the
markdown next to it):

* ``--part speed`` (a): seconds per crystal against its size, for one shipped crystal each
  of 2, 5, 10 and 20 atoms (the one with the median edge count of its size), float32 and
  float64, all atoms displaced and symmetry-reduced. Each crystal alone in its padded
  bucket of the production budget (`FORCE_CONSTANTS_BUDGET`), through
  `compute_force_constants` (graphs built beforehand, no cache): the first call of each
  (dtype, shape) includes compilation, reported apart as ``cold - warm``; warm is the
  fastest of ``--repeats`` further calls. Also the max |K_sym - K_full| and
  |K_float32 - K_float64| per crystal.
* ``--part dataset`` (b): every crystal of `dtnn_jax.data.load_petousis2017` (1,056, up to
  20 atoms) through the production path ``force_constants(structures)`` with its defaults
  (float32, symmetry, the default cache: the lead's ``force_constants([r.structure for r in
  load_petousis2017()])`` then loads it), with per-batch wall times (batched throughput:
  warm batches are the ones whose padded shape was compiled already); then per crystal the
  max residual force, the round-off of K (asymmetry, sum rule) and the optical eigenvalues
  of the symmetrised, translation-projected K (`optical_pseudo_inverse`): how many crystals
  have negative ones, and their values. ``--recompute`` ignores an existing cache entry
  (writes the cache to a temporary directory instead of the default one).
* ``--part negatives`` (after b): the negative modes of (b) again in float64 with every atom
  displaced, for the 3 most negative crystals and those within 0.01 eV/A^2 of zero: are
  they float32 round-off or an artefact of the symmetry reduction?

Every part records the machine, the 1/5/15-minute load average before and after and the
CPU time other processes used while it ran (``others_cpu_cores``): on a shared machine the
absolute times are slower than on a quiet one.

Usage::

    nohup .venv/bin/python benchmarks/force_constants.py --part dataset > fc_b.log 2>&1 &
    .venv/bin/python benchmarks/force_constants.py --part negatives
    .venv/bin/python benchmarks/force_constants.py --part speed
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dtnn_jax.training.report import cpu_model, load_average

RESULTS = Path(__file__).parent / "results" / "force_constants.json"
ENCODER = "nequix-oam-1-pft"
SIZES = (2, 5, 10, 20)
NEGATIVE_THRESHOLDS_EV_PER_A2 = (0.0, -1e-3, -1e-2, -1e-1)


# ----------------------------------------------------------------------------------------
# machine and load
# ----------------------------------------------------------------------------------------


def _busy_cpu_seconds() -> float | None:
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (fields + [0.0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Meter:
    """Wall time, load average before/after and other processes' CPU (cores) over a block."""

    def __enter__(self):
        self.record = {"load_before": load_average()}
        self._busy, self._own = _busy_cpu_seconds(), _own_cpu_seconds()
        self._start = time.perf_counter()
        return self.record

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._start
        self.record["wall_s"] = round(wall, 3)
        self.record["load_after"] = load_average()
        busy = _busy_cpu_seconds()
        if busy is not None and self._busy is not None and wall > 0:
            others = (busy - self._busy) - (_own_cpu_seconds() - self._own)
            self.record["others_cpu_cores"] = round(max(others, 0.0) / wall, 2)
        return False


def machine() -> dict:
    import jax

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------------------------------
# (a) speed against size
# ----------------------------------------------------------------------------------------


def speed_crystals(records, encoder) -> list:
    """Per size in SIZES, the shipped crystal of that size with the median edge count."""
    from dtnn_jax.physics.force_constants import crystal_graphs

    chosen = []
    for n in SIZES:
        candidates = [r for r in records if len(r.structure) == n]
        edges = [int(crystal_graphs([r.structure], encoder)[0].n_edge[0]) for r in candidates]
        order = np.argsort(edges, kind="stable")
        chosen.append(candidates[int(order[len(order) // 2])])
    return chosen


def run_speed(repeats: int) -> dict:
    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.physics.force_constants import (
        FORCE_CONSTANTS_BUDGET,
        compute_force_constants,
        crystal_graphs,
    )
    from dtnn_jax.physics.symmetry import identity_map, symmetry_map

    encoder = get_encoder(ENCODER)
    records = load_petousis2017()
    crystals = speed_crystals(records, encoder)
    rows, ks = [], {}
    with Meter() as meter:
        for dtype in ("float32", "float64"):
            for record in crystals:
                s = record.structure
                for symmetry in (False, True):
                    maps = [symmetry_map(s) if symmetry else identity_map(len(s))]
                    graphs = crystal_graphs([s], encoder, dtype, maps)
                    with Meter() as m:
                        timings: list = []
                        start = time.perf_counter()
                        results = compute_force_constants(
                            encoder, graphs, dtype, maps=maps, timings=timings
                        )
                        cold = time.perf_counter() - start
                        warm = []
                        for _ in range(repeats):
                            start = time.perf_counter()
                            compute_force_constants(encoder, graphs, dtype, maps=maps)
                            warm.append(time.perf_counter() - start)
                    ks[(dtype, record.material_id, symmetry)] = results[0][0]
                    n_tangents = 3 * maps[0].n_slots
                    row = {
                        "dtype": dtype,
                        "material_id": record.material_id,
                        "formula": record.formula,
                        "n_atoms": len(s),
                        "n_edges": int(graphs[0].n_edge[0]),
                        "padded_nodes": timings[0]["n_node"],
                        "padded_edges": timings[0]["n_edge"],
                        "symmetry": symmetry,
                        "n_displaced": maps[0].n_slots,
                        "cold_s": round(cold, 3),
                        "warm_s": round(min(warm), 3),
                        "warm_all_s": [round(w, 3) for w in warm],
                        "ms_per_tangent": round(1e3 * min(warm) / n_tangents, 1),
                        "load_before": m["load_before"],
                        "load_after": m["load_after"],
                        "others_cpu_cores": m.get("others_cpu_cores"),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    compile_s = {}
    for row in rows:  # the first call of a (dtype, crystal) compiled: symmetry False ran first
        if not row["symmetry"]:
            compile_s[f"{row['dtype']} {row['n_atoms']} atoms"] = round(
                row["cold_s"] - row["warm_s"], 1
            )
    agreement = []
    for record in crystals:
        full32 = ks[("float32", record.material_id, False)]
        full64 = ks[("float64", record.material_id, False)]
        agreement.append(
            {
                "material_id": record.material_id,
                "n_atoms": len(record.structure),
                "max_abs_k_ev_per_a2": float(np.abs(full64).max()),
                "sym_vs_full_float64": float(
                    np.abs(ks[("float64", record.material_id, True)] - full64).max()
                ),
                "sym_vs_full_float32": float(
                    np.abs(ks[("float32", record.material_id, True)] - full32).max()
                ),
                "float32_vs_float64": float(np.abs(full32 - full64).max()),
            }
        )
    return {
        "machine": machine(),
        "budget": FORCE_CONSTANTS_BUDGET.__dict__,
        "repeats": repeats,
        "rows": rows,
        "compile_s": compile_s,
        "agreement": agreement,
        **{k: meter[k] for k in meter},
    }


# ----------------------------------------------------------------------------------------
# (b) the shipped set
# ----------------------------------------------------------------------------------------


def run_dataset(recompute: bool, n_crystals: int | None = None) -> dict:
    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.physics.force_constants import FORCE_CONSTANTS_BUDGET, force_constants

    records = list(load_petousis2017())
    if n_crystals:  # a quick run on an evenly spaced subset, never in the default cache
        records = [records[i] for i in np.linspace(0, len(records) - 1, n_crystals).astype(int)]
        recompute = True
    structures = [r.structure for r in records]
    timings: list = []
    tmp = tempfile.TemporaryDirectory() if recompute else None
    with Meter() as meter:
        fcs = force_constants(
            structures, ENCODER, progress=True, timings=timings, cache_dir=tmp and tmp.name
        )
    if tmp is not None:
        tmp.cleanup()
    crystals = []
    for record, fc in zip(records, fcs, strict=True):
        inv = fc.optical_pseudo_inverse()
        lam = inv.eigenvalues_ev_per_a2
        crystals.append(
            {
                "material_id": record.material_id,
                "formula": record.formula,
                "n_atoms": fc.n_atoms,
                "n_displaced": fc.n_displaced,
                "max_force_ev_per_a": round(fc.max_force_ev_per_a, 5),
                "asymmetry_ev_per_a2": float(fc.asymmetry_ev_per_a2),
                "sum_rule_violation_ev_per_a2": float(fc.sum_rule_violation_ev_per_a2),
                "lowest_optical_ev_per_a2": float(lam[0]) if len(lam) else None,
                "negative_optical_ev_per_a2": [float(x) for x in lam[lam < 0]],
                "optical_below_floor": int(
                    np.count_nonzero((lam >= 0) & (lam < inv.floor_ev_per_a2))
                ),
            }
        )
    return {
        "machine": machine(),
        "budget": FORCE_CONSTANTS_BUDGET.__dict__,
        "from_cache": not timings,
        "provenance": fcs[0].provenance,
        "timings": timings,
        "crystals": crystals,
        "n_crystals": len(crystals),
        "n_atoms_total": int(sum(c["n_atoms"] for c in crystals)),
        **{k: meter[k] for k in meter},
    }


def dataset_summary(b: dict) -> dict:
    crystals = b["crystals"]
    forces = np.array([c["max_force_ev_per_a"] for c in crystals])
    negative = [c for c in crystals if c["negative_optical_ev_per_a2"]]
    counts = {}
    for t in NEGATIVE_THRESHOLDS_EV_PER_A2:
        counts[f"< {t:g}"] = sum(1 for c in negative if min(c["negative_optical_ev_per_a2"]) < t)
    out = {
        "max_force_ev_per_a": {
            "median": float(np.median(forces)),
            "p90": float(np.percentile(forces, 90)),
            "max": float(forces.max()),
            "n_above_0.01": int((forces > 0.01).sum()),
            "n_above_0.1": int((forces > 0.1).sum()),
        },
        "asymmetry_max_ev_per_a2": max(c["asymmetry_ev_per_a2"] for c in crystals),
        "sum_rule_violation_max_ev_per_a2": max(
            c["sum_rule_violation_ev_per_a2"] for c in crystals
        ),
        "n_with_negative_optical": len(negative),
        "n_negative_eigenvalues": sum(len(c["negative_optical_ev_per_a2"]) for c in negative),
        "n_with_lowest_optical_below": counts,
        "n_with_optical_below_floor": sum(1 for c in crystals if c["optical_below_floor"]),
        "median_max_force_with_negative": float(
            np.median([c["max_force_ev_per_a"] for c in negative]) if negative else np.nan
        ),
        "median_max_force_without_negative": float(
            np.median([c["max_force_ev_per_a"] for c in crystals if c not in negative])
        ),
        "n_displaced_total": int(sum(c["n_displaced"] for c in crystals)),
    }
    if b["timings"]:
        warm = [t for t in b["timings"] if not t["compiled"]]
        out["throughput"] = {
            "batches": len(b["timings"]),
            "compiled_batches": len(b["timings"]) - len(warm),
            "total_s": round(sum(t["seconds"] for t in b["timings"]), 1),
            "first_of_shape_s": round(sum(t["seconds"] for t in b["timings"] if t["compiled"]), 1),
            "warm_crystals": int(sum(len(t["indices"]) for t in warm)),
            "warm_s": round(sum(t["seconds"] for t in warm), 1),
            "warm_s_per_crystal": round(
                sum(t["seconds"] for t in warm) / max(sum(len(t["indices"]) for t in warm), 1), 3
            ),
            "shapes": sorted({(t["n_node"], t["n_edge"]) for t in b["timings"]}),
        }
    return out


def run_negatives(dataset: dict, n_largest: int = 3) -> dict:
    """The negative modes of (b) again in float64 with every atom displaced.

    For the crystals whose most negative optical eigenvalue lies within 0.01 eV/A^2 of 0
    (could they be float32 round-off?) and the ``n_largest`` most negative ones.
    """
    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.physics.force_constants import force_constants

    by_id = {r.material_id: r for r in load_petousis2017()}
    negative = sorted(
        (c for c in dataset["crystals"] if c["negative_optical_ev_per_a2"]),
        key=lambda c: min(c["negative_optical_ev_per_a2"]),
    )
    chosen = negative[:n_largest] + [
        c for c in negative if min(c["negative_optical_ev_per_a2"]) > -0.01
    ]
    rows = []
    with Meter() as meter, tempfile.TemporaryDirectory() as tmp:
        structures = [by_id[c["material_id"]].structure for c in chosen]
        fcs = force_constants(structures, ENCODER, dtype="float64", symmetry=False, cache_dir=tmp)
        for c, fc in zip(chosen, fcs, strict=True):
            lam = fc.optical_pseudo_inverse().eigenvalues_ev_per_a2
            rows.append(
                {
                    "material_id": c["material_id"],
                    "formula": c["formula"],
                    "float32_sym": c["negative_optical_ev_per_a2"],
                    "float64_full": [float(x) for x in lam[lam < 0]],
                    "float64_lowest": float(lam[0]),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, **{k: meter[k] for k in meter}}


# ----------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------


def _load_line(r: dict) -> str:
    others = r.get("others_cpu_cores")
    extra = f", other processes used {others} cores meanwhile" if others is not None else ""
    return f"load average (1/5/15 min) before {r['load_before']}, after {r['load_after']}{extra}"


def markdown(results: dict) -> str:
    lines = ["# Force constants (Nequix-OAM-1-PFT)", ""]
    lines += ["Written by `benchmarks/force_constants.py` (see its docstring for the method).", ""]
    a = results.get("speed")
    if a:
        mach = a["machine"]
        lines += [
            "## (a) Seconds per crystal against size",
            "",
            f"{mach['date_utc']}, {mach['cpu']}, {mach['cores']} cores, jax {mach['jax']}; "
            f"{_load_line(a)}. Each crystal alone in its padded bucket; warm = fastest of "
            f"{a['repeats']} calls after the first (compiling) one.",
            "",
            "| dtype | crystal | atoms | edges (padded) | displaced | warm s | ms / tangent "
            "| load before |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in a["rows"]:
            lines.append(
                f"| {r['dtype']} | {r['material_id']} {r['formula']} | {r['n_atoms']} | "
                f"{r['n_edges']} ({r['padded_edges']}) | {r['n_displaced']}"
                f"{' (sym)' if r['symmetry'] else ''} | {r['warm_s']:.2f} | "
                f"{r['ms_per_tangent']:.0f} | {r['load_before'][0]} |"
            )
        lines += ["", "Compilation (first call minus warm, s): "]
        lines[-1] += ", ".join(f"{k}: {v}" for k, v in a["compile_s"].items()) + "."
        lines += [
            "",
            "| crystal | atoms | max abs K | sym vs full (f64) | sym vs full (f32) | f32 vs f64 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for g in a["agreement"]:
            lines.append(
                f"| {g['material_id']} | {g['n_atoms']} | {g['max_abs_k_ev_per_a2']:.2f} | "
                f"{g['sym_vs_full_float64']:.1e} | {g['sym_vs_full_float32']:.1e} | "
                f"{g['float32_vs_float64']:.1e} |"
            )
        lines.append("")
    b = results.get("dataset")
    if b:
        s = b["summary"]
        mach = b["machine"]
        lines += [
            f"## (b) {b['n_crystals']} shipped crystals (float32, symmetry-reduced, defaults)",
            "",
            f"{mach['date_utc']}, {mach['cpu']}, {mach['cores']} cores; {_load_line(b)}; "
            f"wall {b['wall_s'] / 60:.1f} min"
            + (" (loaded from the cache)" if b["from_cache"] else "")
            + f". {b['n_crystals']} crystals, {b['n_atoms_total']} atoms, "
            f"{s['n_displaced_total']} displaced.",
            "",
        ]
        t = s.get("throughput")
        if t:
            lines += [
                f"* Batched throughput: {t['batches']} batches, {t['total_s']:.0f} s in all; "
                f"the {t['compiled_batches']} first batches of their shapes (compilation "
                f"included) took {t['first_of_shape_s']:.0f} s; the other "
                f"{t['warm_crystals']} crystals {t['warm_s']:.0f} s = "
                f"{t['warm_s_per_crystal']:.2f} s per crystal. Shapes (nodes, edges): "
                f"{t['shapes']}.",
            ]
        f = s["max_force_ev_per_a"]
        lines += [
            f"* Residual forces at the DFT geometry (max per crystal, eV/A): median "
            f"{f['median']:.3f}, 90th percentile {f['p90']:.3f}, max {f['max']:.2f}; "
            f"{f['n_above_0.01']} crystals above 0.01, {f['n_above_0.1']} above 0.1.",
            f"* Round-off of K (float32): max |K - K^T| {s['asymmetry_max_ev_per_a2']:.1e}, "
            f"max acoustic-sum-rule violation {s['sum_rule_violation_max_ev_per_a2']:.1e} "
            "eV/A^2.",
            f"* Negative optical eigenvalues of the symmetrised, projected K: "
            f"{s['n_with_negative_optical']} crystals ({s['n_negative_eigenvalues']} "
            "eigenvalues); crystals whose lowest is below 0 / -1e-3 / -1e-2 / -0.1 eV/A^2: "
            + " / ".join(str(v) for v in s["n_with_lowest_optical_below"].values())
            + f". Median max force of those crystals {s['median_max_force_with_negative']:.3f}"
            f" eV/A, of the others {s['median_max_force_without_negative']:.3f}.",
            f"* Crystals with a positive optical eigenvalue below the 0.01 eV/A^2 floor: "
            f"{s['n_with_optical_below_floor']}.",
            "",
        ]
        negative = sorted(
            (c for c in b["crystals"] if c["negative_optical_ev_per_a2"]),
            key=lambda c: min(c["negative_optical_ev_per_a2"]),
        )
        n = results.get("negatives")
        if n:
            lines += [
                "Robustness (float64, every atom displaced, no symmetry) of the 3 most "
                "negative and of those within 0.01 eV/A^2 of zero; " + _load_line(n) + ":",
                "",
                "| crystal | float32 + symmetry | float64, all displaced |",
                "|---|---|---|",
            ]
            for r in n["rows"]:
                f32 = ", ".join(f"{v:.3g}" for v in r["float32_sym"])
                f64 = ", ".join(f"{v:.3g}" for v in r["float64_full"]) or (
                    f"none (lowest {r['float64_lowest']:.3g})"
                )
                lines.append(f"| {r['material_id']} {r['formula']} | {f32} | {f64} |")
            lines.append("")
        if negative:
            lines += [
                "Crystals with negative optical eigenvalues (all of them; eV/A^2):",
                "",
                "| crystal | atoms | negative eigenvalues | max force eV/A |",
                "|---|---:|---|---:|",
            ]
            for c in negative:
                values = ", ".join(f"{v:.3g}" for v in c["negative_optical_ev_per_a2"])
                lines.append(
                    f"| {c['material_id']} {c['formula']} | {c['n_atoms']} | {values} | "
                    f"{c['max_force_ev_per_a']:.3f} |"
                )
            lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--part", choices=["speed", "dataset", "negatives", "report"], required=True
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recompute", action="store_true")
    parser.add_argument("--crystals", type=int, default=None, help="(b) on a subset (quick)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.part == "speed":
        results["speed"] = run_speed(args.repeats)
    elif args.part == "dataset":
        b = run_dataset(args.recompute, args.crystals)
        previous = results.get("dataset", {})
        if b["from_cache"] and previous.get("timings"):  # keep the timed run's numbers
            for key in ("timings", "wall_s", "load_before", "load_after", "others_cpu_cores"):
                if key in previous:
                    b[key] = previous[key]
            b["machine"] = previous["machine"]
        b["summary"] = dataset_summary(b)
        results["dataset"] = b
    elif args.part == "negatives":
        results["negatives"] = run_negatives(results["dataset"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
