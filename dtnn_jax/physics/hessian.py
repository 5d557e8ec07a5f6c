"""The batched autodiff Hessian of a frozen potential: one padded batch of crystals -> K.

K is the Hessian of the potential energy with respect to the Cartesian positions at the
given geometry, lattice fixed (eV/A^2), row / column ``3 * atom + direction``.

How (`batch_force_constants`): the crystals of a padded batch do not interact (no edge joins
two of them), so one tangent per (slot ``s``, direction ``d``) displaces the s-th displaced
atom of *every* crystal at once, and its Hessian-vector product (forward mode over the
reverse-mode forces: ``jax.linearize`` of ``jax.grad`` of the summed energy, so the primal
forward and backward pass run once per call) is column ``3s + d`` of every crystal's K at
once. 3S products, S the largest number of displaced atoms in the batch, give all K of the
batch; they run in chunks of ``chunk`` tangents (``jax.vmap`` inside a ``lax.fori_loop``
over the chunks ``[first_chunk, stop_chunk)``, dynamic bounds, so a large crystal can be
done in several calls with progress between them and no recompilation; the static
``max_atoms`` only sizes the output). For Nequix encoders the energy differentiated is
Nequix's own energy in its contraction form (`dtnn_jax.encoder.nequix.nequix_forward(...,
contract=True)`), whose second derivatives compile to ~6x faster code on CPU.

Precision: float32 by default (the encoders' own precision). ``dtype="float64"`` runs the
computation inside `precision` (``jax.enable_x64``) with the parameters cast
(`encoder_params`), leaving the rest of the process in float32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jraph

from dtnn_jax.encoder.interface import FrozenEncoder
from dtnn_jax.graph import BatchBudget, bucket_size, graph_mask, node_mask

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
    first_chunk: jax.Array | int = 0,
    stop_chunk: jax.Array | int = -1,
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
        first_chunk, stop_chunk: the chunks of tangents computed, ``[first, stop)``
            (dynamic; ``stop_chunk < 0``: through the batch's last); the other columns are
            zero.

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
    n_chunks = (3 * n_slots + chunk - 1) // chunk  # the batch's own number of chunks
    stop = jnp.where(stop_chunk < 0, n_chunks, jnp.minimum(stop_chunk, n_chunks))

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
    columns = jax.lax.fori_loop(first_chunk, stop, body, columns)  # [3M+, n_graph, M, 3]
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
