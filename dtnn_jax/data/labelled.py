"""Load a user's own labelled dielectric data from JSON, extended XYZ or CSV.

Every record is validated and every problem is collected before failing, so one run of
:func:`load_labelled` lists all bad records (by index and id); nothing is dropped silently.

Accepted per-record fields (JSON keys, CSV columns, or extxyz ``atoms.info`` keys):

- id: ``material_id`` or ``id`` (optional; defaults to ``"record-<index>"``).
- structure: JSON ``structure`` as a pymatgen ``Structure.as_dict()`` or a CIF / POSCAR
  string; CSV column ``cif``, ``poscar`` or ``structure`` (CIF or POSCAR text); extxyz:
  the frame itself (must be periodic with a cell).
- tensors (at least one): ``e_electronic``, ``e_ionic``, ``e_total`` (extxyz also
  ``dielectric_electronic``, ``dielectric_ionic``, ``dielectric_total``), each 3x3 nested
  or 9 numbers (row-major); CSV cells hold them as JSON lists. If exactly two are given,
  the third follows from total = electronic + ionic; if all three are given they must
  satisfy it.
- band gap (optional): ``band_gap_ev`` or ``band_gap`` in eV.
- Born effective charges (optional): ``born_charges`` (also ``becs``,
  ``born_effective_charges``), per atom in the structure's site order, [n_atoms][3][3] or
  [n_atoms][9] (row-major), in e, the first index the field direction; extxyz: a per-atom
  array ``born_charges`` or ``becs`` (9 columns) or the same key in ``atoms.info``. Kept
  on the record as ``born_charges`` [n_atoms, 3, 3].
- ``source`` and ``fidelity`` (optional): where the labels come from and their level of
  theory (one of ``dtnn_jax.data.records.FIDELITIES``; default ``""``).

Tensors must be finite and symmetric within ``ASYMMETRY_TOL`` (see below); they are then
symmetrised as (T + T^T)/2. Tensors are taken to be in the Cartesian frame of the
structure given beside them; check that with :func:`dtnn_jax.data.frame_check`.

Frame caution: a CIF stores only cell lengths and angles, not the orientation of the cell,
so a CIF-read structure is placed in pymatgen's convention (c along z, a in the xz plane).
A tensor computed in another Cartesian frame (e.g. a POSCAR with a along x for a
monoclinic or triclinic cell) then silently mismatches. Prefer POSCAR text, pymatgen
dicts or extxyz, which carry the lattice vectors, whenever the tensor is anisotropic.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from dtnn_jax.data.records import (
    FIDELITIES,
    SYMPREC_ANGSTROM,
    TARGETS,
    DielectricRecord,
    symmetry_of,
)
from dtnn_jax.errors import InputError

ASYMMETRY_TOL = 0.05
"""A tensor is accepted if max|T - T^T| <= ASYMMETRY_TOL * max(1, max|T|).

DFPT tensors are slightly asymmetric from numerical noise (up to 1.8 % of the largest
component in the shipped Petousis set); 5 % catches transposed or corrupted data.
"""

_TENSOR_KEYS = {
    t: (f"e_{t}", f"dielectric_{t}", f"epsilon_{t}") for t in TARGETS
}  # accepted key names per target
_ID_KEYS = ("material_id", "id")
_GAP_KEYS = ("band_gap_ev", "band_gap")
_BORN_KEYS = ("born_charges", "becs", "born_effective_charges")


def _parse_born(value: Any, n_atoms: int) -> np.ndarray:
    """[n_atoms, 3, 3] Born charges from nested lists, [n, 9] rows or a JSON string."""
    if isinstance(value, str):
        value = json.loads(value)
    z = np.asarray(value, dtype=np.float64)
    if z.size != 9 * n_atoms:
        raise ValueError(f"{z.size} numbers for {n_atoms} atoms (need {9 * n_atoms})")
    z = z.reshape(n_atoms, 3, 3)
    if not np.all(np.isfinite(z)):
        raise ValueError("non-finite values")
    return z


class DataValidationError(InputError):
    """Raised when labelled data fail validation; ``problems`` lists every failure.

    Attributes:
        problems: one line per problem, each naming the record (index and id).
    """

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in labelled data:\n{lines}")


def _first(mapping: dict[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value
    return None


def _structure_from_text(text: str) -> Structure:
    stripped = text.strip()
    if "_cell_length_a" in stripped or stripped.startswith("data_"):
        return Structure.from_str(stripped, fmt="cif")
    return Structure.from_str(stripped, fmt="poscar")


def _parse_structure(value: Any) -> Structure:
    if isinstance(value, Structure):
        return value
    if isinstance(value, dict):
        return Structure.from_dict(value)
    if isinstance(value, str):
        return _structure_from_text(value)
    raise TypeError(f"structure of type {type(value).__name__}")


def _validate(raw: list[dict[str, Any]], source: str, symprec: float) -> list[DielectricRecord]:
    """Turn raw entries into records, collecting every problem before raising."""
    problems: list[str] = []
    records: list[DielectricRecord] = []
    if not raw:
        raise DataValidationError(source, ["no records"])
    for index, entry in enumerate(raw):
        mid = _first(entry, _ID_KEYS)
        mid = str(mid) if mid is not None else f"record-{index}"
        where = f"record {index} (id {mid!r})"
        bad_before = len(problems)

        structure = None
        value = entry.get("structure")
        if value is None:
            problems.append(f"{where}: missing structure")
        else:
            try:
                structure = _parse_structure(value)
                if len(structure) == 0:
                    raise ValueError("no sites")
            except Exception as err:  # pymatgen raises many types for bad input
                problems.append(f"{where}: unparsable structure ({type(err).__name__}: {err})")
                structure = None

        tensors: dict[str, np.ndarray] = {}
        for target in TARGETS:
            value = _first(entry, _TENSOR_KEYS[target])
            if value is None:
                continue
            try:
                if isinstance(value, str):
                    value = json.loads(value)
                tensor = np.asarray(value, dtype=np.float64).reshape(3, 3)  # [3, 3]
            except (ValueError, TypeError) as err:
                problems.append(f"{where}: {target} tensor is not 3x3 or 9 numbers ({err})")
                continue
            if not np.all(np.isfinite(tensor)):
                problems.append(f"{where}: {target} tensor has non-finite values")
                continue
            asym = float(np.max(np.abs(tensor - tensor.T)))
            allowed = ASYMMETRY_TOL * max(1.0, float(np.max(np.abs(tensor))))
            if asym > allowed:
                problems.append(
                    f"{where}: {target} tensor asymmetric, max|T - T^T| = {asym:.3g} > "
                    f"{allowed:.3g} (tolerance {ASYMMETRY_TOL} x max(1, max|T|))"
                )
                continue
            tensors[target] = 0.5 * (tensor + tensor.T)
        if not tensors and len(problems) == bad_before:
            names = ", ".join(k for t in TARGETS for k in _TENSOR_KEYS[t][:2])
            problems.append(f"{where}: missing dielectric tensor (need one of {names})")
        if len(tensors) == 3:
            gap = np.max(np.abs(tensors["electronic"] + tensors["ionic"] - tensors["total"]))
            allowed = 1e-3 * max(1.0, float(np.max(np.abs(tensors["total"]))))
            if gap > allowed:
                problems.append(
                    f"{where}: total != electronic + ionic (max difference {gap:.3g} > "
                    f"{allowed:.3g})"
                )
        elif len(tensors) == 2:
            if "total" not in tensors:
                tensors["total"] = tensors["electronic"] + tensors["ionic"]
            elif "ionic" not in tensors:
                tensors["ionic"] = tensors["total"] - tensors["electronic"]
            else:
                tensors["electronic"] = tensors["total"] - tensors["ionic"]

        gap_value = _first(entry, _GAP_KEYS)
        band_gap = float("nan")
        if gap_value is not None:
            try:
                band_gap = float(gap_value)
                if not np.isfinite(band_gap) or band_gap < 0:
                    raise ValueError(gap_value)
            except (TypeError, ValueError):
                problems.append(f"{where}: band gap {gap_value!r} is not a finite number >= 0")

        born = None
        born_value = _first(entry, _BORN_KEYS)
        if born_value is not None and structure is not None:
            try:
                born = _parse_born(born_value, len(structure))
            except (ValueError, TypeError) as err:
                problems.append(f"{where}: born_charges unusable ({err})")
        fidelity = str(entry.get("fidelity", "") or "")
        if fidelity not in FIDELITIES:
            problems.append(f"{where}: unknown fidelity {fidelity!r}; expected one of {FIDELITIES}")

        if len(problems) > bad_before or structure is None:
            continue
        try:
            number, symbol, system = symmetry_of(structure, symprec)
        except Exception as err:
            problems.append(f"{where}: symmetry analysis failed ({err})")
            continue
        records.append(
            DielectricRecord(
                material_id=mid,
                formula=structure.composition.reduced_formula,
                structure=structure,
                e_electronic=tensors.get("electronic"),
                e_ionic=tensors.get("ionic"),
                e_total=tensors.get("total"),
                band_gap_ev=band_gap,
                spacegroup_number=number,
                spacegroup_symbol=symbol,
                crystal_system=system,
                source=str(entry.get("source", "user") or "user"),
                fidelity=fidelity,
                born_charges=born,
            )
        )
    if problems:
        raise DataValidationError(source, problems)
    return records


def _read_json(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, dict) and "records" in data:
        data = data["records"]
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise DataValidationError(str(path), ["expected a JSON list of objects (or {records})"])
    return data


def _read_extxyz(path: Path) -> list[dict[str, Any]]:
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    raw = []
    for atoms in ase.io.read(path, index=":", format="extxyz"):
        entry: dict[str, Any] = dict(atoms.info)
        for key in _BORN_KEYS:
            if key in atoms.arrays:
                entry[key] = np.asarray(atoms.arrays[key]).reshape(len(atoms), 9)
        if all(atoms.pbc) and atoms.cell.rank == 3:
            entry["structure"] = AseAtomsAdaptor.get_structure(atoms)
        else:
            entry["structure"] = f"not periodic in 3D (pbc={atoms.pbc.tolist()})"
        raw.append(entry)
    return raw


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    raw = []
    for row in rows:
        entry: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
        text = _first(row, ("cif", "poscar", "structure"))
        entry["structure"] = text
        raw.append(entry)
    return raw


def load_labelled(
    path: str | Path, symprec: float = SYMPREC_ANGSTROM, fmt: str | None = None
) -> list[DielectricRecord]:
    """Load and validate labelled dielectric data.

    Args:
        path: a ``.json`` / ``.json.gz``, ``.extxyz`` / ``.xyz`` or ``.csv`` file (see the
            module docstring for the fields).
        symprec: spglib tolerance (Angstrom) for space group and crystal system.
        fmt: ``"json"``, ``"extxyz"`` or ``"csv"``; default: from the file name.

    Returns:
        One :class:`DielectricRecord` per input record, in file order.

    Raises:
        DataValidationError: listing every invalid record by index and id.
    """
    path = Path(path)
    if fmt is None:
        name = path.name.lower()
        if name.endswith((".json", ".json.gz")):
            fmt = "json"
        elif name.endswith((".extxyz", ".xyz")):
            fmt = "extxyz"
        elif name.endswith(".csv"):
            fmt = "csv"
        else:
            raise ValueError(f"{path}: unknown format; use .json, .extxyz or .csv or pass fmt")
    readers = {"json": _read_json, "extxyz": _read_extxyz, "csv": _read_csv}
    if fmt not in readers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(readers)}")
    return _validate(readers[fmt](path), str(path), symprec)
