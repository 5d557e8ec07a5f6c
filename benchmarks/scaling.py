"""Screening throughput on 1 and 2 processes (one CPU thread each), and the merge's cost.

    python benchmarks/scaling.py [--limit 2000] [--repeats 3]

Runs ``dtnn screen shipped --limit N`` (the shipped pool's first N crystals, the shipped
model) as one process pinned to one core with one XLA thread, then as two processes of one
multi-process run (``--coordinator 127.0.0.1:PORT --num-processes 2``), each pinned to its
own core with one thread, alternating, ``--repeats`` times; and times ``dtnn screen
--merge`` on the two shards alone. Compilation is excluded from the comparison by a warm-up
run that fills the persistent compilation cache. Writes ``benchmarks/results/scaling.json``
and ``.md`` with the machine and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dtnn_jax.distributed import free_port_pair

RESULTS = Path(__file__).parent / "results"
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


SMALL = 100  # crystals of the pool that estimates the fixed cost of one process


def _env(cache: str) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ONE_THREAD}
    env |= {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["DTNN_JAX_COMPILATION_CACHE"] = cache
    return env


def _screen(out: Path, limit: int, cache: str, processes: int) -> float:
    """Wall time (s) of one screen of the first ``limit`` shipped crystals."""
    base = [sys.executable, "-m", "dtnn_jax.cli", "screen", "shipped", "--limit", str(limit)]
    base += ["--out", str(out), "--no-progress", "--refine", "0"]  # the feature model alone
    if processes == 1:
        cmds = [["taskset", "-c", "0", *base]]
    else:
        port = free_port_pair()
        flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes)]
        cmds = [
            ["taskset", "-c", str(i), *base, *flags, "--process-id", str(i)]
            for i in range(processes)
        ]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for c in cmds
    ]
    for p in procs:
        _, err = p.communicate(timeout=3600)
        if p.returncode not in (0, 1):
            raise RuntimeError(err.decode()[-3000:])
    return time.perf_counter() - start


def _merge(out: Path, limit: int) -> float:
    cmd = [sys.executable, "-m", "dtnn_jax.cli", "screen", "shipped", "--limit", str(limit)]
    cmd += ["--out", str(out), "--merge", "--refine", "0"]
    start = time.perf_counter()
    subprocess.run(cmd, env=_env(""), check=False, capture_output=True, timeout=3600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from dtnn_jax.training.report import machine_description

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = str(tmp / "jax-cache")
        _screen(tmp / "warm1", args.limit, cache, 1)  # fill the compilation cache
        _screen(tmp / "warm2", args.limit, cache, 2)
        times = {1: [], 2: []}
        for r in range(args.repeats):
            for processes in (1, 2):
                seconds = _screen(tmp / f"run{r}-{processes}", args.limit, cache, processes)
                times[processes].append(seconds)
                print(f"{processes} process(es): {seconds:.1f} s", flush=True)
        merge = [_merge(tmp / f"run{r}-2", args.limit) for r in range(args.repeats)]
        # the per-process fixed cost: start-up, pool reading, loading the compiled shapes
        _screen(tmp / "small-warm", SMALL, cache, 1)
        small = statistics.median(_screen(tmp / f"small{r}", SMALL, cache, 1) for r in range(2))
    load_after = os.getloadavg()
    median = {p: statistics.median(t) for p, t in times.items()}
    result = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_description(),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        "pool": f"shipped, first {args.limit} crystals",
        "threads_per_process": 1,
        "wall_s": {str(p): t for p, t in times.items()},
        "median_wall_s": {str(p): m for p, m in median.items()},
        "crystals_per_s": {str(p): args.limit / m for p, m in median.items()},
        "speedup_2_over_1": median[1] / median[2],
        "merge_wall_s_median": statistics.median(merge),
        "fixed_cost": {
            "wall_s_1_process_small_pool": small,
            "small_pool": SMALL,
            "per_crystal_ms_1_process": 1000 * (median[1] - small) / (args.limit - SMALL),
        },
        "note": (
            "whole-command wall times (process start, JAX import, model load, prediction, "
            "writing); compilation comes from a warm persistent cache; the merge (reading "
            "the shards, ranking, CSV and plots) is timed alone"
        ),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Screening on 1 and 2 processes",
        "",
        f"{result['date_utc']}, {result['machine']}; load average before "
        f"{result['load_average_1_5_15_before']}, after {result['load_average_1_5_15_after']}.",
        f"Pool: {result['pool']}; one XLA thread per process, each pinned to its own core.",
        "",
        "| processes | median wall (s) | crystals/s |",
        "|---|---|---|",
    ]
    for p in ("1", "2"):
        lines.append(
            f"| {p} | {result['median_wall_s'][p]:.1f} | {result['crystals_per_s'][p]:.0f} |"
        )
    lines += [
        "",
        f"Speed-up 2 over 1: {result['speedup_2_over_1']:.2f}x. The merge alone (as a "
        f"separate command: start, read, rank, write): {result['merge_wall_s_median']:.1f} s.",
        "",
        result["note"] + ".",
        "",
        f"Fixed cost of one process (a {SMALL}-crystal pool, 1 process): "
        f"{result['fixed_cost']['wall_s_1_process_small_pool']:.1f} s; then "
        f"{result['fixed_cost']['per_crystal_ms_1_process']:.1f} ms per crystal. Every "
        "process pays the fixed cost (start-up, reading the pool's index, loading the "
        "compiled shapes from the persistent cache, and its share of the ranking), so the "
        "speed-up on separate hosts grows with the pool towards N.",
    ]
    (RESULTS / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
