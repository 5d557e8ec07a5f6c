"""Typed records for labelled dielectric data and unlabeled screening structures.

A record keeps the crystal as a pymatgen ``Structure`` and each dielectric target as a
symmetric 3x3 tensor in the Cartesian frame of that structure (dimensionless, relative
permittivity). Records are frozen; their tensors are read-only arrays.

Records also say where a label comes from (``source``) and at which level of theory
(``fidelity``, one of `FIDELITIES`), and may carry per-atom Born effective charges and the
Gamma phonon frequencies. The composition-only metal flags live in
``dtnn_jax.data.metal_flags`` (re-exported here).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from dtnn_jax.data.metal_flags import (  # noqa: F401 - re-exported (older import path)
    ANION_ELEMENTS,
    ELECTRONEGATIVITY_MARGIN,
    charge_balanced,
    intermetallic_like,
    likely_metal,
    oxidation_states,
)

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

FIDELITY_MP_PBE = "mp_pbe"
"""Materials Project DFPT (VASP, PBE; Petousis et al. 2017 and the MP API)."""
FIDELITY_VASP_PBESOL = "vasp_pbesol"
"""VASP, PBEsol: Togo's phonondb 2018 (finite-displacement force constants, DFPT BORN)."""
FIDELITY_ABINIT_PBESOL = "abinit_pbesol"
"""ABINIT, PBEsol DFPT (Petretto et al. 2018); reserved: no shipped source is pinned to it."""
FIDELITY_UNVERIFIED = "unverified"
"""Level of theory not documented by the source (e3nn-models; validation only)."""
FIDELITY_UNKNOWN = ""
"""User data without a stated fidelity."""
FIDELITIES: tuple[str, ...] = (
    FIDELITY_MP_PBE,
    FIDELITY_VASP_PBESOL,
    FIDELITY_ABINIT_PBESOL,
    FIDELITY_UNVERIFIED,
    FIDELITY_UNKNOWN,
)
"""Allowed values of ``DielectricRecord.fidelity``; labels of different fidelities are
never averaged (PBEsol eps_inf runs a few % above PBE)."""


def _readonly_tensor(value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    array = np.array(value, dtype=np.float64).reshape(3, 3)  # [3, 3]
    array.setflags(write=False)
    return array


def _readonly_array(value: Any, shape: tuple[int, ...], name: str, record: Any) -> np.ndarray:
    array = np.array(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(
            f"record {record.material_id!r}: {name} must be {shape}, got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"record {record.material_id!r}: {name} has non-finite entries")
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
        source: dataset the labels come from (``"petousis2017"``, ``"phonondb2018"``,
            ``"e3nn_models"``, ``"materials_project"``, ``"user"``; ``""`` if not said).
        fidelity: level of theory, one of `FIDELITIES`.
        born_charges: [n_atoms, 3, 3] Born effective charges (e), first index the field
            direction, second the displacement direction, in the structure's atom order and
            Cartesian frame; None if unknown.
        gamma_frequencies_cm1: [3 n_atoms] Gamma phonon frequencies (cm^-1, ascending after
            the 3 acoustic zeros; negative = imaginary), None if unknown.
        flags: notes on the labels, e.g. ``"unstable_gamma"`` (an imaginary optical mode at
            Gamma: no ionic label).
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
    source: str = ""
    fidelity: str = FIDELITY_UNKNOWN
    born_charges: np.ndarray | None = None  # [n_atoms, 3, 3]
    gamma_frequencies_cm1: np.ndarray | None = None  # [3 n_atoms]
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("e_electronic", "e_ionic", "e_total"):
            object.__setattr__(self, name, _readonly_tensor(getattr(self, name), name))
        n_atoms = len(self.structure)
        if self.born_charges is not None:
            z = _readonly_array(self.born_charges, (n_atoms, 3, 3), "born_charges", self)
            object.__setattr__(self, "born_charges", z)
        if self.gamma_frequencies_cm1 is not None:
            f = _readonly_array(self.gamma_frequencies_cm1, (3 * n_atoms,), "frequencies", self)
            object.__setattr__(self, "gamma_frequencies_cm1", f)
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"record {self.material_id!r}: unknown fidelity {self.fidelity!r}")
        object.__setattr__(self, "flags", tuple(self.flags))
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

    @property
    def has_born_charges(self) -> bool:
        """Whether this record carries per-atom Born charges."""
        return self.born_charges is not None


@dataclasses.dataclass(frozen=True)
class PhononRecord:
    """A crystal with DFT Gamma phonon frequencies and no dielectric label required.

    Attributes:
        material_id: Materials Project id.
        formula: reduced chemical formula.
        structure: the cell the frequencies belong to (phonopy's primitive cell).
        gamma_frequencies_cm1: [3 n_atoms] (cm^-1; 3 acoustic zeros first, then ascending;
            negative = imaginary).
        source: dataset name.
        fidelity: one of `FIDELITIES`.
        has_born: whether the source also has eps_inf and Z* for this crystal.
    """

    material_id: str
    formula: str
    structure: Structure
    gamma_frequencies_cm1: np.ndarray  # [3 n_atoms]
    source: str = ""
    fidelity: str = FIDELITY_UNKNOWN
    has_born: bool = False

    def __post_init__(self) -> None:
        n = 3 * len(self.structure)
        f = _readonly_array(self.gamma_frequencies_cm1, (n,), "frequencies", self)
        object.__setattr__(self, "gamma_frequencies_cm1", f)

    @property
    def unstable(self) -> bool:
        """An imaginary (negative) optical frequency at Gamma."""
        return bool(np.any(self.gamma_frequencies_cm1[3:] < 0))


INSULATOR_SOURCES: tuple[str, ...] = ("piezoelectric_tensor",)
"""Shipped pool tables whose entries count as insulators by construction: DFPT piezoelectric
tensors (de Jong et al., Sci. Data 2, 150053 (2015)) are only defined for crystals with a band
gap. See ``dtnn_jax/data/PROVENANCE.md`` for the caveat (a few of them look metallic)."""


@dataclasses.dataclass(frozen=True)
class PoolRecord:
    """An unlabeled crystal for screening.

    Attributes:
        material_id: Materials Project id.
        formula: reduced chemical formula.
        structure: the crystal.
        e_above_hull_ev: energy above the convex hull in eV/atom, NaN where unknown.
        sources: names of the source tables the structure appears in.
        band_gap_ev: band gap in eV where a source gives it, else NaN (NaN for every entry of
            the shipped pool: none of its source tables has a band gap).
        charge_balanced: :func:`charge_balanced` of the composition; precomputed for the
            shipped pool, None if not computed (``likely_metal`` then computes it).
        insulator_by_construction: the entry comes from a table in ``INSULATOR_SOURCES`` or
            has a band gap > 0.
    """

    material_id: str
    formula: str
    structure: Structure
    e_above_hull_ev: float = float("nan")
    sources: tuple[str, ...] = ()
    band_gap_ev: float = float("nan")
    charge_balanced: bool | None = None
    insulator_by_construction: bool = False

    @property
    def likely_metal(self) -> bool:
        """:func:`likely_metal` from this record's gap and composition."""
        return likely_metal(
            self.structure.composition, band_gap_ev=self.band_gap_ev, balanced=self.charge_balanced
        )


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
