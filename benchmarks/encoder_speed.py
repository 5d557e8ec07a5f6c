"""Speed of SevenNet-0 featurization in JAX against the torch original, on the shipped set.

Measures, on all 1,056 crystals of Petousis et al. (2017) (7,952 atoms), pymatgen
``Structure`` -> per-atom features of interaction layer ``--layer``:

* graph building (``Encoder.graph``: element check + periodic neighbour list), timed alone;
* the encoder for each candidate `BatchBudget`: the first (cold) pass, which includes every
  jit compilation, and the best of ``--repeats`` warm passes; the number of compiled shapes
  (``jax.jit`` cache size, cross-checked with the distinct padded shapes) and the total
  compile time (JAX's own compile-duration events: tracing, lowering, XLA compilation);
* the torch original (sevenn 0.13.0, float32, batches of 32 crystals via torch_geometric,
  force module removed, ``torch.no_grad``) in a subprocess of ``--torch-python`` (torch is not
  a dependency of this package), with ``torch.set_num_threads(--threads)``; its graph
  building (sevenn's ``unlabeled_atoms_to_graph``) is timed separately as well.

JAX runs on all local CPU cores, torch on ``--threads`` (default 2 = this machine's core count);
both are single-process. The machine's load average is recorded before and after, because the
benchmark machine may be shared. The best warm pass is reported (the least disturbed one).

Usage::

    python benchmarks/encoder_speed.py --torch-python /work/torchvenv/bin/python \
        --out benchmarks/results/encoder_speed.json

writes the JSON and a markdown table next to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TORCH_BATCH_SIZE = 32
DEFAULT_PTH = Path(
    "/work/dl/sevenn_whl/sevenn/pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth"
)


# ----------------------------------------------------------------------------------------
# machine description
# ----------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (what ``uptime`` prints)."""
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------------------------
# torch original (runs in the torch interpreter; imports nothing from dtnn_jax)
# ----------------------------------------------------------------------------------------


def torch_worker(structures_npz: Path, out_json: Path, pth: Path, threads: int, repeats: int):
    """Times sevenn's graph building and batched energy inference; writes a JSON summary."""
    import ase
    import sevenn
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from sevenn.util import model_from_checkpoint
    from torch_geometric.data import Batch

    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)
    with np.load(structures_npz) as f:
        numbers, positions, cells, n_atoms = (
            f[k] for k in ("numbers", "positions", "cells", "n_atoms")
        )
    bounds = np.concatenate([[0], np.cumsum(n_atoms)])
    atoms = [
        ase.Atoms(
            numbers=numbers[bounds[i] : bounds[i + 1]],
            positions=positions[bounds[i] : bounds[i + 1]],
            cell=cells[i],
            pbc=True,
        )
        for i in range(len(n_atoms))
    ]
    model, config = model_from_checkpoint(str(pth))
    model.delete_module_by_key("force_output")
    model.eval()
    model.set_is_batch_data(True)
    cutoff = float(config["cutoff"])

    graph_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        graphs = [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, cutoff)) for a in atoms]
        graph_times.append(time.perf_counter() - start)

    def encoder_pass():
        energies = []
        with torch.no_grad():
            for i in range(0, len(graphs), TORCH_BATCH_SIZE):
                batch = Batch.from_data_list(graphs[i : i + TORCH_BATCH_SIZE])
                out = model(batch)
                energies.append(out["inferred_total_energy"].reshape(-1).numpy().copy())
        return np.concatenate(energies)

    pass_times, energies = [], None
    for _ in range(repeats + 1):  # the first pass is the warm-up
        start = time.perf_counter()
        energies = encoder_pass()
        pass_times.append(time.perf_counter() - start)
    out_json.write_text(
        json.dumps(
            {
                "torch_version": torch.__version__,
                "sevenn_version": sevenn.__version__,
                "threads": threads,
                "batch_size": TORCH_BATCH_SIZE,
                "graph_s": min(graph_times),
                "first_pass_s": pass_times[0],
                "warm_pass_s": min(pass_times[1:]),
                "energies_ev": [float(e) for e in energies],
            }
        )
    )


def run_torch(structures, python: str, pth: Path, threads: int, repeats: int) -> dict:
    """Runs `torch_worker` in ``python``; returns its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        npz, out = Path(tmp) / "structures.npz", Path(tmp) / "torch.json"
        np.savez(
            npz,
            numbers=np.concatenate([s.atomic_numbers for s in structures]).astype(np.int64),
            positions=np.concatenate([s.cart_coords for s in structures]),
            cells=np.stack([s.lattice.matrix for s in structures]),
            n_atoms=np.array([len(s) for s in structures]),
        )
        cmd = [python, __file__, "--torch-worker", str(npz), str(out), "--pth", str(pth)]
        cmd += ["--threads", str(threads), "--torch-repeats", str(repeats)]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def find_torch_python(requested: str | None) -> str | None:
    """The interpreter for the torch part: ``requested``, or this one if it has torch."""
    if requested:
        return requested
    try:
        import sevenn  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return None
    return sys.executable


# ----------------------------------------------------------------------------------------
# JAX
# ----------------------------------------------------------------------------------------


class CompileClock:
    """Sums JAX's compile-duration events (trace, lower to MLIR, XLA backend compile)."""

    def __init__(self):
        import jax

        self.seconds = 0.0
        self.backend_compiles = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **_):
        if event.startswith("/jax/core/compile/"):
            self.seconds += duration
            self.backend_compiles += event.endswith("backend_compile_duration")

    def reset(self):
        self.seconds, self.backend_compiles = 0.0, 0


def get_benchmark_encoder():
    """The encoder under test (the default, SevenNet-0)."""
    from dtnn_jax.encoder import get_encoder

    return get_encoder()


def jax_budget_run(graphs, layer: int, budget, repeats: int, clock: CompileClock) -> dict:
    """Cold and warm encoder passes with a fresh jit cache for one budget."""
    from dtnn_jax import parallel
    from dtnn_jax.encoder import features
    from dtnn_jax.encoder.features import layer_features
    from dtnn_jax.graph import padded_batches

    encoder = get_benchmark_encoder()
    features._sharded_forward.cache_clear()  # a fresh jit cache for this budget
    n_dev = parallel.n_data_shards()
    shapes = set()
    batches = padded_nodes = padded_edges = 0
    for indices, stacked in padded_batches(graphs, budget, shards=n_dev):
        batches += sum(1 for idx in indices if idx)
        n_nodes, n_edges = stacked.nodes["species"].shape[1], stacked.senders.shape[1]
        shapes.add((n_nodes, n_edges, stacked.n_node.shape[1]))
        padded_nodes += n_dev * n_nodes
        padded_edges += n_dev * n_edges
    real_nodes = sum(int(g.n_node[0]) for g in graphs)
    real_edges = sum(int(g.n_edge[0]) for g in graphs)

    clock.reset()
    start = time.perf_counter()
    _, energies = layer_features(encoder, graphs, layer, budget=budget)
    first = time.perf_counter() - start
    compile_s, backend_compiles = clock.seconds, clock.backend_compiles
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer_features(encoder, graphs, layer, budget=budget)
        warm.append(time.perf_counter() - start)
    cache_size = getattr(features._sharded_forward(encoder), "_cache_size", lambda: None)()
    return {
        "budget": {k: getattr(budget, k) for k in budget.__dataclass_fields__},
        "batches": batches,
        "distinct_padded_shapes": sorted([list(s) for s in shapes]),
        "jit_cache_size": cache_size,
        "backend_compiles": backend_compiles,
        "compile_s": compile_s,
        "first_pass_s": first,
        "warm_pass_s": min(warm),
        "padding_nodes": padded_nodes / real_nodes,
        "padding_edges": padded_edges / real_edges,
        "_energies": energies,
        "_encoder": encoder,
    }


def candidate_budgets():
    """(name, BatchBudget): the default and the alternatives of the trade-off study."""
    from dtnn_jax.graph import BatchBudget

    return [
        ("default", get_benchmark_encoder().budget),
        ("previous default", BatchBudget(max_graphs=32, max_nodes=1024, max_edges=65536)),
        ("16 crystals, growth 1.5", BatchBudget(max_graphs=16, growth=1.5, min_edges=1024)),
        ("edges 4096", BatchBudget(max_graphs=64, max_nodes=255, max_edges=4096)),
        ("edges 16384", BatchBudget(128, 639, 16384, min_nodes=80)),
        ("edges 16384, nodes 1023", BatchBudget(128, 1023, 16384)),
        ("edges 32768", BatchBudget(256, 1279, 32768, min_nodes=80)),
    ]


def run(args) -> dict:
    import jax

    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.encoder.features import layer_features
    from dtnn_jax.inputs import crystal_graph

    load_before = load_average()
    structures = [r.structure for r in load_petousis2017()]
    n_atoms = sum(len(s) for s in structures)
    encoder = get_benchmark_encoder()
    DEFAULT_BUDGET = encoder.budget
    graph_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        graphs = [crystal_graph(s, encoder) for s in structures]
        graph_times.append(time.perf_counter() - start)
    graph_s = min(graph_times)

    clock = CompileClock()
    budgets = candidate_budgets() if args.sweep else [("default", DEFAULT_BUDGET)]
    results = []
    for name, budget in budgets:
        if name != "default" and budget == DEFAULT_BUDGET:
            continue
        print(f"budget {name}: {budget}", file=sys.stderr, flush=True)
        res = jax_budget_run(graphs, args.layer, budget, args.repeats, clock)
        res["name"] = name
        results.append(res)
        print(
            f"  warm {res['warm_pass_s']:.2f} s, first {res['first_pass_s']:.2f} s, "
            f"{res['jit_cache_size']} compiled, load {load_average()}",
            file=sys.stderr,
            flush=True,
        )
    jax_energies = results[0].pop("_energies")
    default_encoder = results[0].pop("_encoder")
    for res in results[1:]:
        res.pop("_energies")
        res.pop("_encoder")

    torch_python = None if args.no_torch else find_torch_python(args.torch_python)
    torch_res, torch_note = None, None
    if torch_python is None:
        torch_note = (
            "skipped (--no-torch)"
            if args.no_torch
            else "skipped: torch/sevenn not importable here and --torch-python not given"
        )
        print(torch_note, file=sys.stderr)
    else:
        print(f"torch via {torch_python}", file=sys.stderr, flush=True)
        torch_res = run_torch(structures, torch_python, args.pth, args.threads, args.torch_repeats)
        e_torch = np.array(torch_res.pop("energies_ev"))
        per_atom = np.abs(e_torch - jax_energies) / np.array([len(s) for s in structures])
        torch_res["max_energy_diff_ev_per_atom_vs_jax"] = float(per_atom.max())
        # The load may change while torch runs: time JAX again right after it and compare
        # torch with the slower of the two JAX measurements.
        after = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            layer_features(default_encoder, graphs, args.layer, budget=DEFAULT_BUDGET)
            after.append(time.perf_counter() - start)
        results[0]["warm_pass_after_torch_s"] = min(after)

    default = results[0]
    jax_warm_s = max(default["warm_pass_s"], default.get("warm_pass_after_torch_s", 0.0))
    summary = {
        "jax_warm_pass_s_conservative": jax_warm_s,
        "jax_structures_per_s": len(structures) / (graph_s + jax_warm_s),
        "jax_atoms_per_s": n_atoms / (graph_s + jax_warm_s),
        "jax_encoder_only_structures_per_s": len(structures) / jax_warm_s,
    }
    if torch_res:
        t_total = torch_res["graph_s"] + torch_res["warm_pass_s"]
        summary |= {
            "torch_structures_per_s": len(structures) / t_total,
            "torch_atoms_per_s": n_atoms / t_total,
            "torch_model_only_structures_per_s": len(structures) / torch_res["warm_pass_s"],
            "speedup_end_to_end": t_total / (graph_s + jax_warm_s),
            "speedup_encoder_only": torch_res["warm_pass_s"] / jax_warm_s,
        }
    return {
        "benchmark": "encoder_speed",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "jax_version": jax.__version__,
            "jax_devices": [str(d) for d in jax.local_devices()],
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "data": {"crystals": len(structures), "atoms": n_atoms, "set": "petousis2017 (shipped)"},
        "layer": args.layer,
        "repeats": args.repeats,
        "graph_s": graph_s,
        "jax": results,
        "torch": torch_res,
        "torch_note": torch_note,
        "summary": summary,
    }


def markdown(r: dict) -> str:
    m, d, s = r["machine"], r["data"], r["summary"]
    lines = [
        "# SevenNet-0 featurization speed (JAX vs torch sevenn)",
        "",
        f"Date (UTC): {r['date_utc']}. CPU: {m['cpu_model']}, {m['cpu_count']} cores, "
        f"{m['platform']}, Python {m['python']}, jax {m['jax_version']}"
        + (
            f", torch {r['torch']['torch_version']} + sevenn {r['torch']['sevenn_version']}"
            if r["torch"]
            else ""
        )
        + ".",
        f"Load average (1/5/15 min) before: {m['load_average_before']}, after: "
        f"{m['load_average_after']} (the machine is shared; numbers are best of "
        f"{r['repeats']} warm passes).",
        f"Data: {d['crystals']} crystals ({d['atoms']} atoms), {d['set']}; layer-{r['layer']} "
        "features from pymatgen Structures.",
        "",
        "| pipeline | graphs s | encoder s (warm) | structures/s | atoms/s |",
        "|---|---:|---:|---:|---:|",
        f"| JAX (default budget, {len(m['jax_devices'])} CPU device) | {r['graph_s']:.2f} | "
        f"{s['jax_warm_pass_s_conservative']:.2f} | {s['jax_structures_per_s']:.0f} | "
        f"{s['jax_atoms_per_s']:.0f} |",
    ]
    if r["torch"]:
        t = r["torch"]
        lines.append(
            f"| torch sevenn ({t['threads']} threads, batches of {t['batch_size']}, no force) | "
            f"{t['graph_s']:.2f} | {t['warm_pass_s']:.2f} | {s['torch_structures_per_s']:.0f} | "
            f"{s['torch_atoms_per_s']:.0f} |"
        )
        lines += [
            "",
            f"Speed-up JAX/torch: {s['speedup_end_to_end']:.2f}x end to end, "
            f"{s['speedup_encoder_only']:.2f}x encoder only. torch first pass "
            f"{t['first_pass_s']:.2f} s. Max |E_jax - E_torch| = "
            f"{t['max_energy_diff_ev_per_atom_vs_jax']:.2e} eV/atom. JAX warm pass before "
            f"torch {r['jax'][0]['warm_pass_s']:.2f} s, after torch "
            f"{r['jax'][0]['warm_pass_after_torch_s']:.2f} s; the table and the speed-ups use "
            "the slower one.",
        ]
    else:
        lines += ["", f"torch: {r['torch_note']}"]
    lines += [
        "",
        "Batch budgets (JAX): compilations vs warm throughput.",
        "",
        "| budget | batches | compiled shapes | compile s | first pass s | warm pass s "
        "| structures/s (warm, encoder) | padded/real nodes | padded/real edges |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for j in r["jax"]:
        b = j["budget"]
        desc = (
            f"{j['name']}: graphs {b['max_graphs']}, nodes {b['max_nodes']}, edges "
            f"{b['max_edges']}, growth {b['growth']}, min {b['min_nodes']}/{b['min_edges']}"
        )
        lines.append(
            f"| {desc} | {j['batches']} | {j['jit_cache_size']} | {j['compile_s']:.1f} | "
            f"{j['first_pass_s']:.1f} | {j['warm_pass_s']:.2f} | "
            f"{d['crystals'] / j['warm_pass_s']:.0f} | {j['padding_nodes']:.2f} | "
            f"{j['padding_edges']:.2f} |"
        )
    lines += [
        "",
        "Notes: JAX runs on one CPU device with XLA's intra-op threads on all cores; torch is "
        f"limited to {r['torch']['threads'] if r['torch'] else '-'} threads "
        "(`torch.set_num_threads`), the machine's core count, for a like-for-like comparison. "
        "Both compute all 5 interaction layers and the energy (torch: force module removed, "
        "`torch.no_grad`, float32). structures/s and atoms/s include graph building. "
        "'compiled shapes' is the jit cache size after the first pass (= distinct padded "
        "shapes); 'compile s' sums JAX's tracing, lowering and XLA compile events of the "
        "first pass (no persistent compilation cache). Timings on a shared machine vary by "
        "tens of percent between runs; see the load averages.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--torch-python", default=None, help="interpreter with torch + sevenn")
    parser.add_argument("--pth", type=Path, default=DEFAULT_PTH, help="SevenNet-0 checkpoint")
    parser.add_argument("--torch-repeats", type=int, default=1, help="warm torch passes")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch original")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="default only")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (and .md beside)")
    parser.add_argument("--torch-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker(*args.torch_worker, args.pth, args.threads, args.torch_repeats)
        return
    result = run(args)
    text = markdown(result)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
