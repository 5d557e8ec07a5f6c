"""Loaders for the data shipped with the package (built by ``experiments/prepare_data.py``)."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

from dtnn_jax.data.records import (
    FIDELITY_MP_PBE,
    INSULATOR_SOURCES,
    DielectricRecord,
    PoolRecord,
    structure_from_compact,
)

DATA_DIR = Path(__file__).parent
FORMAT_VERSION = 1
PETOUSIS_FILE = "petousis2017.json.gz"
POOL_FILE = "screening_pool.json.gz"


def read_payload(path: Path) -> dict[str, Any]:
    """The JSON payload of a shipped ``.json.gz`` file, with its format version checked."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        payload = json.load(f)
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: data format version {version}, this dtnn_jax reads {FORMAT_VERSION}; "
            "rebuild with experiments/prepare_data.py"
        )
    return payload


@functools.lru_cache(maxsize=4)
def _petousis_cached(path: Path) -> tuple[DielectricRecord, ...]:
    payload = read_payload(path)
    return tuple(
        DielectricRecord(
            material_id=r["material_id"],
            formula=r["formula"],
            structure=structure_from_compact(r["structure"]),
            e_electronic=r["e_electronic"],
            e_ionic=r["e_ionic"],
            e_total=r["e_total"],
            band_gap_ev=float(r["band_gap_ev"]),
            spacegroup_number=int(r["spacegroup_number"]),
            spacegroup_symbol=r["spacegroup_symbol"],
            crystal_system=r["crystal_system"],
            source="petousis2017",
            fidelity=FIDELITY_MP_PBE,
        )
        for r in payload["records"]
    )


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def pool_record_from_json(r: dict[str, Any]) -> PoolRecord:
    """A `PoolRecord` from one record of ``screening_pool.json.gz``.

    Files written before the metal flags existed (same format version, no ``band_gap_ev``,
    ``charge_balanced`` or ``insulator_by_construction`` keys) still load: the gap is NaN,
    ``charge_balanced`` None (computed on demand by ``PoolRecord.likely_metal``) and
    ``insulator_by_construction`` is derived from the sources.
    """
    sources = tuple(r["sources"])
    gap = _float_or_nan(r.get("band_gap_ev"))
    by_construction = r.get("insulator_by_construction")
    if by_construction is None:
        by_construction = any(s in INSULATOR_SOURCES for s in sources) or gap > 0
    balanced = r.get("charge_balanced")
    return PoolRecord(
        material_id=r["material_id"],
        formula=r["formula"],
        structure=structure_from_compact(r["structure"]),
        e_above_hull_ev=_float_or_nan(r["e_above_hull_ev"]),
        sources=sources,
        band_gap_ev=gap,
        charge_balanced=None if balanced is None else bool(balanced),
        insulator_by_construction=bool(by_construction),
    )


@functools.lru_cache(maxsize=4)
def _pool_cached(path: Path) -> tuple[PoolRecord, ...]:
    payload = read_payload(path)
    return tuple(pool_record_from_json(r) for r in payload["records"])


def load_petousis2017(path: str | Path | None = None) -> list[DielectricRecord]:
    """The 1,056 DFPT dielectric tensors of Petousis et al., Sci. Data 4, 160134 (2017).

    Tensors are symmetric, in the Cartesian frame of each record's structure;
    ``e_ionic = e_total - e_electronic``. Parsed once per process and cached; each call
    returns a new list of the same (frozen) records. Do not mutate the structures.

    Args:
        path: a file written by ``experiments/prepare_data.py``; default: the shipped one.
    """
    return list(_petousis_cached(Path(path) if path else DATA_DIR / PETOUSIS_FILE))


def load_screening_pool(path: str | Path | None = None) -> list[PoolRecord]:
    """About 5,000 unlabeled Materials Project structures for screening (cached).

    None has a known band gap; each carries the precomputed ``charge_balanced`` and
    ``insulator_by_construction`` flags behind ``PoolRecord.likely_metal`` (see
    ``dtnn_jax.data.records.charge_balanced`` and ``PROVENANCE.md``).

    Args:
        path: a file written by ``experiments/prepare_data.py``; default: the shipped one.
    """
    return list(_pool_cached(Path(path) if path else DATA_DIR / POOL_FILE))


def clear_cache() -> None:
    """Forget parsed shipped files (after rebuilding them)."""
    _petousis_cached.cache_clear()
    _pool_cached.cache_clear()
