"""Gamma-point force constants of crystals from a frozen potential, batched by autodiff.

K is the Hessian of the potential energy with respect to the Cartesian positions at the
given geometry, lattice fixed (eV/A^2), row / column ``3 * atom + direction``: the
force-constant matrix at Gamma of the harmonic approximation, from which
`dtnn_jax.physics.dielectric` builds the ionic dielectric tensor and
`dtnn_jax.physics.phonons` the Gamma phonons. It is not symmetrised (K - K^T is round-off:
~1e-10 eV/A^2 in float64, ~1e-4 in float32; the acoustic sum rule holds to the same
round-off); the consumers symmetrise and project.

How (`batch_force_constants`): the crystals of a padded batch do not interact (no edge joins
two of them), so one tangent per (slot ``s``, direction ``d``) displaces the s-th displaced
atom of *every* crystal at once, and its Hessian-vector product (forward mode over the
reverse-mode forces: ``jax.linearize`` of ``jax.grad`` of the summed energy, so the primal
forward and backward pass run once per batch) is column ``3s + d`` of every crystal's K at
once. 3S products, S the largest number of displaced atoms in the batch, give all K of the
batch; they run in chunks of ``chunk`` tangents (``jax.vmap`` inside a ``lax.fori_loop``
whose trip count is the batch's own ceil(3 S / chunk), so the static ``max_atoms`` only
sizes the output). For Nequix encoders the energy differentiated is
Nequix's own energy in its contraction form (`dtnn_jax.encoder.nequix.nequix_forward(...,
contract=True)`), whose second derivatives compile to ~6x faster code on CPU.

Which atoms are displaced: all of them (slot = index in the crystal), or with
``symmetry=True`` (the default of `force_constants`) one per orbit of symmetry-equivalent
atoms, the other columns rotated from theirs (`dtnn_jax.physics.symmetry`; 2.4x fewer
Hessian-vector products on the shipped set).

Grouping (`force_constants`): a batch costs ~3S Hessian-vector products over all its edges,
so every crystal pays for the tangents of the one with the most displaced atoms. Crystals
are therefore sorted by (displaced atoms, atoms) and packed greedily in that order into
batches within `FORCE_CONSTANTS_BUDGET`: the crystals of a batch have nearly the same
number of tangents. The static ``max_atoms`` is one value per call (`atoms_bucket` of the
largest crystal), so the compilations are one per padded batch shape.

Precision: float32 by default (the encoders' own precision). ``dtype="float64"`` runs the
computation inside ``jax.enable_x64`` with the parameters, positions and shifts cast (the
positions and shifts rebuilt from the structure in float64), leaving the rest of the process
in float32.

Results are cached on disk, keyed by a content hash of (encoder name and weights, cutoff,
dtype, symmetry tolerance, format version, the structures' lattices, positions and
elements) in the verified `dtnn_jax.encoder.cache.FeatureCache` (prefix
``force-constants``); a damaged entry is rebuilt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dtnn_jax.encoder.cache import FeatureCache, cache_key
from dtnn_jax.encoder.interface import FrozenEncoder
from dtnn_jax.encoder.registry import get_encoder
from dtnn_jax.graph import BatchBudget, bucket_size, graph_mask, node_mask, pad_to_bucket
from dtnn_jax.graph.batching import group_indices
from dtnn_jax.physics.dielectric import (
    DEFAULT_FLOOR_EV_PER_A2,
    OpticalInverse,
    optical_pseudo_inverse,
)
from dtnn_jax.physics.symmetry import (
    DEFAULT_SYMPREC_ANGSTROM,
    SymmetryMap,
    expand_columns,
    identity_map,
    symmetry_map,
)

FORMAT_VERSION = 1
CACHE_PREFIX = "force-constants"
DEFAULT_FORCE_CONSTANTS_ENCODER = "nequix-oam-1-pft"
DTYPES: tuple[str, ...] = ("float32", "float64")

DEFAULT_CHUNK = 3
"""Tangents per vmapped Hessian-vector product (3: one atom's three directions)."""

FORCE_CONSTANTS_BUDGET = BatchBudget(
    max_graphs=16, max_nodes=96, max_edges=4096, growth=2.0, min_nodes=16, min_edges=128
)
"""Padded-batch limits of the force-constant pass (Nequix at 6 A: ~47 edges per atom).

Smaller than the encoder's forward budget: the linearised pass keeps the intermediates of a
forward and a backward pass alive (peak RSS, float32: 2.8 GB at 2,048 padded edges, 5.3 GB
at 6,144), and on CPU the time per Hessian-vector product and edge does not improve with
bigger batches (measured: 0.19 ms per tangent and real edge alone, 0.23 in a 5,690-edge
batch, load average 5). The time is that of the *padded* edges, so the smallest bucket is
small (128 edges): a 2-atom crystal alone (~60 edges) padded to 1,024 took 1.6 s, not ~0.2.
"""


def atoms_bucket(n_atoms: int) -> int:
    """The static ``max_atoms`` class of a crystal of ``n_atoms`` atoms: 4, 8, 16, 32, ..."""
    return bucket_size(int(n_atoms), 4, 2.0)


class BatchForceConstants(NamedTuple):
    """`batch_force_constants` of one padded batch (padding graphs and nodes are zero).

    Attributes:
        k_ev_per_a2: [n_graph, 3M, 3M] K of each crystal (its slots' columns when the batch
            has ``fc_slot``); rows and columns beyond its 3N (3S) are zero.
        forces_ev_per_a: [n_node, 3] forces -dE/dx at the given geometry.
        energy_ev: [n_graph] potential energies.
    """

    k_ev_per_a2: jax.Array
    forces_ev_per_a: jax.Array
    energy_ev: jax.Array


def _batch_force_constants(
    energy_fn: Callable[[Any, jraph.GraphsTuple], jax.Array],
    params: Any,
    graph: jraph.GraphsTuple,
    max_atoms: int,
    chunk: int = DEFAULT_CHUNK,
) -> BatchForceConstants:
    """K of every crystal of a padded batch, forces and energies (`batch_force_constants`).

    Args:
        energy_fn: ``(params, graph) -> [n_graph]`` potential energies (eV), static: pass the
            same object every call (e.g. `encoder_energy_fn`) or it compiles again.
        params: the potential's parameters (float64 with x64 for a float64 pass).
        graph: a padded batch in jraph's convention (the last graph is padding) with
            ``nodes["positions"]`` [n_node, 3] (A) in the dtype of the computation and
            optionally ``nodes["fc_slot"]`` [n_node] int: the column slot of each displaced
            atom (0..S-1 within its crystal, -1 for atoms not displaced); without it every
            atom is displaced, slot = its index in the crystal.
        max_atoms: M (static) >= the largest crystal and the largest slot count of the
            batch; larger ones would be truncated silently (the host caller checks).
        chunk: tangents per vmapped Hessian-vector product (static; memory ~ chunk).

    Returns:
        `BatchForceConstants`: K columns [n_graph, 3M, 3M] (column ``3s + d``: slot s,
        direction d; all of K without ``fc_slot``), forces [n_node, 3], energies
        [n_graph].
    """
    positions = graph.nodes["positions"]  # [n_node, 3]
    dtype = positions.dtype
    n_node = positions.shape[0]
    n_graph = graph.n_node.shape[0]
    m = int(max_atoms)
    real_graph = graph_mask(graph)  # [n_graph]
    real_node = node_mask(graph)  # [n_node]
    graph_of_node = jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=n_node)
    start = jnp.cumsum(graph.n_node) - graph.n_node  # [n_graph] first node of each graph
    local = jnp.arange(n_node) - start[graph_of_node]  # [n_node] index within its crystal
    slot = graph.nodes.get("fc_slot", local)  # [n_node] displaced slot, -1: not displaced
    slot = jnp.where(real_node, slot, -1)
    atoms = jnp.arange(m)  # [M]
    valid = (atoms[None, :] < graph.n_node[:, None]) & real_graph[:, None]  # [n_graph, M]
    node_of = jnp.where(valid, start[:, None] + atoms[None, :], 0)  # [n_graph, M]

    def total_energy(x):
        energy = energy_fn(params, graph._replace(nodes={**graph.nodes, "positions": x}))
        energy = jnp.where(real_graph, energy, 0.0)  # [n_graph]
        return jnp.sum(energy), energy

    def gradient(x):
        return jax.grad(total_energy, has_aux=True)(x)  # ([n_node, 3], [n_graph])

    grad, hvp, energy = jax.linearize(gradient, positions, has_aux=True)

    n_tangents = 3 * m
    n_chunks_max = -(-n_tangents // chunk)
    n_slots = jnp.max(slot) + 1  # the batch's own largest number of displaced atoms
    n_chunks = (3 * n_slots + chunk - 1) // chunk  # dynamic trip count

    def tangents(c):
        t = c * chunk + jnp.arange(chunk)  # [chunk] tangent = 3 * slot + direction
        hit = slot[None, :] == (t // 3)[:, None]  # [chunk, n_node]
        axis = jnp.arange(3)[None, :] == (t % 3)[:, None]  # [chunk, 3]
        return (hit[:, :, None] & axis[:, None, :]).astype(dtype)  # [chunk, n_node, 3]

    def body(c, columns):
        block = jax.vmap(hvp)(tangents(c))  # [chunk, n_node, 3]
        block = jnp.where(valid[None, :, :, None], block[:, node_of], 0.0)  # [chunk, n_graph, M, 3]
        return jax.lax.dynamic_update_slice_in_dim(columns, block.astype(dtype), c * chunk, 0)

    columns = jnp.zeros((n_chunks_max * chunk, n_graph, m, 3), dtype)
    columns = jax.lax.fori_loop(0, n_chunks, body, columns)  # [3M+, n_graph, M, 3]
    k = columns[:n_tangents].reshape(n_tangents, n_graph, n_tangents)  # [col, n_graph, row]
    k = jnp.transpose(k, (1, 2, 0))  # [n_graph, 3M, 3M]
    return BatchForceConstants(k, -grad, energy)


batch_force_constants = jax.jit(_batch_force_constants, static_argnums=(0, 3, 4))


@functools.cache
def encoder_energy_fn(
    encoder: FrozenEncoder, reference: bool = False
) -> Callable[[Any, jraph.GraphsTuple], jax.Array]:
    """The encoder's ``(params, graph) -> energies [n_graph]``, one object per encoder.

    For Nequix encoders this is `nequix_forward` in its contraction form (the same energy,
    6x faster Hessian-vector products on CPU) unless ``reference``; otherwise
    ``encoder.forward(params, graph).energy``.
    """
    from dtnn_jax.encoder.nequix import Nequix

    if isinstance(encoder, Nequix) and not reference:
        from dtnn_jax.encoder.nequix import nequix_forward

        config = encoder.config

        def energy(params, graph):
            return nequix_forward(params, graph, config, contract=True).energy

    else:

        def energy(params, graph):
            return encoder.forward(params, graph).energy

    energy.__qualname__ = f"energy[{encoder.key}{', reference' if reference else ''}]"
    return energy


@functools.cache
def _params64(encoder: FrozenEncoder):
    with jax.enable_x64(True):
        return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), encoder.params)


def precision(dtype: str):
    """Context of a pass in ``dtype``: ``jax.enable_x64`` for float64, else nothing."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def encoder_params(encoder: FrozenEncoder, dtype: str):
    """The encoder's parameters in ``dtype`` (call float64 inside `precision`)."""
    return _params64(encoder) if dtype == "float64" else encoder.params


def crystal_graphs(
    structures: Sequence,
    encoder: FrozenEncoder,
    dtype: str = "float32",
    maps: Sequence[SymmetryMap] | None = None,
) -> list[jraph.GraphsTuple]:
    """Single-crystal graphs for the force-constant pass: positions, species, slots, shifts.

    float64 graphs take positions and shifts from the structure in float64 (the shipped
    graphs are float32). ``maps`` (one `SymmetryMap` per structure) set ``nodes["fc_slot"]``;
    without them every atom is displaced.
    """
    from dtnn_jax.inputs import crystal_graph

    graphs = []
    for i, s in enumerate(structures):
        g = crystal_graph(s, encoder, source=f"#{i} ({s.formula})")
        shifts = g.edges["shifts"]
        positions = g.nodes["positions"]
        if dtype == "float64":
            lattice = np.asarray(s.lattice.matrix, np.float64)
            positions = np.asarray(s.cart_coords, np.float64)
            shifts = g.edges["offsets"].astype(np.float64) @ lattice
        slots = np.arange(len(s)) if maps is None else maps[i].slot_of_atom
        nodes = {
            "positions": positions,
            "species": g.nodes["species"],
            "fc_slot": np.asarray(slots, np.int32),
        }
        graphs.append(g._replace(nodes=nodes, edges={"shifts": shifts}, globals={}))
    return graphs


def batches(
    n_slots: Sequence[int], n_atoms: Sequence[int], n_edges: Sequence[int], budget: BatchBudget
) -> list[list[int]]:
    """The grouping of `force_constants`: the crystal indices of each batch.

    Crystals sorted by (displaced atoms, atoms), stable, and packed greedily in that order
    within ``budget``.
    """
    order = sorted(range(len(n_atoms)), key=lambda i: (n_slots[i], n_atoms[i]))
    sizes = [(int(n_atoms[i]), int(n_edges[i])) for i in order]
    return [[order[j] for j in group] for group in group_indices(sizes, budget)]


def compute_force_constants(
    encoder: FrozenEncoder,
    graphs: Sequence[jraph.GraphsTuple],
    dtype: str = "float32",
    budget: BatchBudget | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    maps: Sequence[SymmetryMap] | None = None,
    timings: list | None = None,
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(K [3N, 3N], forces [N, 3], energy) per graph, in input order, no cache.

    Args:
        encoder: the potential.
        graphs: from `crystal_graphs` in the same ``dtype`` (and the same ``maps``).
        dtype: "float32" or "float64".
        budget: padded-batch limits (default `FORCE_CONSTANTS_BUDGET`).
        chunk: tangents per vmapped Hessian-vector product.
        progress: show a progress bar.
        maps: the graphs' `SymmetryMap` (None: every atom displaced).
        timings: if a list, one dict per batch is appended: ``indices``, ``seconds`` (wall,
            padding to results on the host), ``n_node``, ``n_edge`` (padded), ``n_slots``
            (the batch's largest) and ``compiled`` (True for the first batch of its shape in
            this call: its time includes any compilation).
    """
    import time

    from tqdm.auto import tqdm

    budget = budget or FORCE_CONSTANTS_BUDGET
    n_atoms = [int(g.n_node[0]) for g in graphs]
    n_edges = [int(g.n_edge[0]) for g in graphs]
    maps = list(maps) if maps is not None else [identity_map(n) for n in n_atoms]
    n_slots = [m.n_slots for m in maps]
    max_atoms = atoms_bucket(max(n_atoms, default=1))
    results: list = [None] * len(graphs)
    energy_fn = encoder_energy_fn(encoder)
    bar = tqdm(total=len(graphs), disable=not progress, desc="force constants", unit="crystal")
    with precision(dtype), bar:
        params = encoder_params(encoder, dtype)
        shapes_seen = set()
        for members in batches(n_slots, n_atoms, n_edges, budget):
            start = time.perf_counter()
            batch = pad_to_bucket([graphs[i] for i in members], budget)
            out = batch_force_constants(energy_fn, params, batch, max_atoms, chunk)
            out = jax.device_get(out)
            shape = (batch.nodes["positions"].shape[0], batch.senders.shape[0])
            if timings is not None:
                timings.append(
                    {
                        "indices": list(members),
                        "seconds": time.perf_counter() - start,
                        "n_node": shape[0],
                        "n_edge": shape[1],
                        "n_slots": max(n_slots[i] for i in members),
                        "compiled": shape not in shapes_seen,
                    }
                )
            shapes_seen.add(shape)
            offset = 0
            for j, i in enumerate(members):
                n, s = n_atoms[i], n_slots[i]
                columns = np.asarray(out.k_ev_per_a2[j, : 3 * n, : 3 * s])  # [3N, 3S]
                results[i] = (
                    expand_columns(columns, maps[i]),
                    np.array(out.forces_ev_per_a[offset : offset + n]),
                    float(out.energy_ev[j]),
                )
                offset += n
            bar.update(len(members))
    return results


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


def force_constants_cache_key(
    encoder: FrozenEncoder, structures: Sequence, dtype: str, symprec: float | None
) -> str:
    """The cache entry name of these structures' force constants."""
    sym = "nosym" if symprec is None else f"sym{float(symprec):.3g}"
    return cache_key(encoder, structures, f"{CACHE_PREFIX}-v{FORMAT_VERSION}-{dtype}-{sym}")


def _valid_entry(arrays: dict, n_atoms: np.ndarray, dtype: str) -> bool:
    try:
        return (
            np.array_equal(arrays["n_atoms"], n_atoms)
            and arrays["k_ev_per_a2"].dtype == np.dtype(dtype)
            and arrays["k_ev_per_a2"].shape == (int(np.sum(9 * n_atoms**2)),)
            and arrays["forces_ev_per_a"].shape == (int(np.sum(n_atoms)), 3)
            and arrays["energy_ev"].shape == n_atoms.shape
            and arrays["n_displaced"].shape == n_atoms.shape
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
) -> list[ForceConstants]:
    """Gamma-point force constants and residual forces of crystals from a frozen potential.

    Args:
        structures: pymatgen Structures, ASE Atoms or structure file paths (one crystal
            each), at the geometry wanted (no relaxation happens).
        encoder: registry name or encoder (default the phonon-fine-tuned Nequix-OAM-1-PFT).
        dtype: "float32" or "float64" (see the module docstring).
        cache_dir: cache directory (default ``$DTNN_JAX_CACHE`` or ``~/.cache/dtnn_jax``).
            The whole list is one entry: the same structures in the same order hit it.
        progress: show a progress bar while computing.
        symmetry: displace one atom per orbit of symmetry-equivalent atoms and rotate the
            other columns from theirs (`dtnn_jax.physics.symmetry`); False displaces all.
        symprec: spglib's tolerance for the operations used (A).
        budget: padded-batch limits (default `FORCE_CONSTANTS_BUDGET`).
        chunk: tangents per vmapped Hessian-vector product.
        timings: a list to receive per-batch wall times (see `compute_force_constants`);
            left empty on a cache hit.

    Returns:
        One `ForceConstants` per structure, in input order.

    Raises:
        StructureInputError: naming the first structure that cannot be used.
        ValueError: an unknown dtype or encoder.
    """
    from dtnn_jax.io import as_structure

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    encoder = get_encoder(encoder)
    structures = [as_structure(s, index=i) for i, s in enumerate(structures)]
    n_atoms = np.array([len(s) for s in structures], np.int64)  # [n_crystal]
    used_symprec = float(symprec) if symmetry else None
    cache = FeatureCache(cache_dir, prefix=CACHE_PREFIX)
    key = force_constants_cache_key(encoder, structures, dtype, used_symprec)
    arrays = cache.load(key)
    if arrays is not None and not _valid_entry(arrays, n_atoms, dtype):
        warnings.warn(
            f"force-constant cache {cache.path(key)} does not match these structures; "
            "rebuilding it",
            stacklevel=2,
        )
        arrays = None
    if arrays is None:
        if symmetry:
            maps = [symmetry_map(s, symprec) for s in structures]
        else:
            maps = [identity_map(len(s)) for s in structures]
        graphs = crystal_graphs(structures, encoder, dtype, maps)
        results = compute_force_constants(
            encoder, graphs, dtype, budget, int(chunk), progress, maps, timings
        )
        arrays = {
            "k_ev_per_a2": np.concatenate([k.ravel() for k, _, _ in results]).astype(dtype),
            "forces_ev_per_a": np.concatenate([f for _, f, _ in results]).astype(dtype),
            "energy_ev": np.array([e for _, _, e in results], np.float64),
            "n_atoms": n_atoms,
            "n_displaced": np.array([m.n_slots for m in maps], np.int64),
        }
        cache.store(key, arrays)
    provenance = _provenance(encoder, dtype, used_symprec)
    k_off = np.concatenate([[0], np.cumsum(9 * n_atoms**2)])
    f_off = np.concatenate([[0], np.cumsum(n_atoms)])
    return [
        ForceConstants(
            k_ev_per_a2=arrays["k_ev_per_a2"][k_off[i] : k_off[i + 1]].reshape(3 * n, 3 * n),
            forces_ev_per_a=arrays["forces_ev_per_a"][f_off[i] : f_off[i + 1]],
            energy_ev=float(arrays["energy_ev"][i]),
            n_displaced=int(arrays["n_displaced"][i]),
            provenance=dict(provenance),
        )
        for i, n in enumerate(n_atoms)
    ]
