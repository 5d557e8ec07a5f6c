"""Speed of periodic graph construction and bucketed padding on the shipped crystals.

Times the production paths: the input pass's graph building (``dtnn_jax.inputs.crystal_graph``:
pymatgen ``Structure`` -> element check -> ``jraph.GraphsTuple`` at the encoder's cutoff) over
all 1,056 crystals of Petousis et al. (2017), and the batcher the encoder runs on
(``padded_batches`` with the encoder's ``BatchBudget``, one shard per local device:
concatenation, padding into bucket shapes and stacking).
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

from dtnn_jax import parallel
from dtnn_jax.data import load_petousis2017
from dtnn_jax.encoder import get_encoder
from dtnn_jax.graph import padded_batches
from dtnn_jax.inputs import crystal_graph


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


def run(encoder_name: str, repeats: int) -> dict:
    """Measures graph building and padding; returns the results as a JSON-able dict."""
    structures = [record.structure for record in load_petousis2017()]
    n_atoms = sum(len(s) for s in structures)
    encoder = get_encoder(encoder_name)
    cutoff_angstrom = encoder.cutoff_angstrom

    build_s, graphs = best_time(lambda: [crystal_graph(s, encoder) for s in structures], repeats)
    n_edges = np.array([int(g.n_edge[0]) for g in graphs])  # [n_crystals]

    budget, shards = encoder.budget, parallel.n_data_shards()
    pad_s, rounds = best_time(lambda: list(padded_batches(graphs, budget, shards=shards)), repeats)
    shapes = Counter(
        (int(b.nodes["species"].shape[1]), int(b.senders.shape[1]))
        for indices, b in rounds
        for idx in indices
        if idx
    )
    padded_nodes = sum(n * count for (n, _), count in shapes.items())
    padded_edges = sum(e * count for (_, e), count in shapes.items())
    batches = [b for indices, b in rounds for idx in indices if idx]

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
        "encoder": encoder.name,
        "cutoff_angstrom": cutoff_angstrom,
        "shards": shards,
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
        f"| padded_batches (the encoder's BatchBudget) | {pad['seconds']:.3f} | "
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
    parser.add_argument("--encoder", default="sevennet-0", help="whose cutoff and budget")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "graph_speed.json"
    )
    args = parser.parse_args()
    result = run(args.encoder, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
