"""Reading and validating user structures: pymatgen, ASE, CIF, POSCAR, extxyz, JSON.

Every public entry point that takes crystals reads them through `as_structure` (inside the
single input pass, `dtnn_jax.inputs`), so every bad input gets the same kind of error: a
`StructureInputError` that names the input and the problem. Checks that need the neighbour
list (overlapping atoms, isolated atoms) are made where the graph is built, on the same
search (`dtnn_jax.graph.build_graph`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from pymatgen.core import Structure

from dtnn_jax.errors import InputError

# Largest crystal (atoms per structure) accepted by default: a guard against out-of-memory
# crashes deep in the encoder. Memory grows with the number of edges (about 27 per atom for
# oxides and halides at the 5 A cutoff), and a crystal is never split across batches.
# Raise it per call (``max_atoms=``) or here for bigger machines.
MAX_ATOMS = 2000

# A vacuum gap wider than this (angstrom) between atomic planes suggests a slab model or a
# molecule in a box, for which a bulk dielectric tensor is not defined. Bulk crystals stay
# well below it: at most 4.4 A over the 1,056 shipped Petousis crystals (the van der Waals
# gaps of layered BI3, MgI2, MoSe2); slab-like entries of the shipped pool have 8-20 A.
VACUUM_WARNING_ANGSTROM = 6.0

# Largest structure file read (MB), checked before any parsing: a parser fed a huge junk file
# takes tens of seconds and gigabytes before it fails. A CIF of 2,000 atoms (the size guard)
# is ~0.2 MB, a 64 MB extxyz holds ~8,000 frames of 100 atoms; split larger files, or raise
# it here.
MAX_FILE_MB = 64

NO_CELL = (
    "has no periodic cell (a molecule or a plain .xyz): a dielectric tensor needs a crystal; "
    'give the cell (extxyz: Lattice="..." pbc="T T T") or use a CIF/POSCAR'
)


class StructureInputError(InputError):
    """An input cannot be used as a crystal; the message names the input and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def _describe(obj: Any, index: int | None) -> str:
    if isinstance(obj, str | os.PathLike):
        return str(obj)
    label = getattr(obj, "formula", None) or type(obj).__name__
    return f"structure #{index} ({label})" if index is not None else f"structure ({label})"


def read_structure_file(path: str | os.PathLike) -> list[tuple[str | None, Structure | str]]:
    """Reads every crystal of a CIF, POSCAR/CONTCAR, extxyz or pymatgen-JSON file.

    Returns:
        ``(label, structure_or_reason)`` per crystal, in file order. ``label`` is None for a
        file with one crystal; otherwise the CIF block name or the frame index (extxyz,
        JSON lists), so results can be named ``path#label``. A crystal that cannot be
        read (one CIF block, one frame without a cell) gives the reason instead of a
        Structure, so the others are still read.

    Raises:
        StructureInputError: the file is missing, empty, unparsable or holds no crystal.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise StructureInputError(source, "file not found")
    if path.is_dir():
        raise StructureInputError(source, "is a directory, expected a structure file")
    size = path.stat().st_size
    if size == 0:
        raise StructureInputError(source, "file is empty")
    if size > MAX_FILE_MB * 1e6:
        raise StructureInputError(
            source,
            f"too large for a structure file: {size / 1e6:.0f} MB, over the {MAX_FILE_MB} MB "
            "limit (a 2,000-atom CIF is ~0.2 MB); not read. Split it, or raise "
            "dtnn_jax.io.MAX_FILE_MB",
        )
    name = path.name.lower()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name.endswith((".json", ".json.gz")):
                entries = _read_json_structures(path)
            elif name.endswith((".xyz", ".extxyz")):
                from ase.io import read as ase_read

                frames = ase_read(path, index=":", format="extxyz")
                entries = [(str(k), _periodic_structure(a)) for k, a in enumerate(frames)]
            elif name.endswith(".cif"):
                entries = _read_cif_blocks(path)
            else:
                entries = [(None, Structure.from_file(path))]
    except StructureInputError:
        raise
    except Exception as err:
        raise StructureInputError(
            source, f"could not parse ({type(err).__name__}: {printable(str(err))})"
        ) from err
    if not entries:
        raise StructureInputError(source, "no structure found in the file")
    if len(entries) == 1:
        return [(None, entries[0][1])]
    return entries


def _read_json_structures(path: Path) -> list[tuple[str | None, Structure | str]]:
    """A pymatgen Structure dict, or a list of them."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    items = data if isinstance(data, list) else [data]
    return [(str(k), Structure.from_dict(d)) for k, d in enumerate(items)]


def _read_cif_blocks(path: Path) -> list[tuple[str | None, Structure | str]]:
    """One entry per CIF data block, named by the block; a bad block gives its reason."""
    from pymatgen.io.cif import CifFile, CifParser

    blocks = CifFile.from_file(path).data
    if not blocks:
        raise ValueError("no CIF data block found")
    out: list[tuple[str | None, Structure | str]] = []
    for name, block in blocks.items():
        try:
            structures = CifParser.from_str(str(block)).parse_structures(primitive=False)
            if not structures:
                raise ValueError("no structure in this block")
            out.append((name, structures[0]))
        except Exception as err:  # pymatgen raises many types for a bad block
            out.append((name, f"could not parse ({type(err).__name__}: {printable(str(err))})"))
    return out


def _periodic_structure(atoms: Atoms) -> Structure | str:
    """A Structure from ASE Atoms, or the reason it has none (no periodic cell)."""
    return NO_CELL if _has_no_cell(atoms) else _from_ase(atoms)


def printable(text: str, limit: int = 300) -> str:
    """``text`` with control and undecodable characters escaped, cut to ``limit`` characters.

    Error messages quote what a parser choked on; binary garbage must not reach the
    terminal raw.
    """
    cleaned = "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in text.replace("\ufffd", "?")
    )
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def _has_no_cell(atoms: Atoms) -> bool:
    return not np.any(atoms.pbc) or abs(np.linalg.det(np.asarray(atoms.cell[:]))) < 1e-8


def _from_ase(atoms) -> Structure:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


def as_structure(obj: Any, index: int | None = None, max_atoms: int | None = None) -> Structure:
    """Converts a Structure, ASE Atoms or a file path to a validated pymatgen Structure.

    ``max_atoms`` (default: the module's `MAX_ATOMS` at call time) is the size guard of
    `validate_structure`.
    """
    source = _describe(obj, index)
    if isinstance(obj, Structure):
        structure = obj
    elif isinstance(obj, str | os.PathLike):
        entries = read_structure_file(obj)
        if len(entries) > 1:
            raise StructureInputError(
                source,
                f"holds {len(entries)} structures; read them with read_structure_file (the "
                "input pass, dtnn_jax.inputs.prepare_inputs, predicts every one)",
            )
        structure = entries[0][1]
        if isinstance(structure, str):
            raise StructureInputError(source, structure)
    elif isinstance(obj, Atoms):
        if _has_no_cell(obj):
            raise StructureInputError(source, NO_CELL)
        try:
            structure = _from_ase(obj)
        except Exception as err:
            raise StructureInputError(source, f"could not convert ASE Atoms: {err}") from err
    else:
        raise StructureInputError(
            source,
            f"unsupported input type {type(obj).__name__}: expected a pymatgen Structure, "
            "an ASE Atoms or a path to a CIF/POSCAR/extxyz/JSON file",
        )
    validate_structure(structure, source, max_atoms=max_atoms)
    return structure


def validate_structure(
    structure: Structure, source: str = "structure", max_atoms: int | None = None
) -> None:
    """Raises `StructureInputError` for crystals no model can use.

    Checks: at least one atom and at most ``max_atoms`` (default `MAX_ATOMS`, read at call
    time); ordered sites with a single element each; finite coordinates and lattice; a
    non-degenerate cell. Overlapping atoms (closer than
    `dtnn_jax.graph.MIN_INTERATOMIC_DISTANCE_ANGSTROM`, periodic images included) are found
    on the neighbour list when the graph is built.
    """
    if len(structure) == 0:
        raise StructureInputError(source, "the structure has no atoms")
    limit = MAX_ATOMS if max_atoms is None else int(max_atoms)
    if len(structure) > limit:
        raise StructureInputError(
            source,
            f"too large: {len(structure)} atoms exceed the limit of {limit} atoms per structure "
            "(memory guard; raise it with max_atoms= or dtnn_jax.io.MAX_ATOMS)",
        )
    if not structure.is_ordered:
        raise StructureInputError(
            source, "disordered (partial-occupancy) sites are not supported; order it first"
        )
    lattice = structure.lattice.matrix
    coords = structure.cart_coords
    if not (np.all(np.isfinite(lattice)) and np.all(np.isfinite(coords))):
        raise StructureInputError(source, "non-finite numbers (nan/inf) in lattice or coordinates")
    volume = abs(float(np.linalg.det(lattice)))
    if volume < 1e-3 or volume / len(structure) < 0.1:
        raise StructureInputError(
            source, f"degenerate lattice: cell volume {volume:.4g} A^3 for {len(structure)} atoms"
        )


def vacuum_gap_angstrom(structure: Structure) -> float:
    """The widest empty slab between atomic planes along any lattice direction (angstrom).

    Along lattice vector i, the atoms' fractional coordinates are sorted (periodically) and
    the largest gap is converted to a distance with the interplanar spacing V / |a_j x a_k|.
    """
    lattice = structure.lattice.matrix  # [3, 3] rows
    volume = abs(float(np.linalg.det(lattice)))
    frac = np.mod(structure.frac_coords, 1.0)  # [n_atoms, 3]
    widest = 0.0
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        spacing = volume / float(np.linalg.norm(np.cross(lattice[j], lattice[k])))
        x = np.sort(frac[:, i])
        gaps = np.diff(np.concatenate([x, [x[0] + 1.0]]))
        widest = max(widest, float(gaps.max()) * spacing)
    return widest


def vacuum_warning(structure: Structure) -> str | None:
    """A warning when the structure looks like a slab or a molecule in a box, else None."""
    gap = vacuum_gap_angstrom(structure)
    if gap <= VACUUM_WARNING_ANGSTROM:
        return None
    return (
        f"a vacuum gap of {gap:.1f} A (> {VACUUM_WARNING_ANGSTROM} A): a slab or a molecule "
        "in a box? A bulk dielectric tensor is not defined there; the prediction treats it as "
        "a bulk crystal"
    )


def check_elements(structure: Structure, supported_z: Iterable[int], source: str, model: str):
    """Raises `StructureInputError` if the structure has an element the model does not know."""
    supported = set(int(z) for z in supported_z)
    missing = sorted({site.specie.symbol for site in structure if site.specie.Z not in supported})
    if missing:
        raise StructureInputError(
            source, f"unsupported element(s) {', '.join(missing)} for {model}"
        )
