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

# Largest crystal (atoms per structure) accepted by default: a guard against out-of-memory
# crashes deep in the encoder. Memory grows with the number of edges (about 27 per atom for
# oxides and halides at the 5 A cutoff), and a crystal is never split across batches.
# Raise it per call (``max_atoms=``) or here for bigger machines.
MAX_ATOMS = 2000


class StructureInputError(ValueError):
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


def read_structure_file(path: str | os.PathLike) -> Structure:
    """Reads one crystal from a CIF, POSCAR/CONTCAR, extxyz or pymatgen-JSON file."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise StructureInputError(source, "file not found")
    if path.is_dir():
        raise StructureInputError(source, "is a directory, expected a structure file")
    if path.stat().st_size == 0:
        raise StructureInputError(source, "file is empty")
    name = path.name.lower()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name.endswith(".json") or name.endswith(".json.gz"):
                with open(path) as f:
                    return Structure.from_dict(json.load(f))
            if name.endswith((".xyz", ".extxyz")):
                from ase.io import read as ase_read

                return _from_ase(ase_read(path, index=0, format="extxyz"))
            if name.endswith(".cif"):
                from pymatgen.io.cif import CifParser

                structures = CifParser(path).parse_structures(primitive=False)
                if not structures:
                    raise ValueError("no structure found in the CIF")
                return structures[0]
            return Structure.from_file(path)
    except StructureInputError:
        raise
    except Exception as err:
        raise StructureInputError(source, f"could not parse ({type(err).__name__}: {err})") from err


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
        structure = read_structure_file(obj)
    elif isinstance(obj, Atoms):
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


def check_elements(structure: Structure, supported_z: Iterable[int], source: str, model: str):
    """Raises `StructureInputError` if the structure has an element the model does not know."""
    supported = set(int(z) for z in supported_z)
    missing = sorted({site.specie.symbol for site in structure if site.specie.Z not in supported})
    if missing:
        raise StructureInputError(
            source, f"unsupported element(s) {', '.join(missing)} for {model}"
        )
