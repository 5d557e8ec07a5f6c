"""Gamma-point force constants of crystals from a frozen potential, cached per crystal.

K is the Hessian of the potential energy with respect to the Cartesian positions at the
given geometry, lattice fixed (eV/A^2), row / column ``3 * atom + direction``: the
force-constant matrix at Gamma of the harmonic approximation, from which
`dtnn_jax.physics.dielectric` builds the ionic dielectric tensor and
`dtnn_jax.physics.phonons` the Gamma phonons. It is not symmetrised (K - K^T is round-off:
~1e-10 eV/A^2 in float64, ~1e-4 in float32; the acoustic sum rule holds to the same
round-off); the consumers symmetrise and project.

The work is done by `dtnn_jax.physics.hessian` (the batched autodiff Hessian of one padded
batch) and `dtnn_jax.physics.force_constant_pass` (graphs reused from the input pass,
grouping, the memory check, progress). Which atoms are displaced: all of them, or with
``symmetry=True`` (the default) one per orbit of symmetry-equivalent atoms, the other
columns rotated from theirs (`dtnn_jax.physics.symmetry`; 2.4x fewer Hessian-vector
products on the shipped set, and one atom for a Si supercell of any size).

Precision: float32 by default (the encoders' own precision); ``dtype="float64"`` runs the
pass inside ``jax.enable_x64`` with positions and shifts rebuilt from the structure.

Cache: one entry per crystal in the verified `dtnn_jax.encoder.cache.CrystalCache` (kind
``force-constants``), keyed by (encoder name and weights sha256, cutoff, dtype, symmetry
tolerance, format version, the crystal's lattice, positions and elements). Entries are
written as each batch finishes, so a killed run keeps its finished batches and a rerun on a
superset computes only the new crystals. K depends on the potential only, so its entries
survive a retrained readout. A damaged entry is rebuilt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jraph
import numpy as np

from dtnn_jax.encoder.cache import CrystalCache
from dtnn_jax.encoder.interface import FrozenEncoder
from dtnn_jax.encoder.registry import get_encoder
from dtnn_jax.graph import BatchBudget
from dtnn_jax.physics.dielectric import (
    DEFAULT_FLOOR_EV_PER_A2,
    OpticalInverse,
    optical_pseudo_inverse,
)
from dtnn_jax.physics.force_constant_pass import (  # noqa: F401  (public names of the pass)
    HessianMemoryError,
    batches,
    compute_force_constants,
    crystal_graphs,
    iter_force_constants,
)
from dtnn_jax.physics.hessian import (  # noqa: F401  (public names of the kernel)
    DEFAULT_CHUNK,
    DTYPES,
    FORCE_CONSTANTS_BUDGET,
    BatchForceConstants,
    atoms_bucket,
    batch_force_constants,
    encoder_energy_fn,
    encoder_params,
    precision,
)
from dtnn_jax.physics.symmetry import DEFAULT_SYMPREC_ANGSTROM, identity_map, symmetry_map

FORMAT_VERSION = 2
CACHE_KIND = "force-constants"
DEFAULT_FORCE_CONSTANTS_ENCODER = "nequix-oam-1-pft"


@dataclasses.dataclass(frozen=True)
class ForceConstants:
    """Gamma-point force constants of one crystal at its given geometry.

    Attributes:
        k_ev_per_a2: [3N, 3N] the Hessian of the energy (eV/A^2), row / column
            ``3 * site + direction`` (the structure's site order); not symmetrised
            (symmetric to round-off). With symmetry, the columns of atoms that were not
            displaced are rotated from their orbit representative's.
        forces_ev_per_a: [N, 3] residual forces at the given geometry (eV/A); large ones
            mean the geometry is not a minimum of this potential.
        energy_ev: potential energy (eV).
        n_displaced: atoms displaced (orbit representatives with symmetry, else N).
        provenance: encoder key, name and weights sha256, cutoff, dtype, symmetry
            tolerance (None: off), method, format.
    """

    k_ev_per_a2: np.ndarray
    forces_ev_per_a: np.ndarray
    energy_ev: float
    n_displaced: int
    provenance: dict

    @property
    def n_atoms(self) -> int:
        return int(self.forces_ev_per_a.shape[0])

    @property
    def max_force_ev_per_a(self) -> float:
        """Largest residual force norm (eV/A)."""
        return float(np.linalg.norm(self.forces_ev_per_a, axis=1).max())

    @property
    def asymmetry_ev_per_a2(self) -> float:
        """max |K - K^T| (eV/A^2): the round-off of the Hessian."""
        return float(np.abs(self.k_ev_per_a2 - self.k_ev_per_a2.T).max())

    @property
    def sum_rule_violation_ev_per_a2(self) -> float:
        """max over rows of |sum over atoms| (eV/A^2): 0 for an exact translation-invariant K."""
        n = self.n_atoms
        sums = self.k_ev_per_a2.reshape(3 * n, n, 3).sum(axis=1)  # [3N, 3]
        return float(np.abs(sums).max())

    def optical_pseudo_inverse(
        self, treatment: str = "drop_negative", floor: float = DEFAULT_FLOOR_EV_PER_A2
    ) -> OpticalInverse:
        """`dtnn_jax.physics.optical_pseudo_inverse` of this K."""
        return optical_pseudo_inverse(self.k_ev_per_a2, treatment, floor)


def _provenance(encoder: FrozenEncoder, dtype: str, symprec: float | None) -> dict:
    return {
        "encoder": encoder.key,
        "encoder_name": encoder.name,
        "weights_sha256": encoder.weights_sha256,
        "cutoff_angstrom": encoder.cutoff_angstrom,
        "dtype": dtype,
        "symprec_angstrom": symprec,
        "method": "autodiff Hessian (forward over reverse) at the given geometry, lattice fixed",
        "symmetrised": False,
        "format_version": FORMAT_VERSION,
    }


def force_constants_setting(encoder: FrozenEncoder, dtype: str, symprec: float | None) -> str:
    """What a force-constant cache entry depends on besides the crystal (not the readout)."""
    sym = "nosym" if symprec is None else f"sym{float(symprec):.3g}"
    return (
        f"v{FORMAT_VERSION}|{encoder.key}|{encoder.weights_sha256}|"
        f"cutoff{encoder.cutoff_angstrom}|{dtype}|{sym}"
    )


def force_constants_cache(
    encoder: FrozenEncoder, dtype: str, symprec: float | None, cache_dir=None
) -> CrystalCache:
    """The per-crystal cache of these force-constant settings."""
    return CrystalCache(cache_dir, CACHE_KIND, force_constants_setting(encoder, dtype, symprec))


def _entry_arrays(k, forces, energy, n_displaced, dtype) -> dict[str, np.ndarray]:
    return {
        "k_ev_per_a2": np.asarray(k, dtype),
        "forces_ev_per_a": np.asarray(forces, dtype),
        "energy_ev": np.array(energy, np.float64),
        "n_displaced": np.array(n_displaced, np.int64),
    }


def _valid_entry(arrays: dict, n_atoms: int, dtype: str) -> bool:
    try:
        return (
            arrays["k_ev_per_a2"].dtype == np.dtype(dtype)
            and arrays["k_ev_per_a2"].shape == (3 * n_atoms, 3 * n_atoms)
            and arrays["forces_ev_per_a"].shape == (n_atoms, 3)
            and arrays["energy_ev"].shape == ()
            and arrays["n_displaced"].shape == ()
        )
    except KeyError:
        return False


def force_constants(
    structures: Sequence,
    encoder: str | FrozenEncoder = DEFAULT_FORCE_CONSTANTS_ENCODER,
    dtype: str = "float32",
    cache_dir: str | Path | None = None,
    progress: bool = False,
    symmetry: bool = True,
    symprec: float = DEFAULT_SYMPREC_ANGSTROM,
    budget: BatchBudget | None = None,
    chunk: int = DEFAULT_CHUNK,
    timings: list | None = None,
    graphs: Sequence[jraph.GraphsTuple | None] | None = None,
    graphs_cutoff: float | None = None,
) -> list[ForceConstants]:
    """Gamma-point force constants and residual forces of crystals from a frozen potential.

    Args:
        structures: pymatgen Structures, ASE Atoms or structure file paths (one crystal
            each), at the geometry wanted (no relaxation happens).
        encoder: registry name or encoder (default the phonon-fine-tuned Nequix-OAM-1-PFT).
        dtype: "float32" or "float64" (see the module docstring).
        cache_dir: cache directory (default ``$DTNN_JAX_CACHE`` or ``~/.cache/dtnn_jax``):
            one entry per crystal (see the module docstring).
        progress: show a progress bar while computing (per crystal).
        symmetry: displace one atom per orbit of symmetry-equivalent atoms and rotate the
            other columns from theirs (`dtnn_jax.physics.symmetry`); False displaces all.
        symprec: spglib's tolerance for the operations used (A).
        budget: padded-batch limits (default `FORCE_CONSTANTS_BUDGET`).
        chunk: tangents per vmapped Hessian-vector product.
        timings: a list to receive per-batch wall times (see `iter_force_constants`);
            cached crystals add none.
        graphs: the crystals' neighbour graphs from the input pass (`dtnn_jax.inputs`),
            reused instead of a second neighbour search (None entries are built here).
        graphs_cutoff: the cutoff ``graphs`` were built at (default: the potential's); a
            larger one is cut down by edge length, a smaller one cannot serve.

    Returns:
        One `ForceConstants` per structure, in input order.

    Raises:
        StructureInputError: naming the first structure that cannot be used.
        HessianMemoryError: a crystal whose Hessian would not fit in memory (an
            `InputError`, raised before any work).
        ValueError: an unknown dtype or encoder.
    """
    from dtnn_jax.io import as_structure

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    encoder = get_encoder(encoder)
    structures = [as_structure(s, index=i) for i, s in enumerate(structures)]
    used_symprec = float(symprec) if symmetry else None
    cache = force_constants_cache(encoder, dtype, used_symprec, cache_dir)
    entries: list = [None] * len(structures)
    for i, s in enumerate(structures):
        arrays = cache.load(s)
        if arrays is not None and _valid_entry(arrays, len(s), dtype):
            entries[i] = arrays
    todo = [i for i, e in enumerate(entries) if e is None]
    if todo:
        todo_structures = [structures[i] for i in todo]
        if symmetry:
            maps = [symmetry_map(s, symprec) for s in todo_structures]
        else:
            maps = [identity_map(len(s)) for s in todo_structures]
        todo_graphs = crystal_graphs(
            todo_structures,
            encoder,
            dtype,
            maps,
            graphs=None if graphs is None else [graphs[i] for i in todo],
            graphs_cutoff=graphs_cutoff,
        )
        names = [f"#{i} ({structures[i].formula})" for i in todo]
        stream = iter_force_constants(
            encoder, todo_graphs, dtype, budget, int(chunk), progress, maps, timings, names
        )
        for finished in stream:  # one batch: store it at once (a killed run keeps it)
            items = []
            for j, (k, forces, energy) in finished:
                entries[todo[j]] = _entry_arrays(k, forces, energy, maps[j].n_slots, dtype)
                items.append((todo_structures[j], entries[todo[j]]))
            cache.store_many(items)
    provenance = _provenance(encoder, dtype, used_symprec)
    return [
        ForceConstants(
            k_ev_per_a2=e["k_ev_per_a2"],
            forces_ev_per_a=e["forces_ev_per_a"],
            energy_ev=float(e["energy_ev"]),
            n_displaced=int(e["n_displaced"]),
            provenance=dict(provenance),
        )
        for e in entries
    ]
