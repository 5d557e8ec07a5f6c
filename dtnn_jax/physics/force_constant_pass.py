"""The force-constant pass over many crystals: graphs, grouping, a memory check, progress.

Graphs (`crystal_graphs`): the single-crystal graphs of the input pass (`dtnn_jax.inputs`),
reused: a graph built at a cutoff at least the potential's is cut down to the potential's
cutoff by edge length (`graph_at_cutoff`), so the physics path searches neighbours once per
crystal. Only crystals without a graph get one built here.

Grouping (`batches`): a batch costs ~3S Hessian-vector products over all its edges, so every
crystal pays for the tangents of the one with the most displaced atoms. Crystals are sorted
by (displaced atoms, atoms) and packed greedily in that order into batches within
`FORCE_CONSTANTS_BUDGET`. The static ``max_atoms`` of a batch is its padded node count
(`padded_max_atoms`), so a compiled program depends only on the batch's padded shape, not on
the other crystals of the call (the persistent compilation cache serves it to later calls):
the 5,261 crystals of the shipped pool need 14 programs (23 before). Above 2,048 edges a
batch is padded to a multiple of `LARGE_EDGE_QUANTUM` edges instead of the next power of
two (the memory and time of the pass are those of the padded edges); a crystal larger than
the budget is alone in its batch.

Memory (`estimate_bytes`, `check_memory`, `fitting_chunk`): before any Hessian, each
batch's memory is estimated from its padded edges; a batch whose ``chunk`` tangents at once
would not fit runs one tangent at a time (half the memory, about the same time on CPU), and
a batch that does not fit even so raises `HessianMemoryError` (an `InputError`: the user's
to fix, e.g. with the fast model) instead of being killed by the kernel.

Progress (`iter_force_constants`): per crystal; a crystal with many displaced atoms is done
in several calls of at most `TANGENT_CHUNKS_PER_CALL` chunks, with progress between them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Sequence

import jax
import jraph
import numpy as np

from dtnn_jax.encoder.interface import FrozenEncoder
from dtnn_jax.errors import InputError
from dtnn_jax.graph import BatchBudget, pad_to_bucket
from dtnn_jax.graph.batching import group_indices
from dtnn_jax.physics.hessian import (
    DEFAULT_CHUNK,
    FORCE_CONSTANTS_BUDGET,
    batch_force_constants,
    encoder_energy_fn,
    encoder_params,
    precision,
)
from dtnn_jax.physics.symmetry import SymmetryMap, expand_columns, identity_map

LARGE_EDGE_QUANTUM = 1024
"""A crystal above the budget is padded to a multiple of this many edges."""

TANGENT_CHUNKS_PER_CALL = 32
"""Chunks of tangents per call of the Hessian (each call redoes one forward and backward
pass: ~1 % more work at 32 chunks of 3 tangents) so progress shows within a large crystal."""

# Memory the Hessian pass adds to a process (Nequix-OAM-1-PFT, float32), per padded edge of
# its batch: XLA's memory analysis of the compiled pass (temporaries) is 0.38 MB per padded
# edge with chunk 1 and 0.70 MB with chunk 3 (1,024 and 2,048 edges, linear), i.e. ~0.22 MB
# of forward and backward intermediates kept by ``jax.linearize`` plus ~0.16 MB per tangent
# of a chunk. A whole process peaked at 3.9 GB RSS for a 64-atom Si cell (4,096 padded
# edges, chunk 3). float64 doubles both. `BYTES_OVERHEAD` covers compilation and host copies.
BYTES_PER_EDGE = {"float32": 0.22e6, "float64": 0.44e6}
BYTES_PER_EDGE_TANGENT = {"float32": 0.16e6, "float64": 0.32e6}
BYTES_OVERHEAD = 0.5e9
FAST_MODEL = "dtnn-sevennet0-petousis2017"  # dtnn_jax.inference.bundle.FAST_MODEL
MEMORY_ENV = "DTNN_JAX_HESSIAN_MEMORY_GB"


class HessianMemoryError(InputError):
    """A crystal whose force constants would not fit the memory available."""


def graph_at_cutoff(graph: jraph.GraphsTuple, cutoff_angstrom: float) -> jraph.GraphsTuple:
    """``graph`` with only the edges shorter than ``cutoff_angstrom`` (a graph built at a
    larger cutoff serves a smaller one: same atoms, a subset of its edges, in order)."""
    pos = np.asarray(graph.nodes["positions"], np.float64)
    vec = pos[graph.senders] - pos[graph.receivers] + np.asarray(graph.edges["shifts"])
    keep = np.linalg.norm(vec, axis=1) < cutoff_angstrom  # [n_edge]
    if keep.all():
        return graph
    return graph._replace(
        senders=graph.senders[keep],
        receivers=graph.receivers[keep],
        edges={k: np.asarray(v)[keep] for k, v in graph.edges.items()},
        n_edge=np.array([int(keep.sum())], np.int32),
    )


def crystal_graphs(
    structures: Sequence,
    encoder: FrozenEncoder,
    dtype: str = "float32",
    maps: Sequence[SymmetryMap] | None = None,
    graphs: Sequence[jraph.GraphsTuple | None] | None = None,
    graphs_cutoff: float | None = None,
) -> list[jraph.GraphsTuple]:
    """Single-crystal graphs for the force-constant pass: positions, species, slots, shifts.

    Args:
        structures: the crystals.
        encoder: the potential (its cutoff).
        dtype: float64 graphs take positions and shifts from the structure in float64
            (the input pass's graphs are float32).
        maps: one `SymmetryMap` per structure (sets ``nodes["fc_slot"]``); None: every atom
            displaced.
        graphs: the input pass's graphs of the structures (None entries: none), reused if
            built at a cutoff >= the potential's (`graph_at_cutoff`); at a smaller cutoff
            they cannot serve and are rebuilt.
        graphs_cutoff: the cutoff ``graphs`` were built at (default: the potential's).
    """
    from dtnn_jax.inputs import crystal_graph

    cutoff = float(encoder.cutoff_angstrom)
    reuse = graphs is not None and (graphs_cutoff is None or graphs_cutoff >= cutoff)
    out = []
    for i, s in enumerate(structures):
        g = graphs[i] if reuse else None
        if g is not None:
            g = graph_at_cutoff(g, cutoff) if graphs_cutoff not in (None, cutoff) else g
        else:
            g = crystal_graph(s, encoder, source=f"#{i} ({s.formula})")
        shifts = g.edges["shifts"]
        positions = g.nodes["positions"]
        if dtype == "float64":
            lattice = np.asarray(s.lattice.matrix, np.float64)
            positions = np.asarray(s.cart_coords, np.float64)
            shifts = np.asarray(g.edges["offsets"], np.float64) @ lattice
        slots = np.arange(len(s)) if maps is None else maps[i].slot_of_atom
        nodes = {
            "positions": positions,
            "species": g.nodes["species"],
            "fc_slot": np.asarray(slots, np.int32),
        }
        out.append(g._replace(nodes=nodes, edges={"shifts": shifts}, globals={}))
    return out


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


def _batch_budget(graphs: Sequence[jraph.GraphsTuple], budget: BatchBudget) -> BatchBudget:
    """The budget a batch is padded with: above 2 x `LARGE_EDGE_QUANTUM` edges the edges go
    to the next multiple of the quantum instead of the next power of two (a 40-atom crystal
    of 2,208 edges: 3,072 padded, not 4,096; the time is that of the padded edges); a lone
    crystal above the budget also gets one graph slot and a multiple of 64 nodes."""
    n_edge = sum(int(g.n_edge[0]) for g in graphs)
    if n_edge <= 2 * LARGE_EDGE_QUANTUM:
        return budget
    min_edges = -(-n_edge // LARGE_EDGE_QUANTUM) * LARGE_EDGE_QUANTUM
    if len(graphs) > 1 or n_edge <= budget.max_edges:
        return dataclasses.replace(budget, min_edges=max(budget.min_edges, min_edges))
    n_node = int(graphs[0].n_node[0]) + 1
    return dataclasses.replace(
        budget, max_graphs=1, min_nodes=-(-n_node // 64) * 64, min_edges=min_edges
    )


def pad_batch(graphs: Sequence[jraph.GraphsTuple], budget: BatchBudget) -> jraph.GraphsTuple:
    """A batch padded to its bucket (see `_batch_budget`)."""
    return pad_to_bucket(graphs, _batch_budget(graphs, budget))


def padded_shape(graphs: Sequence[jraph.GraphsTuple], budget: BatchBudget) -> tuple[int, ...]:
    """(padded nodes, padded edges, graphs, max_atoms) of a batch: its compiled program."""
    from dtnn_jax.graph.batching import bucket_size

    used = _batch_budget(graphs, budget)
    n_node = sum(int(g.n_node[0]) for g in graphs) + 1
    n_edge = sum(int(g.n_edge[0]) for g in graphs)
    nodes = bucket_size(n_node, used.min_nodes, used.growth)
    return (
        nodes,
        bucket_size(n_edge, used.min_edges, used.growth),
        max(used.max_graphs, len(graphs)) + 1,
        nodes,  # `padded_max_atoms`
    )


def padded_max_atoms(batch: jraph.GraphsTuple) -> int:
    """The static ``max_atoms`` of a padded batch: its padded node count, so the compiled
    program depends on the padded shape alone (a larger M costs only the [n_graph, 3M, 3M]
    output, not Hessian-vector products: their count is the batch's own)."""
    return int(batch.nodes["positions"].shape[0])


def estimate_bytes(n_edge_padded: int, dtype: str = "float32", chunk: int = DEFAULT_CHUNK) -> float:
    """Estimated memory (bytes) the Hessian pass over a batch of this many padded edges
    adds to the process (see `BYTES_PER_EDGE`)."""
    per_edge = BYTES_PER_EDGE[dtype] + chunk * BYTES_PER_EDGE_TANGENT[dtype]
    return BYTES_OVERHEAD + per_edge * n_edge_padded


def fitting_chunk(n_edge_padded: int, dtype: str, chunk: int, free: float) -> int:
    """``chunk``, or 1 if ``chunk`` tangents at once would not fit in ``free`` bytes (the
    time per tangent barely depends on the chunk on CPU; the memory does)."""
    return chunk if estimate_bytes(n_edge_padded, dtype, chunk) <= free else 1


def available_bytes() -> float:
    """Memory the Hessian may use: ``$DTNN_JAX_HESSIAN_MEMORY_GB`` if set, else the free
    memory of the accelerator (GPU) or the host's available memory (CPU)."""
    if os.environ.get(MEMORY_ENV):
        return float(os.environ[MEMORY_ENV]) * 1e9
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def check_memory(
    graphs: Sequence[jraph.GraphsTuple],
    groups: Sequence[Sequence[int]],
    budget: BatchBudget,
    dtype: str,
    chunk: int,
    names: Sequence[str],
) -> None:
    """Raises `HessianMemoryError` naming the first batch that would not fit in memory."""
    free = available_bytes()
    for members in groups:
        shape = padded_shape([graphs[i] for i in members], budget)
        need = estimate_bytes(shape[1], dtype, min(chunk, 1))
        if need > free:
            i = max(members, key=lambda j: int(graphs[j].n_edge[0]))
            raise HessianMemoryError(
                f"{names[i]}: {int(graphs[i].n_node[0])} atoms, {int(graphs[i].n_edge[0])} "
                f"edges within the potential's cutoff: its force constants need ~"
                f"{need / 1e9:.1f} GB more memory, {free / 1e9:.1f} GB available; use the "
                f"fast model (--model {FAST_MODEL}: no Hessian), the electronic target "
                "alone, a smaller cell, or a machine with more memory "
                f"(${MEMORY_ENV} overrides the memory available)"
            )


def iter_force_constants(
    encoder: FrozenEncoder,
    graphs: Sequence[jraph.GraphsTuple],
    dtype: str = "float32",
    budget: BatchBudget | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    maps: Sequence[SymmetryMap] | None = None,
    timings: list | None = None,
    names: Sequence[str] | None = None,
) -> Iterator[list[tuple[int, tuple[np.ndarray, np.ndarray, float]]]]:
    """Yields, per finished batch, ``[(index, (K [3N, 3N], forces [N, 3], energy)), ...]``.

    Args:
        encoder: the potential.
        graphs: from `crystal_graphs` in the same ``dtype`` (and the same ``maps``).
        dtype: "float32" or "float64".
        budget: padded-batch limits (default `FORCE_CONSTANTS_BUDGET`).
        chunk: tangents per vmapped Hessian-vector product.
        progress: a progress bar (crystals; fractions within a large crystal).
        maps: the graphs' `SymmetryMap` (None: every atom displaced).
        timings: if a list, one dict per batch is appended: ``indices``, ``seconds`` (wall,
            padding to results on the host), ``n_node``, ``n_edge`` (padded), ``n_slots``
            (the batch's largest), ``max_atoms`` and ``compiled`` (True for the first batch
            of its shape in this process: its time includes any compilation).
        names: how a refused crystal is named (default ``#index``).

    Raises:
        HessianMemoryError: before any work, if a batch would not fit in memory.
    """
    from tqdm.auto import tqdm

    budget = budget or FORCE_CONSTANTS_BUDGET
    n_atoms = [int(g.n_node[0]) for g in graphs]
    n_edges = [int(g.n_edge[0]) for g in graphs]
    maps = list(maps) if maps is not None else [identity_map(n) for n in n_atoms]
    n_slots = [m.n_slots for m in maps]
    groups = batches(n_slots, n_atoms, n_edges, budget)
    names = names or [f"#{i}" for i in range(len(graphs))]
    check_memory(graphs, groups, budget, dtype, chunk, names)
    free = available_bytes()
    energy_fn = encoder_energy_fn(encoder)
    bar = tqdm(total=len(graphs), disable=not progress, desc="force constants", unit="crystal")
    with precision(dtype), bar:
        params = encoder_params(encoder, dtype)
        for members in groups:
            start = time.perf_counter()
            batch = pad_batch([graphs[i] for i in members], budget)
            max_atoms = padded_max_atoms(batch)
            slots = max(n_slots[i] for i in members)
            used_chunk = fitting_chunk(batch.senders.shape[0], dtype, chunk, free)
            n_chunks = -(-3 * slots // used_chunk)
            calls = range(0, n_chunks, TANGENT_CHUNKS_PER_CALL)
            k = None
            for first in calls:
                stop = min(first + TANGENT_CHUNKS_PER_CALL, n_chunks)
                out = batch_force_constants(
                    energy_fn, params, batch, max_atoms, used_chunk, np.int32(first), np.int32(stop)
                )
                part = np.asarray(jax.device_get(out.k_ev_per_a2))
                k = part if k is None else k + part
                bar.update(len(members) * (stop - first) / n_chunks)
            out = jax.device_get(out)
            shape = (batch.nodes["positions"].shape[0], batch.senders.shape[0], max_atoms)
            if timings is not None:
                timings.append(
                    {
                        "indices": list(members),
                        "seconds": time.perf_counter() - start,
                        "n_node": shape[0],
                        "n_edge": shape[1],
                        "max_atoms": max_atoms,
                        "n_slots": slots,
                        "compiled": shape not in _SHAPES_SEEN,
                    }
                )
            _SHAPES_SEEN.add(shape)
            results, offset = [], 0
            for j, i in enumerate(members):
                n, s = n_atoms[i], n_slots[i]
                columns = k[j, : 3 * n, : 3 * s]  # [3N, 3S]
                force = np.array(out.forces_ev_per_a[offset : offset + n])
                results.append(
                    (i, (expand_columns(columns, maps[i]), force, float(out.energy_ev[j])))
                )
                offset += n
            yield results


_SHAPES_SEEN: set = set()
"""Padded shapes run in this process (for `iter_force_constants`' ``compiled`` flag)."""


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
    """(K [3N, 3N], forces [N, 3], energy) per graph, in input order, no cache (see
    `iter_force_constants` for the arguments)."""
    results: list = [None] * len(graphs)
    for batch in iter_force_constants(
        encoder, graphs, dtype, budget, chunk, progress, maps, timings
    ):
        for i, result in batch:
            results[i] = result
    return results
