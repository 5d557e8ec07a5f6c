"""The Born-charge head and the eps_ion it gives with fixed Kinv: sum rule, nominal start,
the numpy reference contraction, O(3) equivariance of Z and eps, a one-atom cell."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.config import ReadoutConfig
from dtnn_jax.graph import BatchBudget, pad_to_bucket, with_features
from dtnn_jax.physics import ionic_dielectric as ionic_dielectric_np
from dtnn_jax.physics.born import BornCharges, IonicDielectric, nominal_charges
from dtnn_jax.physics.training import padded_kinv
from dtnn_jax.training.synthetic import synthetic_graphs

IRREPS = "8x0e+4x1o+2x2e"  # parity irreps like Nequix's
CONFIG = ReadoutConfig(
    input_irreps=IRREPS,
    width=16,
    vector_channels=4,
    tensor_channels=2,
    n_blocks=1,
    target_scaling="none",
    output_map="affine",
)
SLOTS = 6
BUDGET = BatchBudget(max_graphs=3, min_nodes=32, min_edges=256)


def _random_psd(rng, n):
    a = rng.normal(size=(3 * n, 3 * n))
    return 0.05 * a @ a.T


def _graphs(seed=0):
    rng = np.random.default_rng(seed)
    out, kinvs = [], []
    for g in synthetic_graphs(3, IRREPS, atoms_range=(2, SLOTS), seed=seed):
        n = int(g.n_node[0])
        kinv = _random_psd(rng, n)
        kinvs.append(kinv)
        out.append(
            with_features(
                g,
                nodes={"charge_nominal": rng.choice([-2.0, 1.0, 3.0], size=n).astype(np.float32)},
                globals_={
                    "kinv": padded_kinv(kinv, SLOTS)[None],
                    "volume": np.array([rng.uniform(40, 90)], np.float32),
                },
            )
        )
    return out, kinvs


def _excite(params):
    """Non-zero correction heads (they start at zero), so every part of Z is exercised."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    leaves = []
    for i, (path, leaf) in enumerate(flat):
        name = jax.tree_util.keystr(path)
        if "scale" in name or "born_isotropic" in name:
            leaf = 0.5 + 0.1 * jax.random.normal(jax.random.key(i), leaf.shape)
        leaves.append(leaf)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), leaves)


def test_untrained_head_gives_nominal_charges_with_the_sum_rule():
    graphs, _ = _graphs()
    batch = pad_to_bucket(graphs, BUDGET)
    model = BornCharges(CONFIG)
    params = model.init(jax.random.key(0), batch)
    z = np.asarray(model.apply(params, batch))  # [n_node, 3, 3]
    start = 0
    for g in graphs:
        n = int(g.n_node[0])
        q = g.nodes["charge_nominal"]
        expected = (q - q.mean())[:, None, None] * np.eye(3)
        np.testing.assert_allclose(z[start : start + n], expected, atol=1e-6)
        start += n
    assert np.all(z[start:] == 0)  # padding atoms carry no charge


def test_eps_matches_the_numpy_reference_and_the_sum_rule_holds_when_trained():
    graphs, kinvs = _graphs(1)
    batch = pad_to_bucket(graphs, BUDGET)
    model = IonicDielectric(CONFIG)
    params = _excite(model.init(jax.random.key(1), batch))
    eps, z = model.apply(params, batch, return_charges=True)
    eps, z = np.asarray(eps), np.asarray(z)
    start = 0
    for i, g in enumerate(graphs):
        n = int(g.n_node[0])
        zk = z[start : start + n]
        np.testing.assert_allclose(zk.sum(axis=0), 0.0, atol=1e-5)  # acoustic sum rule
        assert np.abs(zk - zk.mean(axis=0)).max() > 0.1  # not trivially zero
        ref = ionic_dielectric_np(zk, kinvs[i], float(g.globals["volume"][0]))
        np.testing.assert_allclose(eps[i], ref, rtol=2e-4, atol=1e-5 * np.abs(ref).max())
        assert np.linalg.eigvalsh(0.5 * (ref + ref.T)).min() > -1e-6 * np.abs(ref).max()  # PSD
        start += n
    np.testing.assert_array_equal(eps[len(graphs) :], 0.0)  # the padding crystal


def _transformed(graph, rotation):
    """A crystal graph under the orthogonal map ``rotation`` (features by e3nn's D)."""
    feats = e3nn.IrrepsArray(IRREPS, jnp.asarray(graph.nodes["features"]))
    nodes = {
        **graph.nodes,
        "positions": graph.nodes["positions"] @ rotation.T,
        "features": np.asarray(feats.transform_by_matrix(jnp.asarray(rotation, jnp.float32)).array),
    }
    edges = {**graph.edges, "shifts": graph.edges["shifts"] @ rotation.T}
    return graph._replace(nodes=nodes, edges=edges)


@pytest.mark.parametrize("improper", [False, True])
def test_born_charges_and_eps_are_o3_equivariant(improper):
    """Z_k(Rx) = R Z_k(x) R^T and eps(Rx) = R eps R^T for rotations and rotoinversions: the
    axial part is a cross product of two 1o channels, so Z stays inversion-even.

    K of the transformed crystal is R K R^T per atom block (Kinv likewise)."""
    graphs, _ = _graphs(2)
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))  # proper
    if improper:
        rotation = -rotation
    rotation = rotation.astype(np.float32)
    moved = []
    for g in graphs:
        block = np.kron(np.eye(SLOTS), rotation)
        kinv = (block @ g.globals["kinv"][0] @ block.T).astype(np.float32)
        moved.append(with_features(_transformed(g, rotation), globals_={"kinv": kinv[None]}))
    model = IonicDielectric(CONFIG)
    batch = pad_to_bucket(graphs, BUDGET)
    params = _excite(model.init(jax.random.key(2), batch))
    eps, z = (np.asarray(a) for a in model.apply(params, batch, return_charges=True))
    eps_r, z_r = (
        np.asarray(a)
        for a in model.apply(params, pad_to_bucket(moved, BUDGET), return_charges=True)
    )
    scale = np.abs(z).max()
    np.testing.assert_allclose(z_r, rotation @ z @ rotation.T, atol=2e-5 * scale)
    np.testing.assert_allclose(eps_r, rotation @ eps @ rotation.T, atol=2e-5 * np.abs(eps).max())


def test_nominal_charges():
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(nominal_charges(nacl), [1.0, -1.0])
    cu = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    np.testing.assert_array_equal(nominal_charges(cu), [0.0])  # no balanced assignment
    sn_sb = Structure(Lattice.cubic(6.1), ["Sn", "Sb"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert nominal_charges(sn_sb).sum() == pytest.approx(0.0)


def test_one_atom_cell_has_no_ionic_response():
    graph = synthetic_graphs(1, IRREPS, atoms_range=(1, 1), seed=5)[0]
    graph = with_features(
        graph,
        nodes={"charge_nominal": np.array([2.0], np.float32)},
        globals_={
            "kinv": padded_kinv(np.zeros((3, 3)), SLOTS)[None],
            "volume": np.array([20.0], np.float32),
        },
    )
    model = IonicDielectric(CONFIG)
    batch = pad_to_bucket([graph], BUDGET)
    params = _excite(model.init(jax.random.key(0), batch))
    eps, z = model.apply(params, batch, return_charges=True)
    np.testing.assert_array_equal(np.asarray(z)[0], 0.0)  # one atom: the sum rule leaves 0
    np.testing.assert_array_equal(np.asarray(eps)[0], 0.0)
