"""Screening pools and what is known about their crystals: structures, ids, band gaps.

A pool is a directory of structure files, ``"shipped"`` (the unlabeled Materials Project
structures shipped with the package), or any iterable of crystals; `pool_items` turns each
into `dtnn_jax.inputs.InputItem`s lazily. Band gaps come from the pool's own records or a CSV
(`read_band_gaps`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path

from dtnn_jax.errors import InputError
from dtnn_jax.inputs import InputItem, input_item, structure_files


class BandGapFileError(InputError):
    """A band-gap CSV is unusable; the message names the file, the line and the problem."""


def read_band_gaps(path: str | os.PathLike) -> dict[str, float]:
    """Band gaps from a CSV with columns ``id`` and ``band_gap_ev`` (other columns ignored).

    ``id`` is a material id or a structure file's name or stem. Raises `BandGapFileError`
    for a missing file or column, an empty table, a duplicate id, or a gap that is not a
    finite number >= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise BandGapFileError(f"{path}: band-gap file not found")
    gaps: dict[str, float] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in ("id", "band_gap_ev") if c not in columns]
            if missing:
                raise BandGapFileError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected a header with "
                    f"'id' and 'band_gap_ev', got {columns or 'no header'}"
                )
            reader.fieldnames = columns
            for line, row in enumerate(reader, start=2):
                ident = (row.get("id") or "").strip()
                raw = (row.get("band_gap_ev") or "").strip()
                if not ident:
                    raise BandGapFileError(f"{path}, line {line}: empty id")
                try:
                    gap = float(raw)
                except ValueError:
                    raise BandGapFileError(
                        f"{path}, line {line} ({ident}): band_gap_ev {raw!r} is not a number"
                    ) from None
                if not math.isfinite(gap) or gap < 0:
                    raise BandGapFileError(
                        f"{path}, line {line} ({ident}): band_gap_ev must be a finite number >= 0 "
                        f"(eV), got {raw}"
                    )
                if ident in gaps:
                    raise BandGapFileError(f"{path}, line {line}: duplicate id {ident!r}")
                gaps[ident] = gap
    except UnicodeDecodeError as err:
        raise BandGapFileError(f"{path}: not a text (UTF-8) CSV file ({err.reason})") from None
    if not gaps:
        raise BandGapFileError(f"{path}: no band gaps (the table is empty)")
    return gaps


def pool_items(pool) -> tuple[Iterator[InputItem], int | None]:
    """Iterates a pool lazily; returns (items, size if known).

    ``pool`` is a directory of structure files, ``"shipped"`` (the shipped unlabeled pool),
    or an iterable of `PoolRecord`/`DielectricRecord`-like objects (``.structure`` and
    ``.material_id``), `InputItem`, pymatgen Structures or file paths.
    """
    if isinstance(pool, str) and pool == "shipped":
        from dtnn_jax.data import load_screening_pool

        pool = load_screening_pool()
    elif isinstance(pool, str | os.PathLike):
        files = structure_files(pool)
        return (input_item(p, i) for i, p in enumerate(files)), len(files)
    size = len(pool) if hasattr(pool, "__len__") else None
    return (input_item(obj, i) for i, obj in enumerate(pool)), size
