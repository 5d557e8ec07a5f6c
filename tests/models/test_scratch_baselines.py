"""Physics of the from-scratch baselines (PaiNN, NequIP): symmetry, O(3) equivariance,
invariances, padding, intensivity, finite gradients, and their published-size parameter counts.
"""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.graph import BatchBudget, graph_from_structure, pad_to_bucket
from dtnn_jax.models.nequip import NequIP, NequIPConfig
from dtnn_jax.models.painn import PaiNN, PaiNNConfig
from dtnn_jax.models.readout import count_params

CUTOFF = 4.0
# One padded shape for every batch below, so each model compiles apply once.
BUDGET = BatchBudget(max_graphs=3, max_nodes=64, max_edges=1024, min_nodes=16, min_edges=160)
# float32, outputs O(0.1-1): rotation round-off is ~1e-6; a real equivariance bug is O(0.1).
ATOL = 2e-5

SMALL = {
    "painn": PaiNN(PaiNNConfig(features=16, n_blocks=2, n_radial=6, cutoff_angstrom=CUTOFF)),
    "nequip": NequIP(
        NequIPConfig(channels=8, n_layers=2, radial_mlp_width=8, cutoff_angstrom=CUTOFF)
    ),
}


def structures() -> list[Structure]:
    """Three small crystals of low symmetry (so the tensors are anisotropic)."""
    tric = Structure(
        Lattice.from_parameters(2.9, 3.4, 6.5, 75.0, 85.0, 110.0),
        ["Si", "O", "O"],
        [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.12, 0.71, 0.35]],
    )
    mono = Structure(
        Lattice.from_parameters(3.6, 3.3, 4.4, 90.0, 101.0, 90.0),
        ["Zn", "O"],
        [[0.05, 0.1, 0.0], [0.45, 0.6, 0.37]],
    )
    nacl = Structure(
        Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60),
        ["Na", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
    )
    return [tric, mono, nacl]


def graphs(structs=None) -> list[jraph.GraphsTuple]:
    return [graph_from_structure(s, CUTOFF) for s in structs or structures()]


def batch(gs: list[jraph.GraphsTuple]) -> jraph.GraphsTuple:
    b = pad_to_bucket(gs, BUDGET)
    assert b.nodes["species"].shape[0] == BUDGET.min_nodes, "fixture outgrew its bucket"
    assert b.senders.shape[0] == BUDGET.min_edges, "fixture outgrew its bucket"
    return jax.tree_util.tree_map(jnp.asarray, b)


@functools.cache
def compiled(name: str):
    model = SMALL[name]
    params = jax.jit(model.init)(jax.random.key(0), batch(graphs()))
    return params, jax.jit(model.apply)


def predict(name: str, b: jraph.GraphsTuple) -> np.ndarray:
    params, apply = compiled(name)
    return np.asarray(apply(params, b))


def transform(b: jraph.GraphsTuple, q: jnp.ndarray, t: jnp.ndarray) -> jraph.GraphsTuple:
    """Applies x -> Q x + t to the whole crystal: positions, shifts and lattice."""
    return b._replace(
        nodes={**b.nodes, "positions": b.nodes["positions"] @ q.T + t},
        edges={**b.edges, "shifts": b.edges["shifts"] @ q.T},
        globals={**b.globals, "lattice": b.globals["lattice"] @ q.T},
    )


@pytest.mark.parametrize("name", ["painn", "nequip"])
def test_symmetric_anisotropic_and_cubic_isotropic(name):
    out = predict(name, batch(graphs()))  # [4, 3, 3]
    assert out.shape == (4, 3, 3)
    np.testing.assert_allclose(out, np.swapaxes(out, -1, -2), atol=1e-6)
    # The triclinic crystal must give a genuinely anisotropic tensor (else the
    # equivariance test below would pass trivially) ...
    tric = out[0]
    aniso = tric - np.trace(tric) / 3 * np.eye(3)
    assert np.abs(aniso).max() > 50 * ATOL
    # ... and cubic NaCl an isotropic one, by symmetry.
    nacl = out[2]
    np.testing.assert_allclose(nacl, np.trace(nacl) / 3 * np.eye(3), atol=ATOL)


@pytest.mark.parametrize("name", ["painn", "nequip"])
def test_o3_equivariant_under_rotations_and_inversion(name, key):
    b = batch(graphs())
    params, _ = compiled(name)
    model = SMALL[name]
    rots = e3nn.rand_matrix(key, (4,))  # [4, 3, 3] proper rotations
    qs = jnp.concatenate([rots, -rots[:2]])  # and two improper ones (with inversion)
    t = jnp.zeros(3)

    @jax.jit
    def rotated(q):
        return model.apply(params, transform(b, q, t))

    out = np.asarray(predict(name, b))
    got = np.asarray(jax.vmap(rotated)(qs))  # [6, n_graph, 3, 3]
    want = np.einsum("qij,gjk,qlk->qgil", qs, out, qs)
    scale = max(1.0, np.abs(out).max())
    np.testing.assert_allclose(got, want, atol=ATOL * scale)
    # A wrong transformation law would be caught: rotating the output the other way fails.
    wrong = np.einsum("qji,gjk,qkl->qgil", qs[:4], out, qs[:4])
    assert np.abs(got[:4] - wrong).max() > 100 * ATOL * scale


@pytest.mark.parametrize("name", ["painn", "nequip"])
def test_translation_and_permutation_invariant(name):
    gs = graphs()
    b = batch(gs)
    out = predict(name, b)
    moved = predict(name, transform(b, jnp.eye(3), jnp.array([0.7, -1.3, 2.1])))
    np.testing.assert_allclose(moved, out, atol=ATOL)

    g = gs[0]
    perm = np.array([2, 0, 1])  # new atom k is old atom perm[k]
    inv = np.argsort(perm)
    permuted = g._replace(
        nodes={k: v[perm] for k, v in g.nodes.items()},
        senders=inv[g.senders].astype(np.int32),
        receivers=inv[g.receivers].astype(np.int32),
    )
    out_p = predict(name, batch([permuted, *gs[1:]]))
    np.testing.assert_allclose(out_p, out, atol=ATOL)


@pytest.mark.parametrize("name", ["painn", "nequip"])
def test_padding_batching_and_supercell(name):
    gs = graphs()
    together = predict(name, batch(gs))
    alone = np.stack([predict(name, batch([g]))[0] for g in gs])
    np.testing.assert_allclose(together[:3], alone, atol=ATOL)
    # Intensive: a 2x1x1 supercell is the same crystal, so the same tensor.
    tric = structures()[0]
    big = predict(name, batch(graphs([tric * (2, 1, 1)])))[0]
    np.testing.assert_allclose(big, together[0], atol=ATOL)


@pytest.mark.parametrize("name", ["painn", "nequip"])
def test_finite_gradients_with_padding(name):
    b = batch(graphs())
    params, _ = compiled(name)
    model = SMALL[name]

    def loss(p, positions):
        g = b._replace(nodes={**b.nodes, "positions": positions})
        return jnp.sum(model.apply(p, g) ** 2)

    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, b.nodes["positions"])
    leaves = jax.tree_util.tree_leaves(gp)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert bool(jnp.all(jnp.isfinite(gx)))
    assert sum(float(jnp.abs(x).sum()) for x in leaves) > 0
    # Padding atoms do not influence the real crystals.
    n_real = int(np.sum(b.n_node[:-1]))
    np.testing.assert_array_equal(np.asarray(gx[n_real:]), 0.0)


def test_published_size_parameter_counts():
    """Default sizes (PaiNN 128x3, NequIP 32x(0e+1o+2e) x3) in a stated range."""
    b = batch(graphs())
    counts = {}
    for name, model in (("painn", PaiNN()), ("nequip", NequIP())):
        shapes = jax.eval_shape(model.init, jax.random.key(0), b)
        counts[name] = count_params(shapes)
    print(f"parameter counts: {counts}")
    # PaiNN: 3 x (message 74k + update 115k) + 12k embedding + 25k head ~ 0.62M.
    assert 550_000 < counts["painn"] < 700_000
    # NequIP: 3 x (radial MLP 8-64-64-352 + linears) + embedding ~ 0.13M.
    assert 100_000 < counts["nequip"] < 160_000
