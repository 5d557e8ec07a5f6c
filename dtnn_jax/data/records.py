"""Typed records for labelled dielectric data and unlabeled screening structures.

A record keeps the crystal as a pymatgen ``Structure`` and each dielectric target as a
symmetric 3x3 tensor in the Cartesian frame of that structure (dimensionless, relative
permittivity). Records are frozen; their tensors are read-only arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

TARGETS: tuple[str, ...] = ("electronic", "ionic", "total")
"""Dielectric targets: electronic (eps_inf), ionic (lattice) and total = electronic + ionic."""

CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "cubic",
    "hexagonal",
    "trigonal",
    "tetragonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
)

SYMPREC_ANGSTROM = 0.1
"""spglib tolerance used for space groups and crystal systems throughout the data layer."""


def _readonly_tensor(value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    array = np.array(value, dtype=np.float64).reshape(3, 3)  # [3, 3]
    array.setflags(write=False)
    return array


@dataclasses.dataclass(frozen=True)
class DielectricRecord:
    """One crystal with its dielectric tensors.

    Attributes:
        material_id: identifier (Materials Project id for shipped data).
        formula: reduced chemical formula.
        structure: the crystal; tensors are expressed in its Cartesian frame.
        e_electronic: electronic (clamped-ion, eps_inf) tensor, [3, 3], or None if unknown.
        e_ionic: ionic (lattice) contribution, [3, 3], or None if unknown.
        e_total: total static tensor = electronic + ionic, [3, 3], or None if unknown.
        band_gap_ev: band gap in eV (NaN if unknown).
        spacegroup_number: international space group number from spglib (symprec 0.1 A).
        spacegroup_symbol: Hermann-Mauguin symbol.
        crystal_system: one of ``CRYSTAL_SYSTEMS``.
    """

    material_id: str
    formula: str
    structure: Structure
    e_electronic: np.ndarray | None  # [3, 3]
    e_ionic: np.ndarray | None  # [3, 3]
    e_total: np.ndarray | None  # [3, 3]
    band_gap_ev: float = float("nan")
    spacegroup_number: int = 0
    spacegroup_symbol: str = ""
    crystal_system: str = ""

    def __post_init__(self) -> None:
        for name in ("e_electronic", "e_ionic", "e_total"):
            object.__setattr__(self, name, _readonly_tensor(getattr(self, name), name))
        if all(getattr(self, f"e_{t}") is None for t in TARGETS):
            raise ValueError(f"record {self.material_id!r}: no dielectric target given")
        if self.crystal_system and self.crystal_system not in CRYSTAL_SYSTEMS:
            raise ValueError(
                f"record {self.material_id!r}: unknown crystal system {self.crystal_system!r}"
            )

    def target(self, name: str) -> np.ndarray:
        """Return the [3, 3] tensor of target ``name`` (one of ``TARGETS``).

        Raises:
            KeyError: if ``name`` is not a target or this record has no value for it.
        """
        if name not in TARGETS:
            raise KeyError(f"unknown target {name!r}; expected one of {TARGETS}")
        tensor = getattr(self, f"e_{name}")
        if tensor is None:
            raise KeyError(f"record {self.material_id!r} has no {name!r} tensor")
        return tensor

    def has_target(self, name: str) -> bool:
        """Whether this record carries a tensor for target ``name``."""
        return getattr(self, f"e_{name}", None) is not None


@dataclasses.dataclass(frozen=True)
class PoolRecord:
    """An unlabeled crystal for screening.

    Attributes:
        material_id: Materials Project id.
        formula: reduced chemical formula.
        structure: the crystal.
        e_above_hull_ev: energy above the convex hull in eV/atom, NaN where unknown.
        sources: names of the source tables the structure appears in.
    """

    material_id: str
    formula: str
    structure: Structure
    e_above_hull_ev: float = float("nan")
    sources: tuple[str, ...] = ()


def structure_to_compact(structure: Structure, decimals: int = 6) -> dict[str, Any]:
    """Encode an ordered structure as lattice rows, species symbols and fractional coords.

    Args:
        structure: an ordered crystal.
        decimals: fractional coordinates are rounded to this many decimals.

    Returns:
        ``{"lattice": [3][3] (Angstrom, rows), "species": [n], "frac": [n][3]}``.
    """
    if not structure.is_ordered:
        raise ValueError("only ordered structures can be encoded")
    return {
        "lattice": np.round(structure.lattice.matrix, 8).tolist(),
        "species": [site.specie.symbol for site in structure],
        "frac": np.round(structure.frac_coords, decimals).tolist(),
    }


def structure_from_compact(data: dict[str, Any]) -> Structure:
    """Inverse of :func:`structure_to_compact`."""
    return Structure(
        Lattice(np.asarray(data["lattice"], dtype=np.float64)),
        data["species"],
        np.asarray(data["frac"], dtype=np.float64),
        coords_are_cartesian=False,
    )


def crystal_system_from_number(spacegroup_number: int) -> str:
    """Crystal system of an international space group number (1-230)."""
    bounds = (
        (2, "triclinic"),
        (15, "monoclinic"),
        (74, "orthorhombic"),
        (142, "tetragonal"),
        (167, "trigonal"),
        (194, "hexagonal"),
        (230, "cubic"),
    )
    for upper, name in bounds:
        if 1 <= spacegroup_number <= upper:
            return name
    raise ValueError(f"space group number {spacegroup_number} outside 1..230")


def symmetry_of(structure: Structure, symprec: float = SYMPREC_ANGSTROM) -> tuple[int, str, str]:
    """Space group number, symbol and crystal system from spglib (via pymatgen).

    Args:
        structure: the crystal.
        symprec: spglib distance tolerance in Angstrom.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
    number = int(analyzer.get_space_group_number())
    return number, analyzer.get_space_group_symbol(), crystal_system_from_number(number)
