"""`batch_force_constants` on a toy pair potential: exact Hessians, cheap to compile.

The shared-tangent trick is independent of the potential, so a smooth Morse pair energy
checks it against `jax.hessian` of the whole padded batch: crystals of different sizes,
chunks that do not divide 3M, slots (symmetry), padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtnn_jax.graph import BatchBudget, pad_to_bucket
from dtnn_jax.physics.force_constants import (
    atoms_bucket,
    batch_force_constants,
    batches,
    crystal_graphs,
)
from dtnn_jax.physics.symmetry import expand_columns, symmetry_map
from tests.physics.conftest import ToyEncoder, rattled, toy_energy

BUDGET = BatchBudget(max_graphs=5, max_nodes=32, max_edges=1024, min_nodes=32, min_edges=1024)
PARAMS = {"depth": 1.0}


@pytest.fixture(scope="module")
def toy_batch(cu, nacl_rattled, caf2, rutile):
    """(structures, symmetry maps, padded float64 batch, dense Hessian [3n_node, 3n_node])."""
    structures = [rattled(rutile, seed=5), cu, caf2, nacl_rattled, rutile]
    maps = [symmetry_map(s) for s in structures]
    with jax.enable_x64(True):
        batch = pad_to_bucket(crystal_graphs(structures, ToyEncoder(), "float64", maps), BUDGET)
        batch = jax.tree.map(jnp.asarray, batch)
        params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), PARAMS)

        def total(x):
            g = batch._replace(nodes={**batch.nodes, "positions": x})
            return jnp.sum(toy_energy(params, g))

        x = batch.nodes["positions"]
        hessian = np.asarray(jax.hessian(total)(x)).reshape(3 * x.shape[0], 3 * x.shape[0])
        forces = -np.asarray(jax.grad(total)(x))
    return structures, maps, batch, params, hessian, forces


def _blocks(structures):
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in structures])])
    return [slice(3 * offsets[g], 3 * offsets[g + 1]) for g in range(len(structures))]


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_all_atoms_displaced_equals_hessian(toy_batch, chunk):
    structures, _, batch, params, hessian, forces = toy_batch
    full = batch._replace(nodes={k: v for k, v in batch.nodes.items() if k != "fc_slot"})
    with jax.enable_x64(True):
        out = batch_force_constants(toy_energy, params, full, 8, chunk)
    k = np.asarray(out.k_ev_per_a2)  # [n_graph, 24, 24]
    assert k.shape == (6, 24, 24) and k.dtype == np.float64
    for g, (s, block) in enumerate(zip(structures, _blocks(structures), strict=True)):
        n = len(s)
        np.testing.assert_allclose(k[g, : 3 * n, : 3 * n], hessian[block, block], atol=1e-12)
        assert np.all(k[g, 3 * n :] == 0) and np.all(k[g, :, 3 * n :] == 0)
    assert np.all(k[-1] == 0)  # the padding graph
    n_real = sum(len(s) for s in structures)
    got = np.asarray(out.forces_ev_per_a)[:n_real]
    np.testing.assert_allclose(got, forces[:n_real], atol=1e-12)
    assert np.abs(hessian).max() > 1.0


def test_crystals_do_not_interact(toy_batch):
    """The premise of the shared tangents: the Hessian is block diagonal over crystals."""
    structures, _, _, _, hessian, _ = toy_batch
    blocks = _blocks(structures)
    for i, a in enumerate(blocks):
        for j, b in enumerate(blocks):
            if i != j:
                assert np.all(hessian[a, b] == 0)


def test_symmetry_slots_rebuild_the_hessian(toy_batch):
    """Only orbit representatives displaced; the rest rotated: exact for symmetric cells."""
    structures, maps, batch, params, hessian, _ = toy_batch
    assert [m.n_slots for m in maps] == [6, 1, 2, 2, 2]  # rattled rutile: no symmetry
    with jax.enable_x64(True):
        out = batch_force_constants(toy_energy, params, batch, 8, 3)
    k = np.asarray(out.k_ev_per_a2)
    for g, (s, m, block) in enumerate(zip(structures, maps, _blocks(structures), strict=True)):
        n = len(s)
        columns = k[g, : 3 * n, : 3 * m.n_slots]
        assert np.all(k[g, :, 3 * m.n_slots :] == 0)  # no tangent beyond the slots
        np.testing.assert_allclose(expand_columns(columns, m), hessian[block, block], atol=1e-12)


def test_grouping_sorts_by_tangents_and_keeps_every_crystal():
    n_atoms = [20, 2, 5, 10, 2, 8, 3]
    n_slots = [3, 2, 5, 4, 1, 8, 3]
    n_edges = [47 * n for n in n_atoms]
    groups = batches(n_slots, n_atoms, n_edges, BatchBudget(max_graphs=3, max_nodes=64))
    assert sorted(i for g in groups for i in g) == list(range(7))
    flat = [i for g in groups for i in g]
    assert [(n_slots[i], n_atoms[i]) for i in flat] == sorted(zip(n_slots, n_atoms, strict=True))
    assert all(len(g) <= 3 and sum(n_atoms[i] for i in g) <= 64 for g in groups)
    assert [atoms_bucket(n) for n in (1, 4, 5, 8, 9, 20, 33)] == [4, 4, 8, 8, 16, 32, 64]


def test_graph_at_a_larger_cutoff_serves_a_smaller_one(rutile, caf2):
    """Cut down by edge length, a 6 A graph has exactly the edges of a 4.5 A search."""
    from dtnn_jax.graph import graph_from_structure
    from dtnn_jax.physics.force_constant_pass import graph_at_cutoff

    for s in (rattled(rutile, seed=4), caf2):
        wide, want = graph_from_structure(s, 6.0), graph_from_structure(s, 4.5)
        got = graph_at_cutoff(wide, 4.5)

        def edges(g):
            off = np.asarray(g.edges["offsets"])
            return sorted(
                zip(g.receivers.tolist(), g.senders.tolist(), map(tuple, off.tolist()), strict=True)
            )

        assert int(got.n_edge[0]) == int(want.n_edge[0]) < int(wide.n_edge[0])
        assert edges(got) == edges(want)
        reused = crystal_graphs([s], ToyEncoder(), "float64", graphs=[wide], graphs_cutoff=6.0)
        assert edges(reused[0]._replace(edges={"offsets": got.edges["offsets"]})) == edges(want)


def test_tangent_windows_add_up_to_the_whole(toy_batch):
    """K computed in windows of chunks (progress within a large crystal) sums to K."""
    _, _, batch, params, _, _ = toy_batch
    with jax.enable_x64(True):
        whole = batch_force_constants(toy_energy, params, batch, 8, 3)
        parts = [
            batch_force_constants(toy_energy, params, batch, 8, 3, np.int32(a), np.int32(b))
            for a, b in ((0, 2), (2, 5), (5, -1))
        ]
    total = sum(np.asarray(p.k_ev_per_a2) for p in parts)
    np.testing.assert_allclose(total, np.asarray(whole.k_ev_per_a2), atol=1e-12)


def test_memory_estimate_refuses_before_any_work(caf2, monkeypatch):
    from dtnn_jax.errors import InputError
    from dtnn_jax.physics.force_constant_pass import HessianMemoryError, iter_force_constants

    graphs = crystal_graphs([caf2], ToyEncoder(), "float64")
    monkeypatch.setenv("DTNN_JAX_HESSIAN_MEMORY_GB", "0.01")
    with pytest.raises(HessianMemoryError, match=r"CaF2.*3 atoms.*GB.*fast model") as err:
        next(iter(iter_force_constants(ToyEncoder(), graphs, names=["CaF2"])))
    assert isinstance(err.value, InputError)
    monkeypatch.setenv("DTNN_JAX_HESSIAN_MEMORY_GB", "1000")
    from dtnn_jax.physics.force_constant_pass import check_memory

    check_memory(graphs, [[0]], BUDGET, "float64", 3, ["CaF2"])  # fits: no error


def test_padding_of_large_batches():
    """Above 2,048 edges a batch pads to a multiple of 1,024 edges, not the next power of
    two; a lone crystal above the budget gets one graph slot; the programs depend only on
    the padded shape (max_atoms = the padded nodes)."""
    import jraph

    from dtnn_jax.physics.force_constant_pass import padded_shape
    from dtnn_jax.physics.hessian import FORCE_CONSTANTS_BUDGET

    def sized(n_atoms, n_edges):
        return jraph.GraphsTuple(
            nodes=None, edges=None, senders=None, receivers=None, globals=None,
            n_node=np.array([n_atoms]), n_edge=np.array([n_edges]),
        )  # fmt: skip

    assert padded_shape([sized(40, 2208)], FORCE_CONSTANTS_BUDGET) == (64, 3072, 17, 64)
    assert padded_shape([sized(10, 500)], FORCE_CONSTANTS_BUDGET) == (16, 512, 17, 16)
    assert padded_shape([sized(216, 9720)], FORCE_CONSTANTS_BUDGET) == (256, 10240, 2, 256)
