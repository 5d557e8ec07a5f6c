"""Build the shipped data files of dtnn_jax from the matminer 0.4.0 sdist.

Writes ``dtnn_jax/data/petousis2017.json.gz`` (1,056 DFPT dielectric tensors of Petousis
et al. 2017), ``dtnn_jax/data/screening_pool.json.gz`` (unlabeled Materials Project
structures from the other matminer 0.4.0 tables) and ``dtnn_jax/data/PROVENANCE.md``.

Usage:
    python experiments/prepare_data.py                       # pip download the sdist
    python experiments/prepare_data.py --sdist matminer-0.4.0.tar.gz
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import hashlib
import io
import json
import math
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pymatgen.core
from pymatgen.core import Composition, Structure
from pymatgen.io.vasp import Poscar

from dtnn_jax.data.frame_check import frame_check_targets
from dtnn_jax.data.records import (
    ELECTRONEGATIVITY_MARGIN,
    INSULATOR_SOURCES,
    SYMPREC_ANGSTROM,
    charge_balanced,
    likely_metal,
    structure_to_compact,
    symmetry_of,
)
from dtnn_jax.data.shipped import (
    DATA_DIR,
    FORMAT_VERSION,
    PETOUSIS_FILE,
    POOL_FILE,
    clear_cache,
    load_petousis2017,
)

SDIST_NAME = "matminer-0.4.0.tar.gz"
MATMINER_VERSION = "0.4.0"
DATASET_DIR = f"matminer-{MATMINER_VERSION}/matminer/datasets/"
DIELECTRIC_SHA256 = "ecbd410d33c95d5b05822cff6c7c0ba809a024b4ede3855ec5efc48d5e29ea77"
EXPECTED_RECORDS = 1056
POOL_TABLES = ("flla_2015.csv", "elastic_tensor.csv", "piezoelectric_tensor.csv")
TENSOR_DECIMALS = 8  # the CSV holds 8 decimals; more would only store float noise
FRAME_CHECK_TOL = 0.01

csv.field_size_limit(sys.maxsize)


def fetch_sdist(workdir: Path) -> Path:
    """Download the matminer 0.4.0 sdist with pip (no dependencies, source only)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"matminer=={MATMINER_VERSION}",
        "-d",
        str(workdir),
    ]
    subprocess.run(cmd, check=True)
    return workdir / SDIST_NAME


def read_tables(sdist: Path) -> dict[str, bytes]:
    """Raw bytes of the four dataset CSVs inside the sdist."""
    wanted = ("dielectric_constant.csv", *POOL_TABLES)
    out: dict[str, bytes] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for name in wanted:
            member = tar.extractfile(DATASET_DIR + name)
            if member is None:
                raise FileNotFoundError(f"{DATASET_DIR + name} not in {sdist}")
            out[name] = member.read()
    return out


def csv_rows(raw: bytes) -> list[dict[str, str]]:
    """Rows of a matminer CSV; the first line is a '# ref:' comment."""
    text = raw.decode("utf-8")
    first_newline = text.index("\n")
    if not text.startswith("#"):
        first_newline = -1
    reader = csv.reader(io.StringIO(text[first_newline + 1 :]))
    header = next(reader)
    rows = []
    for fields in reader:
        # Some tables were written with an unnamed pandas index column before the header's.
        if len(fields) == len(header) + 1:
            fields = fields[1:]
        if len(fields) != len(header):
            raise ValueError(f"row {len(rows)}: {len(fields)} fields, header has {len(header)}")
        rows.append(dict(zip(header, fields, strict=True)))
    return rows


def parse_tensor(text: str, where: str) -> np.ndarray:
    tensor = np.asarray(ast.literal_eval(text), dtype=np.float64)  # [3, 3]
    if tensor.shape != (3, 3) or not np.all(np.isfinite(tensor)):
        raise ValueError(f"{where}: bad tensor {text!r}")
    return tensor


def parse_poscar(text: str) -> Structure:
    return Poscar.from_str(text, read_velocities=False).structure


def build_dielectric(raw: bytes) -> tuple[list[dict], dict]:
    """Parse the dielectric table into compact JSON records plus metadata."""
    rows = csv_rows(raw)
    records: list[dict] = []
    max_asym = {"electronic": 0.0, "total": 0.0}
    max_asym_rel = {"electronic": 0.0, "total": 0.0}
    max_asym_id = {"electronic": "", "total": ""}
    sg_mismatch: list[str] = []
    formula_mismatch: list[str] = []
    for row in rows:
        mpid = row["material_id"]
        structure = parse_poscar(row["poscar"])
        if len(structure) != int(row["nsites"]):
            raise ValueError(f"{mpid}: POSCAR has {len(structure)} sites, table {row['nsites']}")
        tensors = {}
        for target, column in (("electronic", "e_electronic"), ("total", "e_total")):
            t = parse_tensor(row[column], f"{mpid} {column}")
            asym = float(np.max(np.abs(t - t.T)))
            if asym > max_asym[target]:
                max_asym[target], max_asym_id[target] = asym, mpid
            max_asym_rel[target] = max(max_asym_rel[target], asym / float(np.max(np.abs(t))))
            tensors[target] = 0.5 * (t + t.T)
        tensors["ionic"] = tensors["total"] - tensors["electronic"]
        number, symbol, system = symmetry_of(structure, SYMPREC_ANGSTROM)
        if number != int(row["space_group"]):
            sg_mismatch.append(f"{mpid}: table {row['space_group']} spglib {number}")
        formula = row["formula"]
        if structure.composition.reduced_formula != formula:
            formula_mismatch.append(f"{mpid}: {formula} vs {structure.composition.reduced_formula}")
        band_gap = float(row["band_gap"])
        if not np.isfinite(band_gap) or band_gap < 0:
            raise ValueError(f"{mpid}: bad band gap {band_gap}")
        records.append(
            {
                "material_id": mpid,
                "formula": formula,
                "structure": structure_to_compact(structure),
                "e_electronic": np.round(tensors["electronic"], TENSOR_DECIMALS).tolist(),
                "e_ionic": np.round(tensors["ionic"], TENSOR_DECIMALS).tolist(),
                "e_total": np.round(tensors["total"], TENSOR_DECIMALS).tolist(),
                "band_gap_ev": band_gap,
                "spacegroup_number": number,
                "spacegroup_symbol": symbol,
                "crystal_system": system,
                "pot_ferroelectric": row["pot_ferroelectric"] == "True",
            }
        )
    ids = [r["material_id"] for r in records]
    if len(records) != EXPECTED_RECORDS or len(set(ids)) != len(ids):
        raise ValueError(f"expected {EXPECTED_RECORDS} unique records, got {len(set(ids))}")
    meta = {
        "max_abs_asymmetry_before_symmetrisation": max_asym,
        "max_rel_asymmetry_before_symmetrisation": max_asym_rel,
        "max_abs_asymmetry_material_id": max_asym_id,
        "spacegroup_mismatch_vs_table": sg_mismatch,
        "formula_mismatch_vs_poscar": formula_mismatch,
    }
    return records, meta


def build_pool(tables: dict[str, bytes], exclude: set[str]) -> tuple[list[dict], dict]:
    """Structures of the non-dielectric tables, deduplicated by material_id.

    Each record also carries ``band_gap_ev`` (always null: none of the three tables has a
    band gap or any other electronic-structure column), ``insulator_by_construction`` (in a
    table of ``INSULATOR_SOURCES``, or a gap > 0) and ``charge_balanced``
    (:func:`dtnn_jax.data.records.charge_balanced` of the structure's composition).
    """
    pool: dict[str, dict] = {}
    counts: dict[str, int] = {}
    labelled: dict[str, int] = {}
    for name in POOL_TABLES:
        rows = csv_rows(tables[name])
        counts[name] = len(rows)
        labelled[name] = 0
        source = name.removesuffix(".csv")
        for row in rows:
            mpid = row["material_id"]
            if mpid in exclude:
                labelled[name] += 1
                continue
            if mpid in pool:
                pool[mpid]["sources"].append(source)
                continue
            if name == "flla_2015.csv":
                structure = Structure.from_dict(ast.literal_eval(row["structure"]))
                e_hull = float(row["e_above_hull"])
            else:
                structure = parse_poscar(row["poscar"])
                e_hull = None
            pool[mpid] = {
                "material_id": mpid,
                "formula": structure.composition.reduced_formula,
                "structure": structure_to_compact(structure),
                "e_above_hull_ev": e_hull,
                "sources": [source],
                "band_gap_ev": None,
                "charge_balanced": charge_balanced(structure.composition),
            }
    records = sorted(pool.values(), key=lambda r: r["material_id"])
    for r in records:
        gap = r["band_gap_ev"]
        r["insulator_by_construction"] = bool(
            any(s in INSULATOR_SOURCES for s in r["sources"]) or (gap is not None and gap > 0)
        )
    meta = {
        "rows_per_table": counts,
        "excluded_dielectric_ids": len(exclude),
        "labelled_rows_per_table": labelled,
        "metal_flags": {
            "rule": "dtnn_jax.data.records.charge_balanced / likely_metal",
            "insulator_sources": list(INSULATOR_SOURCES),
            "electronegativity_margin": ELECTRONEGATIVITY_MARGIN,
            "pymatgen_version": pymatgen.core.__version__,
            "counts": pool_class_counts(records),
        },
    }
    return records, meta


SHIPPED_ENCODERS = ("sevennet-0", "nequix-oam-1-pft")
"""The encoders of the shipped models: a pool entry must pass the input pass of each."""


def input_pass_failures(records: list[dict]) -> list[dict]:
    """The pool entries the single input pass (`dtnn_jax.inputs.prepare_input`) refuses with
    the shipped encoders (isolated atoms, overlapping atoms, unknown elements, ...), checked
    on the stored (compact) structure, as users load it: ``dtnn screen shipped`` must not
    fail on its own pool."""
    from dtnn_jax.data.records import structure_from_compact
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.inputs import InputItem, prepare_input

    encoders = [get_encoder(name) for name in SHIPPED_ENCODERS]
    failures = []
    for r in records:
        structure = structure_from_compact(r["structure"])
        item = InputItem(structure, r["material_id"], r["material_id"])
        for encoder in encoders:
            (crystal,) = prepare_input(item, encoder)
            if crystal.error is not None:
                failures.append(
                    {
                        "material_id": r["material_id"],
                        "formula": r["formula"],
                        "encoder": encoder.name,
                        "reason": crystal.error,
                    }
                )
                break
    return failures


def pool_class_counts(records: list[dict]) -> dict[str, int]:
    """How many pool records carry a gap, each flag, and how many are likely metals."""
    gaps = [float("nan") if r["band_gap_ev"] is None else r["band_gap_ev"] for r in records]
    return {
        "records": len(records),
        "band_gap_known": sum(math.isfinite(g) for g in gaps),
        "insulator_by_construction": sum(r["insulator_by_construction"] for r in records),
        "charge_balanced": sum(r["charge_balanced"] for r in records),
        "insulator_by_construction_not_charge_balanced": sum(
            r["insulator_by_construction"] and not r["charge_balanced"] for r in records
        ),
        "likely_metal": sum(
            likely_metal(r["formula"], band_gap_ev=g, balanced=r["charge_balanced"])
            for r, g in zip(records, gaps, strict=True)
        ),
    }


def compact_formula(record: dict) -> str:
    """Reduced formula of a compact JSON record's structure."""
    return Composition(dict(Counter(record["structure"]["species"]))).reduced_formula


def write_json_gz(path: Path, payload: dict) -> None:
    text = json.dumps(payload, separators=(",", ":"))
    # mtime=0 keeps the file byte-identical across rebuilds.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="local matminer-0.4.0.tar.gz (else pip)")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist if args.sdist is not None else fetch_sdist(Path(tmp))
        sdist_sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
        tables = read_tables(sdist)
    shas = {name: hashlib.sha256(raw).hexdigest() for name, raw in tables.items()}
    if shas["dielectric_constant.csv"] != DIELECTRIC_SHA256:
        raise ValueError(
            f"dielectric_constant.csv sha256 {shas['dielectric_constant.csv']} != expected "
            f"{DIELECTRIC_SHA256}"
        )

    t0 = time.perf_counter()
    records, meta = build_dielectric(tables["dielectric_constant.csv"])
    print(f"parsed {len(records)} dielectric records in {time.perf_counter() - t0:.1f} s")
    pool, pool_meta = build_pool(tables, {r["material_id"] for r in records})
    removed = input_pass_failures(pool)
    gone = {f["material_id"] for f in removed}
    pool = [r for r in pool if r["material_id"] not in gone]
    pool_meta["removed_by_input_pass"] = removed
    pool_meta["metal_flags"]["counts"] = pool_class_counts(pool)
    print(f"pool: removed {len(removed)} entries the input pass refuses: {removed}")
    print(f"pool: {len(pool)} structures; {pool_meta['metal_flags']['counts']}")
    # False-metal rate of the rule on known insulators (every Petousis gap is >= 0.11 eV).
    unbalanced = [r["formula"] for r in records if not charge_balanced(compact_formula(r))]
    pool_meta["metal_flags"]["petousis2017_charge_balanced"] = len(records) - len(unbalanced)
    pool_meta["metal_flags"]["petousis2017_records"] = len(records)
    print(f"petousis2017: {len(records) - len(unbalanced)} / {len(records)} charge-balanced")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "format_version": FORMAT_VERSION,
        "source": f"matminer=={MATMINER_VERSION} sdist (PyPI)",
        "sdist_sha256": sdist_sha,
        "licence": "matminer: BSD-3-Clause; data: Materials Project, CC BY 4.0",
    }
    write_json_gz(
        args.out_dir / PETOUSIS_FILE,
        {
            **common,
            "dataset": "petousis2017",
            "source_file": "matminer/datasets/dielectric_constant.csv",
            "source_sha256": shas["dielectric_constant.csv"],
            "citation": "Petousis et al., Sci. Data 4, 160134 (2017)",
            "symprec_angstrom": SYMPREC_ANGSTROM,
            "tensor_frame": "Cartesian frame of the stored structure (the DFPT POSCAR)",
            "tensor_processing": "symmetrised (T + T^T)/2; e_ionic = e_total - e_electronic",
            **meta,
            "records": records,
        },
    )
    write_json_gz(
        args.out_dir / POOL_FILE,
        {
            **common,
            "dataset": "screening_pool",
            "source_files": {n: shas[n] for n in POOL_TABLES},
            **pool_meta,
            "records": pool,
        },
    )

    # Frame check on what was written, through the public loader.
    clear_cache()
    loaded = load_petousis2017(args.out_dir / PETOUSIS_FILE)
    frame = frame_check_targets(loaded, symprec=SYMPREC_ANGSTROM, tol=FRAME_CHECK_TOL)
    sizes = {f: (args.out_dir / f).stat().st_size for f in (PETOUSIS_FILE, POOL_FILE)}
    write_provenance(
        args.out_dir / "PROVENANCE.md",
        shas,
        sdist_sha,
        meta,
        pool,
        frame,
        sizes,
        loaded,
        pool_meta,
        unbalanced,
    )
    for t, rep in frame.items():
        print(f"frame check {t}: {rep.summary()}")
    print(f"sizes: {sizes}")
    return 0


def _anisotropy(tensor: np.ndarray) -> float:
    eig = np.linalg.eigvalsh(tensor)
    return float(np.ptp(eig) / np.mean(eig))


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(
        text, width=92, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
    )


def write_provenance(
    path, shas, sdist_sha, meta, pool, frame, sizes, records, pool_meta, unbalanced
) -> None:
    by_id = {r.material_id: r for r in records}
    el_dev = dict(
        zip(frame["electronic"].material_ids, frame["electronic"].deviations, strict=True)
    )
    ion_fail = [m for m, _ in frame["ionic"].failures()]
    aniso_fail = [m for m in ion_fail if _anisotropy(by_id[m].e_electronic) > 0.1]
    n_ion_fail, n_aniso = len(ion_fail), len(aniso_fail)
    max_el_aniso = max((el_dev[m] for m in aniso_fail), default=0.0)
    max_aniso_el_fail = max(
        (_anisotropy(by_id[m].e_electronic) for m, _ in frame["electronic"].failures()),
        default=0.0,
    )
    asym = meta["max_abs_asymmetry_before_symmetrisation"]
    rel = meta["max_rel_asymmetry_before_symmetrisation"]
    n_hull = sum(r["e_above_hull_ev"] is not None for r in pool)
    removed = pool_meta.get("removed_by_input_pass", [])
    removed_text = _wrap(
        f"Removed: {len(removed)} entries of the tables that the input pass of the shipped "
        f"encoders ({', '.join(SHIPPED_ENCODERS)}; `dtnn_jax.inputs`) refuses, so that "
        "`dtnn screen shipped` predicts every entry (the list is also in the file's "
        "`removed_by_input_pass`):",
        "",
    )
    removed_text += "\n\n" + "\n".join(
        _wrap(f"{f['material_id']} ({f['formula']}), {f['encoder']}: {f['reason']}", "  ").replace(
            "  ", "- ", 1
        )
        for f in removed
    )
    frame_lines = "\n".join(
        f"| {t} | {rep.n_pass} / {rep.n_checked} | {rep.n_pass_at(0.05)} / {rep.n_checked} | "
        f"{rep.median_deviation:.2e} | "
        f"{rep.max_deviation:.2e} |"
        for t, rep in frame.items()
    )
    worst = "; ".join(
        f"{t}: " + ", ".join(f"{m} {d:.3f}" for m, d in rep.failures()[:4])
        for t, rep in frame.items()
    )
    n_el_fail = frame["electronic"].n_checked - frame["electronic"].n_pass
    sha_lines = "\n".join(f"| `{n}` | `{s}` |" for n, s in shas.items())
    flags = pool_meta["metal_flags"]
    counts = flags["counts"]
    n_piezo_labelled = pool_meta["labelled_rows_per_table"]["piezoelectric_tensor.csv"]
    n_pet, n_pet_cb = flags["petousis2017_records"], flags["petousis2017_charge_balanced"]
    gaps = [r.band_gap_ev for r in records]
    piezo_unbalanced = sorted(
        r["formula"] for r in pool if r["insulator_by_construction"] and not r["charge_balanced"]
    )
    n_piezo = sum("piezoelectric_tensor" in r["sources"] for r in pool)
    piezo_list = _wrap(", ".join(piezo_unbalanced), "  ")
    petousis_list = _wrap(", ".join(sorted(set(unbalanced))), "")
    n_ibc_only = counts["insulator_by_construction_not_charge_balanced"]
    n_both = counts["insulator_by_construction"] - n_ibc_only
    n_cb_only = counts["charge_balanced"] - n_both
    n_neither = counts["records"] - n_both - n_ibc_only - n_cb_only
    text = f"""# Provenance of the shipped data

Built by `experiments/prepare_data.py` (format version {FORMAT_VERSION}).

## Source

The PyPI source distribution `matminer=={MATMINER_VERSION}`
(`{SDIST_NAME}`, sha256 `{sdist_sha}`), which ships four Materials Project tables under
`matminer/datasets/` (later matminer versions download them at run time instead):

| file | sha256 |
|---|---|
{sha_lines}

Licences: matminer is BSD-3-Clause; the data are from the Materials Project,
licensed CC BY 4.0. Cite the papers below when using them.

## `petousis2017.json.gz` ({sizes[PETOUSIS_FILE]:,} bytes)

{EXPECTED_RECORDS:,} DFPT dielectric tensors (VASP, PBE) from
I. Petousis et al., "High-throughput screening of inorganic compounds for the discovery of
novel dielectric and optical materials", Sci. Data 4, 160134 (2017).

- structure: parsed from the `poscar` column (the DFPT cell); the tensors are in the
  Cartesian frame of this structure. Lattice rows in Angstrom, fractional coordinates
  rounded to 1e-6 (the POSCAR has 6 decimals).
- `e_electronic`, `e_total`: parsed from the Python-literal lists. The DFT tensors are
  slightly asymmetric (max |T - T^T|: electronic {asym["electronic"]:.3g}
  ({meta["max_abs_asymmetry_material_id"]["electronic"]}), total {asym["total"]:.3g}
  ({meta["max_abs_asymmetry_material_id"]["total"]}); max of |T - T^T| / max |T| over records:
  electronic {rel["electronic"]:.3g}, total {rel["total"]:.3g});
  they are symmetrised as (T + T^T)/2. `e_ionic = e_total - e_electronic`. Rounded to
  {TENSOR_DECIMALS} decimals (the source precision).
- `band_gap_ev`: the `band_gap` column (eV).
- space group number, symbol and crystal system: spglib via pymatgen `SpacegroupAnalyzer`
  with symprec = {SYMPREC_ANGSTROM} A on the POSCAR structure. Disagreements with the
  table's `space_group` column: {len(meta["spacegroup_mismatch_vs_table"])}
  ({"; ".join(meta["spacegroup_mismatch_vs_table"][:10]) or "none"}).

### Frame check

Each tensor averaged over the crystal's point-group operations in the Cartesian frame of
its structure (`dtnn_jax.data.frame_check`, symprec {SYMPREC_ANGSTROM} A); relative
deviation |T_avg - T|_F / max(|T|_F, 1), pass if < {FRAME_CHECK_TOL}:

| target | pass / checked | pass at tol 0.05 | median deviation | max deviation |
|---|---|---|---|---|
{frame_lines}

Worst records (target: id deviation): {worst}.

Reading: the failures are numerical noise of the DFPT ionic part, not frame changes. A
wrong frame would show in the electronic tensor too wherever it is anisotropic, yet among
the {n_ion_fail} ionic failures, those with a clearly anisotropic electronic tensor
(spread of eigenvalues / mean > 0.1: {n_aniso}) have electronic deviations of at most
{max_el_aniso:.1e}. The {n_el_fail} electronic failures are nearly isotropic tensors
(anisotropy <= {max_aniso_el_fail:.3f}) with deviations just above the tolerance.

## `screening_pool.json.gz` ({sizes[POOL_FILE]:,} bytes)

{len(pool):,} unlabeled structures: the union of `flla_2015.csv`, `elastic_tensor.csv` and
`piezoelectric_tensor.csv`, deduplicated by `material_id` and without the dielectric set's
ids. Structures from the pymatgen dict (`flla_2015`) or the `poscar` column (the others);
`e_above_hull_ev` known for {n_hull} (from `flla_2015`), else null.

{removed_text}

- F. Faber, A. Lindmaa, O. A. von Lilienfeld, R. Armiento, Int. J. Quantum Chem. 115,
  1094 (2015) (`flla_2015`).
- M. de Jong et al., "Charting the complete elastic properties of inorganic crystalline
  compounds", Sci. Data 2, 150009 (2015) (`elastic_tensor`).
- M. de Jong, W. Chen, H. Geerlings, M. Asta, K. A. Persson, "A database to enable
  discovery and design of piezoelectric materials", Sci. Data 2, 150053 (2015)
  (`piezoelectric_tensor`).

### Band gaps and likely metals

What the tables say about gaps or metallicity (every column inspected):

- `flla_2015.csv`: `material_id`, `formula` (element counts), `e_above_hull`, `nsites`,
  `structure` (pymatgen dict; site properties `forces`, `coordination_no`, `magmom`),
  `formation_energy_per_atom`, `formation_energy`. No gap.
- `elastic_tensor.csv`: `material_id`, `formula`, `nsites`, `space_group`, `volume`,
  `structure` (CIF), `poscar`, `kpoint_density`, the Voigt/Reuss/VRH moduli,
  `elastic_anisotropy`, `poisson_ratio`, `compliance_tensor`, `elastic_tensor`,
  `elastic_tensor_original`. No gap.
- `piezoelectric_tensor.csv`: `material_id`, `formula`, `nsites`, `space_group`,
  `point_group`, `volume`, `structure` (CIF), `poscar`, `piezoelectric_tensor`, `eij_max`,
  `v_max`, `meta` (the same fields again plus `kpoint_density`). No gap.
- `dielectric_constant.csv` has `band_gap` ({min(gaps):.2f} to {max(gaps):.2f} eV over its
  {n_pet:,} rows; its `meta` holds the DFPT INCAR), but its ids are the labelled set and
  are excluded from the pool.

So no shipped source gives a band gap for a pool entry: `band_gap_ev` is known for
{counts["band_gap_known"]} of the {len(pool):,} records and null for the rest (the field is
kept so that pools with gaps use the same record type). Each record carries two flags,
computed once here:

- `insulator_by_construction` ({counts["insulator_by_construction"]:,} records): in
  `piezoelectric_tensor` ({n_piezo:,} records), or a band gap > 0. Assumption, not found in
  the sdist (which has no selection notes): DFPT piezoelectric (and dielectric) tensors are
  only defined for crystals with a gap, and the Materials Project ran them on non-metals.
  The data do not fully bear this out: {len(piezo_unbalanced)} of these records fail the
  charge-balance test below. Most are insulators the test misses (perchlorates and other
  halogen oxyanions, half-Heusler semiconductors, N2, S, Te), but some look like
  intermetallics (e.g. LiPd, DyCu5, TbInCu4, Be5Au, GaAg2, DyInAu, TmCuPb). All of them:
{piezo_list}.
  {n_piezo_labelled} more `piezoelectric_tensor` rows are in the labelled set (not in the pool),
  all with a gap >= {min(gaps):.2f} eV there.
- `charge_balanced` ({counts["charge_balanced"]:,} records):
  `dtnn_jax.data.records.charge_balanced` of the composition (pymatgen
  {flags["pymatgen_version"]}). The reduced formula must admit oxidation states from
  pymatgen's ICSD lists (`Element.icsd_oxidation_states`, else `common_oxidation_states`)
  that sum to zero, with the elements split into cations and anions such that every anion
  is more electronegative than every cation by at least {flags["electronegativity_margin"]}
  (Pauling). Single elements are never charge-balanced. Exact bitset search, no time
  limit, so rebuilds are identical.

Classes: both flags {n_both:,}; only `insulator_by_construction` {n_ibc_only:,}; only
`charge_balanced` {n_cb_only:,}; neither {n_neither:,}. Likely metals
(`records.likely_metal`, given no gaps: not charge-balanced, or `records.intermetallic_like`,
i.e. without an N/O/F/Cl/Br/I/S/Se/Te/H anion but with a group 3-10 or f-block metal; the
piezoelectric subset does not override it, see above): {counts["likely_metal"]:,} records.

False-metal rate, measured on the {n_pet:,} Petousis 2017 crystals (all insulators, PBE gap
>= {min(gaps):.2f} eV): {n_pet_cb:,} / {n_pet:,} ({n_pet_cb / n_pet:.1%}) are charge-balanced,
so the rule would call {n_pet - n_pet_cb} ({(n_pet - n_pet_cb) / n_pet:.1%}) of known insulators
likely metals. Their formulas:

{petousis_list}.

The misses are peroxides and superoxides,
interhalogens and halogen oxyanions, Au compounds (no ICSD list for Au, Pauling 2.54),
Pt/Pd/Ir/Ru/Os hydrides and pnictides (formal charges against the Pauling order),
half-Heusler and Zintl antimonides/bismuthides, boron-rich borides, and a few tellurides
within the margin. The other way round, the rule calls charge-balanced metals insulators:
TiN, ZrN, NbC, TiO, NbO, RuO2, ReO3, SrVO3, NbSe2, Cu3Sb and the like (see the docstring).

## Rebuild

```
python experiments/prepare_data.py                 # pip download matminer==0.4.0 sdist
python experiments/prepare_data.py --sdist PATH    # or use a local copy
```

Output is deterministic (gzip mtime 0).
"""
    marker = "<!-- BEGIN labels"  # the section experiments/prepare_labels.py maintains
    if Path(path).exists() and marker in Path(path).read_text():
        old = Path(path).read_text()
        text = text.rstrip() + "\n\n" + old[old.index(marker) :]
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
