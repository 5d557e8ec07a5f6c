"""Extract DFT Gamma force constants, eps_inf, Z* and eps_ion from the phonondb 2018 mirror.

Reads every ``phonon_db_tarred/*.tar.lzma`` of the bare git mirror of
``github:WMD-group/phononDB`` (Togo's Kyoto phonon database 2018-04-17; VASP PBEsol;
CC BY 4.0) with `dtnn_jax.data.phonondb.entry_from_files` (phonopy does the physics), in at
most 2 worker processes, and writes

* ``--raw`` (default ``/tmp/phonondb_raw.pkl``): every entry (pickled `PhononDBEntry`s),
  the input of ``experiments/build_phonondb_data.py`` which writes the shipped files;
* ``--log`` (default ``/tmp/phonondb_preparation.jsonl``, 2.5 MB, not committed): one line
  per archive: its name, material id, status (``ok`` or a skip reason of
  `dtnn_jax.data.phonondb.SKIP_REASONS`), detail, has_born, unstable, seconds;
* ``benchmarks/results/data_phonondb_preparation.{json,md}``: counts per status, wall time,
  load average, machine.

Usage (nice, 2 workers, single-threaded BLAS):
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 5 python experiments/prepare_phonondb.py \
        --mirror /work/.mirror/WMD-group+phononDB/repo [--born-only] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import subprocess
import time
from collections import Counter
from pathlib import Path

from dtnn_jax.data.phonondb import ArchiveSkipped, entry_from_files, read_archive

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def list_archives(mirror: str) -> list[tuple[str, str]]:
    """(path, blob sha) of every archive in the mirror's HEAD."""
    out = subprocess.run(
        ["git", f"--git-dir={mirror}", "ls-tree", "-r", "HEAD", "phonon_db_tarred/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        meta, path = line.split("\t", 1)
        if path.endswith(".tar.lzma"):
            rows.append((path, meta.split()[2]))
    return rows


def _work(job: tuple[str, str, str, bool]) -> tuple[dict, object]:
    mirror, path, sha, born_only = job
    start = time.perf_counter()
    row = {"archive": Path(path).name, "material_id": "", "status": "ok", "detail": ""}
    entry = None
    try:
        blob = subprocess.run(
            ["git", f"--git-dir={mirror}", "cat-file", "blob", sha],
            check=True,
            capture_output=True,
        ).stdout
        files = read_archive(blob)
        row["has_born"] = "BORN" in files
        if born_only and not row["has_born"]:
            row["status"] = "not_processed_no_born"
        else:
            entry = entry_from_files(files)
            row["material_id"] = entry.material_id
            row["unstable"] = entry.unstable
            row["has_ionic"] = entry.e_ionic is not None
    except ArchiveSkipped as exc:
        row["status"], row["detail"] = exc.reason, exc.detail[:300]
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row, entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", default="/work/.mirror/WMD-group+phononDB/repo")
    parser.add_argument("--raw", default="/tmp/phonondb_raw.pkl")
    parser.add_argument("--log", default="/tmp/phonondb_preparation.jsonl")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="first N archives only (testing)")
    parser.add_argument("--born-only", action="store_true", help="skip archives without BORN")
    args = parser.parse_args(argv)
    workers = max(1, min(args.workers, 2))
    archives = list_archives(args.mirror)
    if args.limit:
        archives = archives[: args.limit]
    jobs = [(args.mirror, path, sha, args.born_only) for path, sha in archives]
    start = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    rows, entries = [], []
    with multiprocessing.get_context("fork").Pool(workers, maxtasksperchild=200) as pool:
        for i, (row, entry) in enumerate(pool.imap_unordered(_work, jobs, chunksize=8)):
            rows.append(row)
            if entry is not None:
                entries.append(entry)
            if (i + 1) % 500 == 0:
                print(
                    f"{i + 1}/{len(jobs)} archives, {time.perf_counter() - start:.0f} s", flush=True
                )
    wall = time.perf_counter() - start
    load_end = [round(x, 2) for x in os.getloadavg()]
    rows.sort(key=lambda r: r["archive"])
    entries.sort(key=lambda e: e.material_id)
    with open(args.raw, "wb") as f:
        pickle.dump(entries, f, protocol=pickle.HIGHEST_PROTOCOL)
    Path(args.log).write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = Counter(r["status"] for r in rows)
    ok = [r for r in rows if r["status"] == "ok"]
    born_ok = [r for r in ok if r.get("has_born")]
    summary = {
        "archives": len(rows),
        "status_counts": dict(sorted(counts.items())),
        "ok_with_born": len(born_ok),
        "ok_with_born_and_ionic": sum(bool(r.get("has_ionic")) for r in born_ok),
        "ok_with_born_unstable": sum(bool(r.get("unstable")) for r in born_ok),
        "ok_without_born": len(ok) - len(born_ok),
        "ok_unstable_all": sum(bool(r.get("unstable")) for r in ok),
        "archives_with_born": sum(bool(r.get("has_born")) for r in rows),
        "wall_seconds": round(wall, 1),
        "workers": workers,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "born_only": args.born_only,
        "skipped": [
            {k: r[k] for k in ("archive", "status", "detail")} for r in rows if r["status"] != "ok"
        ],
        "seconds_per_archive_median": sorted(r["seconds"] for r in rows)[len(rows) // 2],
        "mirror_head": subprocess.run(
            ["git", f"--git-dir={args.mirror}", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
    }
    (RESULTS / "data_phonondb_preparation.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# phonondb 2018 preparation (experiments/prepare_phonondb.py)",
        "",
        f"{summary['archives']} archives in {wall / 60:.1f} min with {workers} worker(s) under "
        f"nice; load average {load_start} at start, {load_end} at end.",
        "",
        "| status | archives |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(counts.items())),
        "",
        f"With BORN and a record: {len(born_ok)}; with an ionic tensor: "
        f"{summary['ok_with_born_and_ionic']}; flagged unstable (no ionic label): "
        f"{summary['ok_with_born_unstable']}. Without BORN (frequencies only): "
        f"{summary['ok_without_born']}, of them unstable at Gamma: "
        f"{summary['ok_unstable_all'] - summary['ok_with_born_unstable']}.",
        "",
        "Every skipped archive, with its reason and detail, is listed in "
        "`data_phonondb_preparation.json` (`skipped`); the per-archive log (all archives) is "
        "written to `--log`.",
    ]
    (RESULTS / "data_phonondb_preparation.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
