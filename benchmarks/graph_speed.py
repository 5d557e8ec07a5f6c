"""Speed of periodic graph construction and bucketed padding on the shipped crystals.

Times ``graph_from_structure`` (pymatgen ``Structure`` -> ``jraph.GraphsTuple``) over all
1,056 crystals of Petousis et al. (2017), and ``padded_batches`` (concatenation and
padding into bucket shapes) over the resulting graphs, with the default ``BatchBudget``.
Reports throughput, the edge count, the distinct padded shapes (= jit compilations) and
the padding waste. Each stage is timed ``--repeats`` times; the best run is reported
(the machine is shared, so the best is the least disturbed).

Usage:

    python benchmarks/graph_speed.py --out benchmarks/results/graph_speed.json

writes the JSON and a markdown table next to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dtnn_jax.data import load_petousis2017
from dtnn_jax.graph import BatchBudget, graph_from_structure, padded_batches


def cpu_model() -> str:
    """The CPU's model name (lscpu), or platform.processor() where lscpu is missing."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def best_time(function, repeats: int) -> tuple[float, object]:
    """(fastest wall time in seconds, result of the last call)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def run(cutoff_angstrom: float, repeats: int) -> dict:
    """Measures graph building and padding; returns the results as a JSON-able dict."""
    structures = [record.structure for record in load_petousis2017()]
    n_atoms = sum(len(s) for s in structures)

    build_s, graphs = best_time(
        lambda: [graph_from_structure(s, cutoff_angstrom) for s in structures], repeats
    )
    n_edges = np.array([int(g.n_edge[0]) for g in graphs])  # [n_crystals]

    budget = BatchBudget()
    pad_s, batches = best_time(lambda: list(padded_batches(graphs, budget)), repeats)
    shapes = Counter(
        (int(b.nodes["species"].shape[0]), int(b.senders.shape[0])) for _, b in batches
    )
    padded_nodes = sum(n * count for (n, _), count in shapes.items())
    padded_edges = sum(e * count for (_, e), count in shapes.items())

    return {
        "benchmark": "graph_speed",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "dataset": "petousis2017 (shipped)",
        "cutoff_angstrom": cutoff_angstrom,
        "repeats": repeats,
        "n_crystals": len(structures),
        "n_atoms": n_atoms,
        "n_edges_total": int(n_edges.sum()),
        "edges_per_atom_mean": float(n_edges.sum() / n_atoms),
        "edges_per_crystal_max": int(n_edges.max()),
        "build_seconds": build_s,
        "build_crystals_per_second": len(structures) / build_s,
        "build_atoms_per_second": n_atoms / build_s,
        "build_edges_per_second": float(n_edges.sum()) / build_s,
        "padding": {
            "budget": {
                "max_graphs": budget.max_graphs,
                "max_nodes": budget.max_nodes,
                "max_edges": budget.max_edges,
                "growth": budget.growth,
                "min_nodes": budget.min_nodes,
                "min_edges": budget.min_edges,
            },
            "seconds": pad_s,
            "crystals_per_second": len(structures) / pad_s,
            "n_batches": len(batches),
            "n_shapes": len(shapes),
            "shapes": [
                {"n_node": n, "n_edge": e, "n_batches": count}
                for (n, e), count in sorted(shapes.items())
            ],
            "node_padding_factor": padded_nodes / n_atoms,
            "edge_padding_factor": padded_edges / float(n_edges.sum()),
        },
    }


def markdown(result: dict) -> str:
    """A short markdown report of ``run``'s result."""
    pad = result["padding"]
    machine = result["machine"]
    lines = [
        "# Graph construction speed",
        "",
        f"Date (UTC): {result['date_utc']}. Machine: {machine['cpu_model']}, "
        f"{machine['cpu_count']} CPUs, {machine['platform']}, Python {machine['python']}.",
        f"Data: {result['n_crystals']} crystals ({result['n_atoms']} atoms), "
        f"{result['dataset']}; cutoff {result['cutoff_angstrom']} A; best of "
        f"{result['repeats']} runs.",
        "",
        "| stage | seconds | crystals/s | atoms/s |",
        "|---|---:|---:|---:|",
        f"| Structure -> GraphsTuple | {result['build_seconds']:.3f} | "
        f"{result['build_crystals_per_second']:.0f} | {result['build_atoms_per_second']:.0f} |",
        f"| padded_batches (default BatchBudget) | {pad['seconds']:.3f} | "
        f"{pad['crystals_per_second']:.0f} | {result['n_atoms'] / pad['seconds']:.0f} |",
        "",
        f"Edges: {result['n_edges_total']} in total, {result['edges_per_atom_mean']:.1f} per "
        f"atom on average, at most {result['edges_per_crystal_max']} in one crystal.",
        "",
        f"Padding: {pad['n_batches']} batches in {pad['n_shapes']} distinct shapes; padded/real "
        f"= {pad['node_padding_factor']:.2f} (nodes), {pad['edge_padding_factor']:.2f} (edges).",
        "",
        "| n_node | n_edge | batches |",
        "|---:|---:|---:|",
        *[f"| {s['n_node']} | {s['n_edge']} | {s['n_batches']} |" for s in pad["shapes"]],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cutoff-angstrom", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "graph_speed.json"
    )
    args = parser.parse_args()
    result = run(args.cutoff_angstrom, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
