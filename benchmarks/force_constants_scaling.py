"""Force constants against atoms, large cells, compiled shapes, and predict throughput.

Self-contained: ``python benchmarks/force_constants_scaling.py [--part P ...]`` writes
``benchmarks/results/force_constants_scaling.json`` (each part its own key) and the
markdown next to it. Every part records the 1/5/15-minute load average before and after:
on a shared machine the times are slower than on a quiet one (load < 0.5).

Parts:

* ``shapes``: the compiled programs of the force-constant pass over the whole shipped
  screening pool (the padded (nodes, edges, graphs, max_atoms) of every batch of
  `dtnn_jax.physics.force_constant_pass.batches`, symmetry on): how many distinct ones a
  run over the pool compiles. No Hessian is computed (only the input pass and spglib).
* ``atoms``: seconds of K per crystal against its atoms (shipped-pool crystals of about 4,
  8, 16, 24, 32, 40, 60 and 80 atoms, the one with the median edge count of its size;
  float32, symmetry on, each alone in its padded bucket, no cache): the first call
  (``cold``, includes compilation unless the persistent compilation cache has the shape)
  and the fastest of ``--repeats`` further calls (``warm``).
* ``large``: Si supercells of 64, 216 and 512 atoms through the production
  ``force_constants`` (default model's potential, float32, symmetry, fresh cache), each in
  its own process under ``/usr/bin/time -v``: wall time, peak RSS, the pass's memory
  estimate, and whether it completed or was refused (`HessianMemoryError`, rc 2).
* ``predict``: default ``predict(target="all")`` and ``target="electronic"`` on 100
  random shipped-pool crystals (seed 0) with an empty K/feature cache and the persistent
  compilation cache as it is (run twice: the second run is the warm-compilation number;
  ``--repeats`` runs in all, the median reported): crystals per second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "force_constants_scaling.json"
ENCODER = "nequix-oam-1-pft"
SIZES = (4, 8, 16, 24, 32, 40, 60, 80)
SUPERCELLS = (2, 3, 4)  # conventional 8-atom Si cell repeated n x n x n


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def si_supercell(n: int):
    from pymatgen.core import Lattice, Structure

    frac = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    frac += [[0.25, 0.25, 0.25], [0.25, 0.75, 0.75], [0.75, 0.25, 0.75], [0.75, 0.75, 0.25]]
    s = Structure(Lattice.cubic(5.431), ["Si"] * 8, frac)
    s.make_supercell([n, n, n])
    return s


def pool_inputs(limit: int | None = None, seed: int | None = None):
    """The shipped pool's crystals through the input pass at the K potential's cutoff."""
    from dtnn_jax.data import load_screening_pool
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.inputs import prepare_inputs

    pool = load_screening_pool()
    if seed is not None:
        idx = np.random.default_rng(seed).choice(len(pool), size=limit, replace=False)
        pool = [pool[i] for i in sorted(idx)]
    elif limit:
        pool = pool[:limit]
    return pool, [c for c in prepare_inputs(pool, get_encoder(ENCODER)) if c.ok]


def part_shapes() -> dict:
    from dtnn_jax.physics.force_constant_pass import batches, padded_shape
    from dtnn_jax.physics.hessian import FORCE_CONSTANTS_BUDGET
    from dtnn_jax.physics.symmetry import symmetry_map

    start = time.perf_counter()
    _, crystals = pool_inputs()
    graphs = [c.graph for c in crystals]
    slots = [symmetry_map(c.structure).n_slots for c in crystals]
    atoms = [int(g.n_node[0]) for g in graphs]
    edges = [int(g.n_edge[0]) for g in graphs]
    groups = batches(slots, atoms, edges, FORCE_CONSTANTS_BUDGET)
    shapes = [padded_shape([graphs[i] for i in m], FORCE_CONSTANTS_BUDGET) for m in groups]
    return {
        "n_crystals": len(graphs),
        "n_batches": len(groups),
        "n_distinct_programs": len(set(shapes)),
        "programs": sorted({str(s) for s in shapes}),
        "atoms_max": max(atoms),
        "atoms_median": float(np.median(atoms)),
        "seconds": round(time.perf_counter() - start, 1),
    }


def part_atoms(repeats: int) -> dict:
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.errors import InputError
    from dtnn_jax.physics.force_constant_pass import compute_force_constants, crystal_graphs
    from dtnn_jax.physics.symmetry import symmetry_map
    from dtnn_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    encoder = get_encoder(ENCODER)
    _, crystals = pool_inputs()
    rows = []
    for n in SIZES:
        near = sorted(crystals, key=lambda c: abs(len(c.structure) - n))
        size = len(near[0].structure)
        same = sorted(
            (c for c in crystals if len(c.structure) == size), key=lambda c: int(c.graph.n_edge[0])
        )
        c = same[len(same) // 2]
        maps = [symmetry_map(c.structure)]
        graphs = crystal_graphs([c.structure], encoder, "float32", maps, graphs=[c.graph])
        before = load()
        timings: list = []
        start = time.perf_counter()
        try:
            compute_force_constants(encoder, graphs, maps=maps, timings=timings)
        except InputError as err:  # refused: not enough memory now (a shared machine)
            rows.append({"id": c.id, "n_atoms": size, "refused": str(err), "load": before})
            print(json.dumps(rows[-1]), flush=True)
            continue
        cold = time.perf_counter() - start
        warm = []
        for _ in range(repeats):
            start = time.perf_counter()
            compute_force_constants(encoder, graphs, maps=maps)
            warm.append(time.perf_counter() - start)
        row = {
            "id": c.id,
            "formula": c.formula,
            "n_atoms": size,
            "n_edges": int(c.graph.n_edge[0]),
            "n_displaced": maps[0].n_slots,
            "padded": [timings[0]["n_node"], timings[0]["n_edge"], timings[0]["max_atoms"]],
            "cold_s": round(cold, 2),
            "warm_s": round(min(warm), 2),
            "load_before": before,
            "load_after": load(),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"repeats": repeats, "rows": rows}


def child_large(n: int) -> None:
    """One Si supercell through force_constants (run by ``part_large`` in a child)."""
    from dtnn_jax.errors import InputError
    from dtnn_jax.physics.force_constant_pass import estimate_bytes, padded_shape
    from dtnn_jax.physics.force_constants import crystal_graphs, force_constants
    from dtnn_jax.physics.hessian import FORCE_CONSTANTS_BUDGET
    from dtnn_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    s = si_supercell(n)
    from dtnn_jax.encoder import get_encoder

    graph = crystal_graphs([s], get_encoder(ENCODER))
    shape = padded_shape(graph, FORCE_CONSTANTS_BUDGET)
    out = {"n_atoms": len(s), "n_edges": int(graph[0].n_edge[0]), "padded": list(shape)}
    out["estimate_gb"] = {  # memory the pass adds, one and three tangents at once
        "chunk1": round(estimate_bytes(shape[1], chunk=1) / 1e9, 2),
        "chunk3": round(estimate_bytes(shape[1], chunk=3) / 1e9, 2),
    }
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as cache:
            fc = force_constants([s], ENCODER, cache_dir=cache, progress=True)[0]
        out |= {
            "status": "completed",
            "n_displaced": fc.n_displaced,
            "sum_rule_ev_per_a2": fc.sum_rule_violation_ev_per_a2,
        }
    except InputError as err:
        out |= {"status": "refused", "message": str(err)}
    out["seconds_in_process"] = round(time.perf_counter() - start, 1)
    print("RESULT " + json.dumps(out), flush=True)


def part_large(supercells=SUPERCELLS) -> dict:
    rows = []
    for n in supercells:
        before = load()
        cmd = ["/usr/bin/time", "-v", sys.executable, __file__, "--child-large", str(n)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        result = next(
            (json.loads(x[7:]) for x in proc.stdout.splitlines() if x.startswith("RESULT ")), {}
        )
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        wall = re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", proc.stderr)
        result |= {
            "rc": proc.returncode,
            "peak_rss_gb": round(int(rss.group(1)) / 1e6, 2) if rss else None,
            "wall": wall.group(1) if wall else None,
            "load_before": before,
            "load_after": load(),
        }
        if proc.returncode not in (0,) and "status" not in result:
            result["stderr_tail"] = proc.stderr[-2000:]
        print(json.dumps(result), flush=True)
        rows.append(result)
    return {"rows": rows}


def part_predict(repeats: int) -> dict:
    out = {}
    for target in ("all", "electronic"):
        runs = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as cache:
                code = (
                    f"import time, json, sys; sys.path.insert(0, {str(ROOT)!r})\n"
                    "from benchmarks.force_constants_scaling import pool_inputs\n"
                    "import dtnn_jax\n"
                    "pool, _ = pool_inputs(100, seed=0)\n"
                    "model = dtnn_jax.load_model()\n"
                    "t = time.perf_counter()\n"
                    f"dtnn_jax.predict([r.structure for r in pool], target={target!r}, model=model,"
                    " errors='nan')\n"
                    "print('SECONDS', time.perf_counter() - t, len(pool))\n"
                )
                env = dict(os.environ, DTNN_JAX_CACHE=cache)
                env.setdefault(
                    "DTNN_JAX_COMPILATION_CACHE", str(Path.home() / ".cache" / "dtnn_jax" / "jax")
                )
                before = load()
                proc = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, env=env
                )
                line = [x for x in proc.stdout.splitlines() if x.startswith("SECONDS")]
                if not line:
                    runs.append({"error": proc.stderr[-2000:]})
                    continue
                seconds, n = float(line[0].split()[1]), int(line[0].split()[2])
                runs.append(
                    {
                        "seconds": round(seconds, 1),
                        "crystals_per_s": round(n / seconds, 3),
                        "load_before": before,
                        "load_after": load(),
                    }
                )
                print(target, json.dumps(runs[-1]), flush=True)
        good = [r["crystals_per_s"] for r in runs if "crystals_per_s" in r]
        out[target] = {
            "runs": runs,
            "median_crystals_per_s": statistics.median(good) if good else None,
            "note": "first run may include compilation; later runs: warm compilation cache, "
            "cold K and feature cache",
        }
    return out


def write(part: str, value: dict) -> None:
    """Merges one part into the results file (re-read: parts may run in parallel)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[part] = value
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


DESIGN_NOTE = """
## Design for a GPU run

Memory. The pass keeps the forward and backward intermediates of the potential alive
(``jax.linearize``) plus ``chunk`` tangent copies, so its memory is linear in the padded
edges of a batch. XLA's memory analysis of the compiled pass (float32): 0.22 MB per padded
edge of kept intermediates + 0.16 MB per edge and tangent of a chunk, i.e. 0.38 MB per edge
with chunk 1 and 0.70 MB with chunk 3 (`BYTES_PER_EDGE` in
`dtnn_jax/physics/force_constant_pass.py`; a whole CPU process peaked at 3.9 GB for a
64-atom Si cell, 4,096 padded edges, chunk 3). At Nequix's 6 A cutoff a crystal has ~45
edges per atom (Si: 46), so one crystal of N atoms needs ~17 MB x N with chunk 1 (32 MB x
N with chunk 3): 0.2 GB at 10 atoms, 0.7 GB at 40, 3.9 GB at 216 (10,240 padded edges),
9 GB at 512 (23,552). K itself is small (9N^2 x 4 bytes: 9 MB at 512 atoms). A batch
that would not fit with its chunk runs with chunk 1; one that does not fit even so is
refused before any work.

Batch sizes. On an 80 GB H100 the budget can grow ~16x over the CPU one
(`FORCE_CONSTANTS_BUDGET`: 16 crystals, 96 atoms, 4,096 edges): e.g. 64 crystals, 1,536
atoms, 65,536 edges (~46 GB at chunk 3), and ``chunk`` 6-12 tangents (the tangent part of the memory
grows with chunk; the GPU runs the vmapped products in parallel, the CPU does not gain).
Sorting by displaced atoms keeps the tangent count of a batch uniform, and the programs
depend only on the padded shape (14 over the whole shipped pool), so a 1,000-crystal run
compiles a handful. A 512-atom cell fits one H100 alone (9-17 GB by chunk).

Full K or iterative solves. eps_ion needs Kinv only against the three vectors Z_a, so 3
solves K x = Z_a by Hessian-vector products (CG or MINRES in the optical subspace) could
replace the 3S columns of K. With symmetry S is small for the cells that are large in
practice (a Si supercell: S = 1, three products for any size), where full K is already the
cheaper; CG pays ~sqrt(condition number) products per solve, soft modes make K
ill-conditioned, negative modes (which the default treatment drops) break CG, and the
phonon output needs K's eigenvectors. So full, symmetry-reduced K stays; CG would pay only
for large cells with no symmetry (S = N > ~100), which the memory check refuses on this
machine anyway.
"""


def render_markdown(results: dict) -> str:
    """The results file as markdown, with the design note."""
    out = ["# Force constants against atoms, large cells, compiled shapes, predict", ""]
    out += ["Produced by `python benchmarks/force_constants_scaling.py` (see its docstring).", ""]
    if "shapes" in results:
        r = results["shapes"]
        out += [
            "## Compiled programs over the shipped pool",
            "",
            f"{r['n_crystals']} crystals (median {r['atoms_median']:.0f} atoms, max "
            f"{r['atoms_max']}) in {r['n_batches']} batches need {r['n_distinct_programs']} "
            "distinct programs (padded nodes, edges, graphs, max_atoms): "
            + ", ".join(r["programs"]),
            "",
        ]
    if "atoms" in results:
        out += [
            "## K seconds per crystal against atoms (float32, symmetry, no cache)",
            "",
            "| id | formula | atoms | edges | displaced | padded (nodes, edges, M) | cold s "
            "| warm s | load before |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results["atoms"]["rows"]:
            if "refused" in r:
                out.append(f"| {r['id']} | | {r['n_atoms']} | | | | refused: {r['refused']} |")
                continue
            out.append(
                f"| {r['id']} | {r.get('formula')} | {r['n_atoms']} | {r.get('n_edges')} | "
                f"{r['n_displaced']} | {r['padded']} | {r['cold_s']} | {r['warm_s']} | "
                f"{r['load_before']} |"
            )
        out.append("")
    if "large" in results:
        out += [
            "## Si supercells (default potential, float32, symmetry, fresh cache)",
            "",
            "| atoms | edges | padded | estimate GB | status | rc | wall | peak RSS GB | "
            "load before |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results["large"]["rows"]:
            out.append(
                f"| {r.get('n_atoms')} | {r.get('n_edges')} | {r.get('padded')} | "
                f"{r.get('estimate_gb')} | {r.get('status')} | {r.get('rc')} | {r.get('wall')} "
                f"| {r.get('peak_rss_gb')} | {r.get('load_before')} |"
            )
        out.append("")
    if "predict" in results:
        out += ["## predict on 100 random shipped-pool crystals (cold K cache)", ""]
        for target, r in results["predict"].items():
            if not isinstance(r, dict) or "runs" not in r:
                continue
            runs = "; ".join(
                f"{x.get('crystals_per_s')} /s (load {x.get('load_before')})" for x in r["runs"]
            )
            out.append(
                f"- target={target}: median {r['median_crystals_per_s']} crystals/s ({runs})"
            )
        out.append("")
    notes = [
        f"- {r.get('n_atoms')} atoms ({part}): {r['note']}"
        for part in ("atoms", "large")
        for r in results.get(part, {}).get("rows", [])
        if r.get("note")
    ]
    notes += [f"- {part}: {results[part]['note']}" for part in results if "note" in results[part]]
    if notes:
        out += ["## Notes", "", *notes, ""]
    return "\n".join(out) + DESIGN_NOTE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        nargs="+",
        default=["shapes", "atoms", "large", "predict"],
        choices=["shapes", "atoms", "large", "predict"],
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--supercells", type=int, nargs="+", default=list(SUPERCELLS), help="Si n x n x n (8n^3)"
    )
    parser.add_argument("--child-large", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_large is not None:
        child_large(args.child_large)
        return
    for part in args.part:
        before = load()
        if part == "shapes":
            value = part_shapes()
        elif part == "atoms":
            value = part_atoms(args.repeats)
        elif part == "large":
            value = part_large(args.supercells)
        else:
            value = part_predict(args.repeats)
        value["load_before"], value["load_after"] = before, load()
        value["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write(part, value)
        RESULTS.with_suffix(".md").write_text(render_markdown(json.loads(RESULTS.read_text())))
        print(part, "done", flush=True)


if __name__ == "__main__":
    main()
