"""The single input pass: user crystals -> validated neighbour graphs at an encoder's cutoff.

Every way from a user's crystal to an encoder (`predict`, `dtnn screen`, `featurize`,
training) goes through `prepare_inputs`, once per crystal. It

1. reads the file (CIF, POSCAR, extxyz, JSON) or converts the object (`dtnn_jax.io`);
2. validates the structure (size, order, finite numbers, a cell with volume);
3. checks the elements against the encoder;
4. builds the periodic neighbour graph at the encoder's cutoff with one neighbour search,
   which also rejects overlapping atoms (closer than
   `dtnn_jax.graph.MIN_INTERATOMIC_DISTANCE_ANGSTROM`) and atoms without a neighbour.

Its result, a `CrystalInput`, holds the graph the encoder sees, or the reason there is none;
a bad crystal never stops the others. A file holding several crystals (a multi-frame extxyz,
a multi-block CIF, a JSON list) gives one `CrystalInput` per crystal, named ``path#k`` (the
frame index) or ``path#block`` (the CIF block name). A structure that looks like a slab or a
molecule in a box is predicted with a warning (`dtnn_jax.io.vacuum_warning`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jraph
from ase import Atoms
from pymatgen.core import Structure

from dtnn_jax.errors import InputError
from dtnn_jax.graph import GraphConstructionError, graph_from_structure
from dtnn_jax.io import (
    StructureInputError,
    as_structure,
    check_elements,
    read_structure_file,
    vacuum_warning,
    validate_structure,
)

# Suffixes stripped to turn a structure file name into an id ("mp-149.cif" -> "mp-149").
STRUCTURE_SUFFIXES = (".json.gz", ".json", ".cif", ".vasp", ".poscar", ".extxyz", ".xyz")


@dataclasses.dataclass(frozen=True)
class InputItem:
    """One user input before it is read: a structure object or a file, and its names.

    Attributes:
        obj: a pymatgen Structure, an ASE Atoms or a path to a structure file.
        id: the row id in results (file stem, material id, or ``#index``).
        source: how messages name it (the path, or ``#index (formula)``).
        aliases: other names a side table (e.g. band gaps) may use for it.
        info: what is already known about it (e.g. band gap, e_above_hull, sources).
        position: its index among the inputs of the call or pool (-1 if unknown).
    """

    obj: Any
    id: str
    source: str
    aliases: tuple[str, ...] = ()
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    position: int = -1


@dataclasses.dataclass(frozen=True)
class CrystalInput:
    """One crystal after the input pass: its graph, or why it has none.

    Attributes:
        id, source, aliases, info: from its `InputItem`.
        structure: the validated Structure (None if it could not be read).
        graph: the single-crystal neighbour graph at the encoder's cutoff (None on error).
        error: None, or the reason the crystal cannot be used.
        warning: None, or why the prediction may not mean what it seems (e.g. vacuum).
        position: the index of the input it came from (a file with several crystals gives
            several crystals of one position).
    """

    id: str
    source: str
    structure: Structure | None = None
    graph: jraph.GraphsTuple | None = None
    error: str | None = None
    aliases: tuple[str, ...] = ()
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    warning: str | None = None
    position: int = -1

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def formula(self) -> str:
        """The formula the input's record gives, else the structure's reduced formula."""
        if self.info.get("formula"):
            return str(self.info["formula"])
        if self.structure is not None:
            with warnings.catch_warnings():  # pymatgen warns about Pauling X of noble gases
                warnings.simplefilter("ignore")
                return self.structure.composition.reduced_formula
        return ""

    @property
    def elements(self) -> list[str]:
        """Sorted element symbols ([] if unknown)."""
        if self.structure is None:
            return []
        return sorted({el.symbol for el in self.structure.composition.elements})


def structure_id(path: str | os.PathLike) -> str:
    """The id of a structure file: its name without a known structure suffix."""
    name = Path(path).name
    for suffix in STRUCTURE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def is_structure_file_name(name: str) -> bool:
    """Whether a file name looks like a structure file: a known suffix, or POSCAR/CONTCAR."""
    lower = name.lower()
    return lower.endswith(STRUCTURE_SUFFIXES) or any(key in lower for key in ("poscar", "contcar"))


@dataclasses.dataclass(frozen=True)
class DirectoryScan:
    """What a directory of structure files holds.

    Attributes:
        files: the structure files, in name order.
        skipped: other regular files (README.txt, a CSV, ...), not read.
        subdirectories: directories inside it, not descended into.
    """

    files: list[Path]
    skipped: list[Path]
    subdirectories: list[Path]


def scan_directory(directory: str | os.PathLike) -> DirectoryScan:
    """Sorts a directory's visible entries into structure files, other files, directories."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory of structure files")
    entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file() and is_structure_file_name(p.name)]
    skipped = [p for p in entries if p.is_file() and not is_structure_file_name(p.name)]
    return DirectoryScan(files, skipped, [p for p in entries if p.is_dir()])


def structure_files(directory: str | os.PathLike) -> list[Path]:
    """The structure files of ``directory`` in name order (see `scan_directory`)."""
    return scan_directory(directory).files


def _formula(obj) -> str:
    formula = getattr(obj, "formula", None)
    if formula is None and isinstance(obj, Atoms):
        formula = obj.get_chemical_formula()
    return formula or ""


def input_item(obj: Any, index: int) -> InputItem:
    """Names an input: paths by their path, records by material id, others by position."""
    if isinstance(obj, InputItem):
        return obj if obj.position >= 0 else dataclasses.replace(obj, position=index)
    if isinstance(obj, str | os.PathLike):
        path = Path(obj)
        return InputItem(obj, structure_id(path), str(obj), aliases=(path.name,), position=index)
    if hasattr(obj, "structure") and hasattr(obj, "material_id"):
        known = (
            "formula",
            "band_gap_ev",
            "e_above_hull_ev",
            "sources",
            "charge_balanced",
            "insulator_by_construction",
        )
        info = {k: getattr(obj, k) for k in known if hasattr(obj, k)}
        ident = str(obj.material_id)
        return InputItem(obj.structure, ident, ident, info=info, position=index)
    formula = _formula(obj)
    source = f"#{index} ({formula})" if formula else f"#{index}"
    return InputItem(obj, f"#{index}", source, position=index)


def input_items(objs: Any) -> Iterator[InputItem]:
    """`input_item` over an iterable (a single structure or path is accepted too)."""
    if isinstance(objs, Structure | Atoms | str | os.PathLike | InputItem):
        objs = [objs]
    for i, obj in enumerate(objs):
        yield input_item(obj, i)


def crystal_graph(
    structure: Structure,
    encoder,
    source: str = "structure",
    allow_isolated: bool = False,
) -> jraph.GraphsTuple:
    """The validated neighbour graph of one Structure at ``encoder``'s cutoff.

    Raises:
        StructureInputError: an unsupported element, overlapping atoms, an atom without a
            neighbour (unless ``allow_isolated``), or another geometry problem.
    """
    check_elements(structure, encoder.supported_z, source, encoder.name)
    try:
        return graph_from_structure(structure, encoder.cutoff_angstrom, allow_isolated)
    except GraphConstructionError as err:
        raise StructureInputError(source, str(err)) from err


def _crystal(
    fields: dict, structure: Structure, encoder, max_atoms: int | None, allow_isolated: bool
) -> CrystalInput:
    """Validates one read structure and builds its graph."""
    try:
        validate_structure(structure, fields["source"], max_atoms=max_atoms)
        graph = crystal_graph(structure, encoder, fields["source"], allow_isolated)
    except StructureInputError as err:
        return CrystalInput(**fields, structure=structure, error=err.reason)
    return CrystalInput(
        **fields, structure=structure, graph=graph, warning=vacuum_warning(structure)
    )


def prepare_input(
    item: InputItem, encoder, max_atoms: int | None = None, allow_isolated: bool = False
) -> list[CrystalInput]:
    """Reads, validates and builds the graph of one input: one result per crystal it holds.

    Never raises for bad input: a problem becomes the `CrystalInput.error` of the crystal (or
    of the whole file) it concerns.
    """
    fields = {
        "id": item.id,
        "source": item.source,
        "aliases": item.aliases,
        "info": item.info,
        "position": item.position,
    }
    if not isinstance(item.obj, str | os.PathLike):
        try:
            structure = as_structure(item.obj, max_atoms=max_atoms)
        except StructureInputError as err:
            return [CrystalInput(**fields, error=err.reason)]
        return [_crystal(fields, structure, encoder, max_atoms, allow_isolated)]
    try:
        entries = read_structure_file(item.obj)
    except StructureInputError as err:
        return [CrystalInput(**fields, error=err.reason)]
    out = []
    for label, entry in entries:
        named = fields
        if label is not None:  # one of several crystals in the file
            aliases = tuple(f"{a}#{label}" for a in item.aliases)
            named = {**fields, "id": f"{item.id}#{label}", "source": f"{item.source}#{label}"}
            named["aliases"] = aliases
        if isinstance(entry, str):
            out.append(CrystalInput(**named, error=entry))
        else:
            out.append(_crystal(named, entry, encoder, max_atoms, allow_isolated))
    return out


def prepare_inputs(
    objs: Iterable | Any,
    encoder,
    max_atoms: int | None = None,
    allow_isolated: bool = False,
) -> Iterator[CrystalInput]:
    """The input pass over many inputs, lazily (streams pools larger than memory).

    Args:
        objs: Structures, ASE Atoms, paths, `InputItem`s or records with ``.structure`` and
            ``.material_id`` (or a single one of them).
        encoder: a `dtnn_jax.encoder.FrozenEncoder` (its cutoff and elements).
        max_atoms: the size guard (default `dtnn_jax.io.MAX_ATOMS`).
        allow_isolated: keep atoms without neighbours as nodes without edges.
    """
    for item in input_items(objs):
        yield from prepare_input(item, encoder, max_atoms, allow_isolated)


def graphs_or_raise(objs: Any, encoder) -> list[jraph.GraphsTuple]:
    """The graphs of all inputs; the first bad one raises its `StructureInputError`."""
    graphs = []
    for crystal in prepare_inputs(objs, encoder):
        if crystal.error is not None:
            raise StructureInputError(crystal.source, crystal.error)
        graphs.append(crystal.graph)
    return graphs
