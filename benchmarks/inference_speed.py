"""Inference throughput of `dtnn_jax.predict`, end to end, on the shipped crystals.

    python benchmarks/inference_speed.py [--model NAME_OR_DIR] [--limit N] [--repeats R]

Stages, each timed over the same crystals (the 1,056 of Petousis et al. 2017 by default):

* first call: structures -> tensors including the jit compilation of every bucket shape;
* structures -> tensors: ``predict(structures, target="all")`` once compiled (validation,
  neighbour graphs, padding, encoder + all readouts of all ensemble members);
* files -> tensors: the same from POSCAR files and from CIF files (adds reading/parsing);
* parsing only: reading those files into Structures, to separate I/O from the model.

Writes ``inference_speed.json`` / ``.md`` under ``--out`` with the machine, the model
(name, path, ensemble sizes) and the load average before and after (the numbers are only
comparable on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="bundle name or directory (default shipped)")
    parser.add_argument("--limit", type=int, default=None, help="first N crystals only")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per stage (best)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--note", default="", help="a remark recorded with the results")
    args = parser.parse_args()

    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.inference import available_models, load_model, predict
    from dtnn_jax.inference.bundle import resolve_bundle_path
    from dtnn_jax.io import as_structure
    from dtnn_jax.training.report import machine_description

    if args.model is None and not available_models():
        raise SystemExit("no shipped model bundle yet: pass --model DIR")
    load_before = os.getloadavg()
    model = load_model(args.model)
    records = load_petousis2017()[: args.limit]
    structures = [r.structure for r in records]
    n, n_atoms = len(structures), sum(len(s) for s in structures)

    def run(inputs):
        return predict(inputs, target="all", model=model)

    stages = {}
    t0 = time.perf_counter()
    first = run(structures)
    stages["first call, structures -> tensors (incl. compile)"] = time.perf_counter() - t0
    stages["structures -> tensors"] = _timed(lambda: run(structures), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in (("poscar", "POSCAR_{i}"), ("cif", "{i}.cif")):
            paths = [Path(tmp) / name.format(i=i) for i in range(n)]
            for s, p in zip(structures, paths, strict=True):
                s.to(filename=str(p), fmt=fmt)
            stages[f"{fmt.upper()} files -> tensors"] = _timed(lambda p=paths: run(p), args.repeats)
            stages[f"{fmt.upper()} files -> Structures (parsing only)"] = _timed(
                lambda p=paths: [as_structure(x) for x in p], args.repeats
            )
    load_after = os.getloadavg()
    finite = all(bool((v == v).all()) for v in first.values())  # no NaN: nothing failed

    report = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_description(),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        "model": {
            "name": model.name,
            "path": str(resolve_bundle_path(args.model)),
            "ensemble_size": {t: model.ensemble_size(t) for t in model.targets},
        },
        "note": args.note,
        "n_crystals": n,
        "n_atoms": n_atoms,
        "all_predicted": finite,
        "repeats": args.repeats,
        "stages": {
            k: {"seconds": v, "crystals_per_s": n / v, "atoms_per_s": n_atoms / v}
            for k, v in stages.items()
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    m = report["model"]
    lines = [
        "# Inference speed: `dtnn_jax.predict` end to end",
        "",
        f"Date (UTC): {report['date_utc']}. Machine: {report['machine']}.",
        f"Load average (1/5/15 min) before {report['load_average_1_5_15_before']}, after "
        f"{report['load_average_1_5_15_after']} (other processes shared the CPU when > 0).",
        f"Model: {m['name']} ({m['path']}), ensemble sizes {m['ensemble_size']}; all targets "
        "in one call.",
        f"Data: {n} crystals ({n_atoms} atoms) of the shipped Petousis 2017 set; "
        f"best of {args.repeats} run(s) per stage.",
        *([f"Note: {args.note}"] if args.note else []),
        "",
        "| stage | seconds | crystals/s | atoms/s |",
        "|---|---:|---:|---:|",
    ]
    for k, v in report["stages"].items():
        lines.append(
            f"| {k} | {v['seconds']:.2f} | {v['crystals_per_s']:.1f} | {v['atoms_per_s']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "inference_speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
