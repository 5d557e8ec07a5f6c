"""Wall time of ``dtnn predict one.cif`` in a fresh process: first call, then warm cache.

    python benchmarks/first_call.py [--repeats 5] [--baseline REV] [--target electronic]

Each measurement is a new Python process (``python -m dtnn_jax.cli predict one.cif``) with
the shipped model. "cold" runs with an empty persistent compilation cache (the first call
ever on a machine), "warm" with the cache the cold run filled, "no cache" with the cache
switched off (every call compiles, as before the cache existed). With ``--baseline REV`` the
same command of an older checkout (a git worktree of REV, put first on ``PYTHONPATH``) is
timed in alternation, as "today" before this change. Also records where a warm call's time
goes (imports, model loading, the prediction) from ``-X importtime`` and the command's own
timings, and which modules of the physics path (``dtnn_jax.physics``) it imported. Writes
``benchmarks/results/first_call.json`` and ``.md`` (``--out`` names others).
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _one_cif(directory: Path) -> Path:
    from pymatgen.core import Structure

    from dtnn_jax.data import load_petousis2017

    structure: Structure = load_petousis2017()[0].structure
    path = directory / "one.cif"
    structure.to(filename=str(path))
    return path


MODEL: list[str] = []  # ["--model", NAME] and ["--target", T] when given


def _run(cif: Path, cache: str, pythonpath: str | None = None, extra=()) -> tuple[float, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "DTNN_JAX_COMPILATION_CACHE": cache}
    # feature and force-constant caches beside the compilation cache; none kept when "off"
    features = tempfile.mkdtemp() if cache == "off" else str(Path(cache).parent / "features")
    env["DTNN_JAX_CACHE"] = features
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, *extra, "-m", "dtnn_jax.cli", "predict", str(cif), *MODEL]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return seconds, proc.stderr


def _import_breakdown(cif: Path, cache: str) -> tuple[dict[str, float], list[str]]:
    """Cumulative import time (s) of the heaviest top-level packages in a warm call, and the
    modules of ``dtnn_jax.physics`` it imported."""
    _, err = _run(cif, cache, extra=("-X", "importtime"))
    totals: dict[str, float] = {}
    physics = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (x.strip() for x in line.split(":", 1)[1].split("|"))
        if not cumulative.isdigit():
            continue
        if name.startswith("dtnn_jax.physics"):
            physics.append(name)
        top = name.strip().split(".")[0]
        if name.strip() == top:  # the top-level import carries its whole subtree
            totals[top] = max(totals.get(top, 0.0), int(cumulative) / 1e6)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:10]), sorted(set(physics))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="git revision timed as 'today'")
    parser.add_argument("--model", default=None, help="bundle (default: the shipped default)")
    parser.add_argument("--target", default=None, help="dtnn predict --target (default: all)")
    parser.add_argument("--out", default=None, help="result name (default first_call)")
    args = parser.parse_args()
    if args.model:
        MODEL.extend(["--model", args.model])
    if args.target:
        MODEL.extend(["--target", args.target])
    from dtnn_jax.training.report import machine_description

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cif = _one_cif(tmp)
        baseline = None
        if args.baseline:
            baseline = tmp / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(baseline), args.baseline],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        try:
            cold = []
            for r in range(args.repeats):
                cache = str(tmp / f"cache{r}" / "jax")
                cold.append(_run(cif, cache)[0])  # empty cache: the first call ever
            warm_cache = str(tmp / "cache0" / "jax")
            warm, off, today = [], [], []
            for _ in range(args.repeats):
                warm.append(_run(cif, warm_cache)[0])
                off.append(_run(cif, "off")[0])
                if baseline is not None:
                    today.append(_run(cif, "off", pythonpath=str(baseline))[0])
            imports, physics_modules = _import_breakdown(cif, warm_cache)
        finally:
            if baseline is not None:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False
                )
    load_after = os.getloadavg()
    result = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_description(),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        "command": "python -m dtnn_jax.cli predict one.cif "
        + (" ".join(MODEL) or "(the shipped default model)"),
        "repeats": args.repeats,
        "cold_s": cold,
        "warm_s": warm,
        "no_cache_s": off,
        "baseline_revision": args.baseline,
        "baseline_s": today,
        "median_s": {
            "cold (empty cache)": statistics.median(cold),
            "warm (cache filled)": statistics.median(warm),
            "no cache": statistics.median(off),
            **({f"baseline {args.baseline}": statistics.median(today)} if today else {}),
        },
        "warm_imports_s": imports,
        "warm_physics_modules_imported": physics_modules,
    }
    RESULTS.mkdir(exist_ok=True)
    name = args.out or "first_call"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# `dtnn predict one.cif` in a fresh process",
        "",
        f"{result['date_utc']}, {result['machine']}; load average before "
        f"{result['load_average_1_5_15_before']}, after {result['load_average_1_5_15_after']}.",
        f"{result['command']}; median of {args.repeats} runs each (warm, no-cache and baseline "
        "runs alternate).",
        "",
        "| case | median wall (s) |",
        "|---|---|",
        *(f"| {k} | {v:.2f} |" for k, v in result["median_s"].items()),
        "",
        "Imports of a warm call (cumulative, s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in imports.items()),
        "",
        "Modules of dtnn_jax.physics a warm call imported: "
        + (", ".join(physics_modules) or "none"),
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
