"""Build the shipped label files of the phonondb 2018 and e3nn-models sources.

Inputs: the raw entries of ``experiments/prepare_phonondb.py`` (``--raw``) and the bare git
mirror of ``github:shiangfang/e3nn-models`` (``data/phonon_becs_epsilon.xyz``). Writes into
``dtnn_jax/data/``:

* ``phonondb2018.json.gz``: the BORN crystals (eps_inf, Z*, Gamma frequencies, DFT eps_ion
  where stable at Gamma), structure = phonopy's primitive cell;
* ``phonondb2018_phonons.json.gz``: structure + Gamma frequencies of every crystal;
* ``phonondb2018_force_constants.npz``: float32 Gamma K of the BORN crystals (lower
  triangles, row-major, concatenated);
* ``e3nn_models.json.gz``: the e3nn-models frames (validation only);
* ``label_groups.json.gz``: duplicate groups across Petousis, phonondb and e3nn-models
  (`dtnn_jax.data.combined.group_duplicates`, ``--match idless`` by default: same mp-id,
  plus ``StructureMatcher`` for the id-less e3nn-models records; ``--match all`` also
  structure-matches records with different mp-ids, slower);
* the phonondb / e3nn-models section of ``PROVENANCE.md`` (between markers), with frame
  checks and counts; ``benchmarks/results/data_labels.json`` with the same numbers.

Usage:
    nice -n 5 python experiments/prepare_labels.py --raw /tmp/phonondb_raw.pkl
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import multiprocessing
import pickle
import subprocess
import time
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from dtnn_jax.data.combined import GROUPS_FILE, group_duplicates, record_key
from dtnn_jax.data.frame_check import point_group_rotations, relative_deviation
from dtnn_jax.data.phonondb import NEAR_METAL_EPS_INF
from dtnn_jax.data.records import structure_from_compact, structure_to_compact, symmetry_of
from dtnn_jax.data.shipped import DATA_DIR, FORMAT_VERSION, load_petousis2017
from dtnn_jax.data.sources import (
    E3NN_FILE,
    PHONONDB_FC_FILE,
    PHONONDB_FILE,
    PHONONDB_PHONONS_FILE,
    clear_cache,
    load_e3nn_models,
    load_phonondb2018,
    parse_e3nn_extxyz,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
E3NN_PATH = "data/phonon_becs_epsilon.xyz"
BEGIN = "<!-- BEGIN labels (experiments/prepare_labels.py) -->"
END = "<!-- END labels -->"


def _round(array, decimals: int):
    return None if array is None else np.round(np.asarray(array, np.float64), decimals).tolist()


def _write_json_gz(path: Path, payload: dict) -> int:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write(raw)
    return path.stat().st_size


def _symmetry_and_frame(record: dict) -> tuple[dict, dict]:
    """Space group fields and the frame-check deviation of each tensor of one JSON record
    (`dtnn_jax.data.frame_check`: point-group average, floor 1.0, symprec 0.1 A)."""
    structure = structure_from_compact(record["structure"])
    number, symbol, system = symmetry_of(structure)
    rotations = point_group_rotations(structure)
    deviations = {}
    for target in ("e_electronic", "e_ionic"):
        if record.get(target) is not None:
            tensor = np.asarray(record[target], np.float64)
            deviations[target[2:]] = relative_deviation(tensor, rotations, floor=1.0)
    fields = {"spacegroup_number": number, "spacegroup_symbol": symbol, "crystal_system": system}
    return fields, deviations


def add_symmetry(records: list[dict], workers: int) -> dict[str, list]:
    """Fill space-group fields in place (``workers`` processes); return frame-check
    deviations per target as ``{target: [(id, deviation), ...]}``."""
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(_symmetry_and_frame, records, chunksize=32)
    out: dict[str, list] = {}
    for record, (fields, deviations) in zip(records, results, strict=True):
        record.update(fields)
        for target, d in deviations.items():
            out.setdefault(target, []).append((record["material_id"], d))
    return out


def phonondb_payloads(entries) -> tuple[dict, dict, dict]:
    """(labels payload, phonons payload, force-constant arrays) from `PhononDBEntry`s."""
    labels, phonons, fc_ids, fc_n, fc_flat = [], [], [], [], []
    for e in entries:
        structure = Structure(Lattice(e.lattice), list(e.species), e.frac)
        formula = structure.composition.reduced_formula
        compact = structure_to_compact(structure)
        frequencies = _round(e.frequencies_cm1, 2)
        phonons.append(
            {
                "material_id": e.material_id,
                "formula": formula,
                "structure": compact,
                "gamma_frequencies_cm1": frequencies,
                "has_born": e.born_charges is not None,
            }
        )
        if e.born_charges is None:
            continue
        labels.append(
            {
                "material_id": e.material_id,
                "formula": formula,
                "structure": compact,
                "e_electronic": _round(e.e_electronic, 6),
                "e_ionic": _round(e.e_ionic, 6),
                "born_charges": _round(e.born_charges.reshape(-1, 9), 5),
                "gamma_frequencies_cm1": frequencies,
                "flags": ["unstable_gamma"] if e.unstable else [],
            }
        )
        fc_ids.append(e.material_id)
        fc_n.append(len(e.species))
        k = np.asarray(e.force_constants, np.float32)
        fc_flat.append(k[np.tril_indices(k.shape[0])])  # K is symmetric: lower triangle
    fc = {
        "material_ids": np.asarray(fc_ids),
        "n_atoms": np.asarray(fc_n, np.int32),
        "force_constants": np.concatenate(fc_flat) if fc_flat else np.zeros(0, np.float32),
    }
    return labels, phonons, fc


def e3nn_frames(mirror: str) -> tuple[list[dict], dict]:
    """Records of the e3nn-models file (`parse_e3nn_extxyz`) plus counts and its sha256."""
    blob = subprocess.run(
        ["git", f"--git-dir={mirror}", "show", f"HEAD:{E3NN_PATH}"], check=True, capture_output=True
    ).stdout
    records, skipped, n_frames = parse_e3nn_extxyz(blob.decode())
    info = {
        "frames": n_frames,
        "shipped": len(records),
        "skipped": {k: len(v) for k, v in skipped.items()},
        "skipped_ids": skipped,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "mirror_head": subprocess.run(
            ["git", f"--git-dir={mirror}", "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    return records, info


def frame_table(deviations: dict[str, list]) -> tuple[str, dict]:
    rows, numbers = [], {}
    for t, pairs in deviations.items():
        dev = np.asarray([d for _, d in pairs])
        n = len(dev)
        numbers[t] = {
            "checked": n,
            "pass_0.01": int(np.sum(dev < 0.01)),
            "pass_0.05": int(np.sum(dev < 0.05)),
            "median": float(np.median(dev)),
            "max": float(np.max(dev)),
            "worst": sorted(pairs, key=lambda p: -p[1])[:5],
        }
        x = numbers[t]
        rows.append(
            f"| {t} | {x['pass_0.01']} / {n} | {x['pass_0.05']} / {n} | "
            f"{x['median']:.2e} | {x['max']:.2e} | "
            + ", ".join(f"{m} {d:.3f}" for m, d in x["worst"][:4])
            + " |"
        )
    head = "| target | pass (< 0.01) | pass (< 0.05) | median deviation | max deviation | worst |\n"
    return head + "|---|---|---|---|---|---|\n" + "\n".join(rows), numbers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default="/tmp/phonondb_raw.pkl")
    parser.add_argument("--e3nn-mirror", default="/work/.mirror/shiangfang+e3nn-models/repo")
    parser.add_argument("--skip-groups", action="store_true", help="keep label_groups.json.gz")
    parser.add_argument("--match", default="idless", choices=("idless", "all", "none"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--groups-only", action="store_true", help="only rewrite label_groups.json.gz"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.groups_only:
        write_groups(args.match)
        return
    with open(args.raw, "rb") as f:
        entries = pickle.load(f)
    labels, phonons, fc = phonondb_payloads(entries)
    workers = max(1, min(args.workers, 2))
    phonondb_dev = add_symmetry(labels, workers)
    sizes = {}
    meta = {"format_version": FORMAT_VERSION, "source": "phonondb2018"}
    sizes[PHONONDB_FILE] = _write_json_gz(DATA_DIR / PHONONDB_FILE, {**meta, "records": labels})
    sizes[PHONONDB_PHONONS_FILE] = _write_json_gz(
        DATA_DIR / PHONONDB_PHONONS_FILE, {**meta, "records": phonons}
    )
    np.savez_compressed(DATA_DIR / PHONONDB_FC_FILE, **fc)
    sizes[PHONONDB_FC_FILE] = (DATA_DIR / PHONONDB_FC_FILE).stat().st_size
    e3nn_records, e3nn_info = e3nn_frames(args.e3nn_mirror)
    e3nn_dev = add_symmetry(e3nn_records, workers)
    sizes[E3NN_FILE] = _write_json_gz(
        DATA_DIR / E3NN_FILE,
        {"format_version": FORMAT_VERSION, "source": "e3nn_models", "records": e3nn_records},
    )
    clear_cache()
    phonondb = load_phonondb2018()
    e3nn = load_e3nn_models()
    petousis = load_petousis2017()
    if not args.skip_groups:
        sizes[GROUPS_FILE] = write_groups(args.match, petousis, phonondb, e3nn)
    phonondb_table, phonondb_frames = frame_table(phonondb_dev)
    e3nn_table, e3nn_frames_numbers = frame_table(e3nn_dev)
    numbers = {
        "phonondb_records": len(phonondb),
        "phonondb_with_ionic": sum(r.e_ionic is not None for r in phonondb),
        "phonondb_unstable": sum("unstable_gamma" in r.flags for r in phonondb),
        "phonondb_phonon_records": len(phonons),
        "e3nn": {k: v for k, v in e3nn_info.items() if k != "skipped_ids"},
        "e3nn_skipped_ids": e3nn_info["skipped_ids"],
        "frame_check": {"phonondb2018": phonondb_frames, "e3nn_models": e3nn_frames_numbers},
        "sizes_bytes": sizes,
        "seconds": round(time.perf_counter() - start, 1),
        "match_structures": args.match,
    }
    (RESULTS / "data_labels.json").write_text(json.dumps(numbers, indent=2) + "\n")
    write_provenance(numbers, phonondb_table, e3nn_table)
    print(json.dumps({k: v for k, v in numbers.items() if k != "e3nn_skipped_ids"}, indent=2))


def write_groups(match: str, petousis=None, phonondb=None, e3nn=None) -> int:
    """Write ``label_groups.json.gz`` (groups of more than one record); return its size."""
    records = [
        *(petousis if petousis is not None else load_petousis2017()),
        *(phonondb if phonondb is not None else load_phonondb2018()),
        *(e3nn if e3nn is not None else load_e3nn_models()),
    ]
    groups = group_duplicates(records, match_structures=match)
    key_groups = [[record_key(records[i]) for i in g] for g in groups if len(g) > 1]
    return _write_json_gz(
        DATA_DIR / GROUPS_FILE,
        {"format_version": FORMAT_VERSION, "match_structures": match, "groups": key_groups},
    )


def write_provenance(numbers: dict, phonondb_table: str, e3nn_table: str) -> None:
    """Replace the labels section of PROVENANCE.md (between markers; appended if absent)."""
    prep = json.loads((RESULTS / "data_phonondb_preparation.json").read_text())
    template = (ROOT / "experiments" / "provenance_labels.md").read_text()
    section = template.format(
        n=numbers,
        prep=prep,
        sizes=numbers["sizes_bytes"],
        e3nn=numbers["e3nn"],
        phonondb_table=phonondb_table,
        e3nn_table=e3nn_table,
        status_rows="\n".join(f"| {k} | {v} |" for k, v in prep["status_counts"].items()),
        threshold=NEAR_METAL_EPS_INF,
    )
    path = DATA_DIR / "PROVENANCE.md"
    text = path.read_text()
    block = f"{BEGIN}\n{section.strip()}\n{END}\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)


if __name__ == "__main__":
    main()
