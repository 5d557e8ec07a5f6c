"""Loaders for the public DFT label sets beyond Petousis 2017 (built by
``experiments/prepare_labels.py``; provenance in ``dtnn_jax/data/PROVENANCE.md``).

* `load_phonondb2018`: Togo's phonondb 2018-04-17 crystals with a BORN file (VASP, PBEsol;
  CC BY 4.0): eps_inf, per-atom Z*, Gamma frequencies and, where the DFT force constants
  are stable at Gamma, the DFT ionic tensor (so ``e_total = e_electronic + e_ionic``).
* `load_phonondb2018_phonons`: the Gamma frequencies of every phonondb crystal that gave
  force constants (with or without BORN), as `PhononRecord`s.
* `load_phonondb2018_force_constants`: the DFT Gamma force-constant matrices K of the
  BORN crystals (float32 on disk), loaded lazily on first call.
* `load_e3nn_models`: the 1,520 crystals of ``shiangfang/e3nn-models`` (eps_inf, Z*; MIT);
  the level of theory is not documented there, so they are for validation only.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np

from dtnn_jax.data.records import (
    FIDELITY_UNVERIFIED,
    FIDELITY_VASP_PBESOL,
    DielectricRecord,
    PhononRecord,
    structure_from_compact,
)
from dtnn_jax.data.shipped import DATA_DIR, read_payload

PHONONDB_FILE = "phonondb2018.json.gz"
PHONONDB_PHONONS_FILE = "phonondb2018_phonons.json.gz"
PHONONDB_FC_FILE = "phonondb2018_force_constants.npz"
E3NN_FILE = "e3nn_models.json.gz"

SOURCE_PETOUSIS = "petousis2017"
SOURCE_PHONONDB = "phonondb2018"
SOURCE_E3NN = "e3nn_models"
VALIDATION_ONLY_SOURCES: tuple[str, ...] = (SOURCE_E3NN,)
"""Sources whose provenance is not pinned: never in the default training set."""


def _optional(r: dict[str, Any], key: str):
    value = r.get(key)
    return None if value is None else np.asarray(value, np.float64)


def record_from_json(r: dict[str, Any], source: str, fidelity: str) -> DielectricRecord:
    """A `DielectricRecord` from one record of a shipped label file.

    ``e_total`` is ``e_electronic + e_ionic`` where both are present.
    """
    electronic = _optional(r, "e_electronic")
    ionic = _optional(r, "e_ionic")
    total = _optional(r, "e_total")
    if total is None and electronic is not None and ionic is not None:
        total = electronic + ionic
    born = _optional(r, "born_charges")
    frequencies = _optional(r, "gamma_frequencies_cm1")
    return DielectricRecord(
        material_id=r["material_id"],
        formula=r["formula"],
        structure=structure_from_compact(r["structure"]),
        e_electronic=electronic,
        e_ionic=ionic,
        e_total=total,
        band_gap_ev=float("nan"),
        spacegroup_number=int(r.get("spacegroup_number", 0)),
        spacegroup_symbol=r.get("spacegroup_symbol", ""),
        crystal_system=r.get("crystal_system", ""),
        source=source,
        fidelity=fidelity,
        born_charges=None if born is None else born.reshape(-1, 3, 3),
        gamma_frequencies_cm1=frequencies,
        flags=tuple(r.get("flags", ())),
    )


@functools.lru_cache(maxsize=4)
def _records_cached(path: Path, source: str, fidelity: str) -> tuple[DielectricRecord, ...]:
    payload = read_payload(path)
    return tuple(record_from_json(r, source, fidelity) for r in payload["records"])


def load_phonondb2018(path: str | Path | None = None) -> list[DielectricRecord]:
    """The phonondb 2018 crystals with BORN (VASP PBEsol), as `DielectricRecord`s.

    Each has ``material_id`` (the mp-id), ``e_electronic`` (eps_inf), ``born_charges``
    ([n_atoms, 3, 3], e, first index the field direction, in the record structure's atom
    order and frame: phonopy's primitive cell of the archive), ``gamma_frequencies_cm1``
    and, unless the DFT force constants have an imaginary optical mode at Gamma (then
    ``"unstable_gamma"`` is in ``flags``), ``e_ionic`` (the harmonic DFT ionic tensor
    ``4 pi e^2 / Omega Z Kinv Z^T``) and ``e_total``. ``source="phonondb2018"``,
    ``fidelity="vasp_pbesol"``; no band gap (NaN). Near-metals (eps_inf > 100) are not
    shipped. Cached per process.

    Args:
        path: a file written by ``experiments/prepare_labels.py``; default: the shipped one.
    """
    path = Path(path) if path else DATA_DIR / PHONONDB_FILE
    return list(_records_cached(path, SOURCE_PHONONDB, FIDELITY_VASP_PBESOL))


def load_e3nn_models(path: str | Path | None = None) -> list[DielectricRecord]:
    """The 1,520 crystals of ``shiangfang/e3nn-models`` (eps_inf and Z*), validation only.

    No ids (``material_id`` is ``"e3nn-<frame index>"``), ``fidelity="unverified"``: the
    repository does not say how they were computed (see ``PROVENANCE.md`` for the evidence
    that they are Petretto et al. 2018, ABINIT PBEsol, and why it is not taken as pinned).
    Born charges are [n_atoms, 3, 3] with the first index the field direction.
    """
    path = Path(path) if path else DATA_DIR / E3NN_FILE
    return list(_records_cached(path, SOURCE_E3NN, FIDELITY_UNVERIFIED))


@functools.lru_cache(maxsize=2)
def _phonons_cached(path: Path) -> tuple[PhononRecord, ...]:
    payload = read_payload(path)
    return tuple(
        PhononRecord(
            material_id=r["material_id"],
            formula=r["formula"],
            structure=structure_from_compact(r["structure"]),
            gamma_frequencies_cm1=np.asarray(r["gamma_frequencies_cm1"], np.float64),
            source=SOURCE_PHONONDB,
            fidelity=FIDELITY_VASP_PBESOL,
            has_born=bool(r["has_born"]),
        )
        for r in payload["records"]
    )


def load_phonondb2018_phonons(path: str | Path | None = None) -> list[PhononRecord]:
    """DFT Gamma frequencies of every phonondb 2018 crystal that gave force constants.

    For scoring a potential's Gamma K against DFT on thousands of crystals: each
    `PhononRecord` holds the primitive cell (the frame and atom order of the frequencies'
    force constants) and ``gamma_frequencies_cm1`` [3 n_atoms] (negative = imaginary).
    """
    path = Path(path) if path else DATA_DIR / PHONONDB_PHONONS_FILE
    return list(_phonons_cached(path))


@functools.lru_cache(maxsize=2)
def _force_constants_cached(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        ids = [str(x) for x in data["material_ids"]]
        n_atoms = data["n_atoms"]
        dims = 3 * n_atoms.astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(dims * (dims + 1) // 2)])
        flat = data["force_constants"]  # lower triangles (K is symmetric), row-major
        out = {}
        for i, material_id in enumerate(ids):
            n = int(dims[i])
            k = np.zeros((n, n))
            k[np.tril_indices(n)] = flat[offsets[i] : offsets[i + 1]]
            k = k + np.tril(k, -1).T
            k.setflags(write=False)
            out[material_id] = k
    return out


def load_phonondb2018_force_constants(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """DFT Gamma force constants K [3N, 3N] (eV/A^2) of the phonondb BORN crystals, by mp-id.

    Same atom order and frame as the structures of `load_phonondb2018` (row
    ``3 * atom + direction``); stored as float32 lower triangles (relative rounding ~ 1e-7),
    returned as full, symmetric, read-only float64. Loaded on first call and cached.
    """
    return dict(_force_constants_cached(Path(path) if path else DATA_DIR / PHONONDB_FC_FILE))


def parse_e3nn_extxyz(
    text: str, near_metal_eps: float | None = None
) -> tuple[list[dict[str, Any]], dict[str, list[str]], int]:
    """Records (the shipped JSON layout) from the text of e3nn-models'
    ``phonon_becs_epsilon.xyz``: ``eps`` (9 numbers, eps_inf) in each frame's info, ``becs``
    (9 numbers per atom) as a per-atom array, stored with the first index the field
    direction (checked against phonondb's BORN charges on 8 structure-matched crystals with
    strongly asymmetric Z*: the stored order matches, the transpose does not).

    Frames with non-finite tensors or eps_inf above ``near_metal_eps`` (default
    `dtnn_jax.data.phonondb.NEAR_METAL_EPS_INF`) are skipped, by reason.

    Returns:
        (records, {reason: [ids]}, number of frames); ids are ``"e3nn-<frame index>"``.
    """
    import ase.io
    from pymatgen.core import Lattice, Structure

    from dtnn_jax.data.phonondb import NEAR_METAL_EPS_INF
    from dtnn_jax.data.records import structure_to_compact

    limit = NEAR_METAL_EPS_INF if near_metal_eps is None else near_metal_eps
    frames = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    records: list[dict[str, Any]] = []
    skipped: dict[str, list[str]] = {"near_metal": [], "non_finite_tensor": []}
    for i, atoms in enumerate(frames):
        key = f"e3nn-{i}"
        eps = np.asarray(atoms.info["eps"], np.float64).reshape(3, 3)
        eps = 0.5 * (eps + eps.T)
        becs = np.asarray(atoms.arrays["becs"], np.float64).reshape(-1, 3, 3)
        if not (np.all(np.isfinite(eps)) and np.all(np.isfinite(becs))):
            skipped["non_finite_tensor"].append(key)
            continue
        if np.linalg.eigvalsh(eps)[-1] > limit:
            skipped["near_metal"].append(key)
            continue
        structure = Structure(
            Lattice(np.asarray(atoms.cell[:], np.float64)),
            atoms.get_chemical_symbols(),
            atoms.positions,
            coords_are_cartesian=True,
        )
        records.append(
            {
                "material_id": key,
                "formula": structure.composition.reduced_formula,
                "structure": structure_to_compact(structure),
                "e_electronic": np.round(eps, 6).tolist(),
                "born_charges": np.round(becs.reshape(-1, 9), 5).tolist(),
            }
        )
    return records, skipped, len(frames)


def clear_cache() -> None:
    """Forget parsed label files (after rebuilding them)."""
    _records_cached.cache_clear()
    _phonons_cached.cache_clear()
    _force_constants_cached.cache_clear()
