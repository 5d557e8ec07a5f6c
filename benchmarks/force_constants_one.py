"""Seconds for the force constants of one 10-atom crystal, warm, on this machine.

    python benchmarks/force_constants_one.py [--material mp-38220] [--repeats 3]

`benchmarks/force_constants.py` sweeps sizes and dtypes (many compilations); this times the
issue's reference case alone: K of one shipped crystal (default RbNO3, 10 atoms) with the
default settings (Nequix-OAM-1-PFT, float32, symmetry-reduced), each call with an empty
cache directory so nothing is reused but the compiled program. Prints the compile call,
the warm calls and the load average; writes ``results/force_constants_one.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dtnn_jax.data import load_petousis2017
from dtnn_jax.physics.force_constants import force_constants
from dtnn_jax.training.report import load_average, machine_description

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--material", default="mp-38220")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    records = load_petousis2017()
    structure = next(r.structure for r in records if r.material_id == args.material)
    load_before = load_average()
    times = []
    for _ in range(args.repeats + 1):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            force_constants([structure], cache_dir=cache)
            times.append(time.perf_counter() - start)
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = (
        f"# Force constants of one crystal\n\n{date}, "
        f"{machine_description()}; load average before {load_before}, after {load_average()}; "
        f"{os.cpu_count()} cores.\n\n{args.material} {structure.composition.reduced_formula} "
        f"({len(structure)} atoms), Nequix-OAM-1-PFT, float32, symmetry-reduced: first call "
        f"(compiling) {times[0]:.2f} s; warm {', '.join(f'{t:.2f}' for t in times[1:])} s.\n"
    )
    (RESULTS / "force_constants_one.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
