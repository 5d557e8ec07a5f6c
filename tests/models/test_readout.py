"""Physics of the DTNN readout: symmetry, rotation equivariance, padding, intensivity."""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from dtnn_jax.config import ReadoutConfig
from dtnn_jax.graph import safe_norm
from dtnn_jax.graph.batching import BatchBudget, pad_to_bucket
from dtnn_jax.models.cartesian import split_irreps
from dtnn_jax.models.readout import DTNN
from dtnn_jax.training.synthetic import synthetic_graph

IRREPS = "4x0e+3x1e+2x2e"
BUDGET = BatchBudget(max_graphs=3, max_nodes=64, max_edges=512, min_nodes=32, min_edges=256)
# float32 with O(1) outputs: rotation round-off is ~1e-6; 2e-5 leaves margin, while a real
# equivariance bug gives O(0.1) errors.
ATOL = 2e-5


def small_config(irreps: str = IRREPS, use_edges: bool = True) -> ReadoutConfig:
    return ReadoutConfig(
        input_irreps=irreps,
        width=8,
        vector_channels=4,
        tensor_channels=3,
        n_blocks=2,
        dropout_rate=0.0,
        use_edges=use_edges,
        avg_num_neighbors=6.0,
    )


def crystals(irreps: str = IRREPS, seed: int = 0) -> list[jraph.GraphsTuple]:
    rng = np.random.default_rng(seed)
    return [synthetic_graph(rng, irreps, n, 6) for n in (3, 5, 2)]


@functools.cache
def model_and_params(cfg: ReadoutConfig):
    model = DTNN(cfg)
    batch = pad_to_bucket(crystals(cfg.input_irreps), BUDGET)
    params = jax.jit(model.init)(jax.random.key(1), batch)
    return model, params, jax.jit(model.apply)


def rotate(graph: jraph.GraphsTuple, rot: jnp.ndarray, irreps: str) -> jraph.GraphsTuple:
    """Rotates a whole crystal: features by D(R), positions, shifts and lattice by R."""
    feats = e3nn.IrrepsArray(irreps, graph.nodes["features"]).transform_by_matrix(rot).array
    return graph._replace(
        nodes={
            **graph.nodes,
            "positions": graph.nodes["positions"] @ rot.T,
            "features": feats,
        },
        edges={**graph.edges, "shifts": graph.edges["shifts"] @ rot.T},
        globals={**graph.globals, "lattice": graph.globals["lattice"] @ rot.T},
    )


def test_cartesian_split_is_equivariant(key):
    rot = e3nn.rand_matrix(key, ())
    x = e3nn.normal(IRREPS, jax.random.key(3), (5,))  # [5, dim]

    @jax.jit  # eager e3nn ops compile one by one: jit the whole check input instead
    def split_both(x, rot):
        rotated = e3nn.IrrepsArray(IRREPS, x).transform_by_matrix(rot).array
        return split_irreps(x, IRREPS), split_irreps(rotated, IRREPS)

    parts, rotated = split_both(x.array, rot)
    np.testing.assert_allclose(rotated.scalars, parts.scalars, atol=1e-5)
    np.testing.assert_allclose(rotated.vectors, parts.vectors @ rot.T, atol=1e-5)
    expected = jnp.einsum("ij,ncjk,lk->ncil", rot, parts.tensors, rot)
    np.testing.assert_allclose(rotated.tensors, expected, atol=1e-5)
    # symmetric, traceless, norm preserving
    t = np.asarray(parts.tensors)
    np.testing.assert_allclose(t, np.swapaxes(t, -1, -2), atol=1e-6)
    np.testing.assert_allclose(np.trace(t, axis1=-2, axis2=-1), 0.0, atol=1e-5)
    l2 = np.asarray(x.array)[:, -10:].reshape(5, 2, 5)  # the 2x2e block is last
    np.testing.assert_allclose(
        np.linalg.norm(t, axis=(-2, -1)), np.linalg.norm(l2, axis=-1), rtol=1e-5
    )


def test_split_rejects_wrong_width():
    with pytest.raises(ValueError, match="columns"):
        split_irreps(jnp.zeros((2, 7)), IRREPS)


def test_safe_norm_has_finite_gradient_at_zero():
    grad = jax.grad(lambda x: safe_norm(x))(jnp.zeros(3))
    assert np.all(np.isfinite(grad))
    assert float(safe_norm(jnp.array([3.0, 4.0, 0.0]))) == pytest.approx(5.0)


def test_output_is_symmetric_and_finite():
    cfg = small_config()
    _, params, apply = model_and_params(cfg)
    out = apply(params, pad_to_bucket(crystals(), BUDGET))  # [4, 3, 3] incl. padding graph
    assert out.shape == (4, 3, 3)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, jnp.swapaxes(out, -1, -2), atol=1e-6)


@pytest.mark.parametrize("irreps", [IRREPS, "4x0e"], ids=["layer1-4", "scalars-only"])
def test_rotation_equivariance(irreps, key):
    cfg = small_config(irreps)
    _, params, apply = model_and_params(cfg)
    # Amplify the v v^T term: with scalar-only inputs the vectors come from bonds alone and
    # the anisotropy at initialisation is too small for the check to be sharp.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: 30.0 * x if "readout_vector" in jax.tree_util.keystr(path) else x,
        params,
    )
    batch = pad_to_bucket(crystals(irreps), BUDGET)
    rots = e3nn.rand_matrix(key, (4,))  # [4, 3, 3]
    out = apply(params, batch)[:3]  # [3, 3, 3] real graphs
    rotated = jax.vmap(lambda r: apply(params, rotate(batch, r, irreps))[:3])(rots)
    expected = jnp.einsum("rij,gjk,rlk->rgil", rots, out, rots)
    scale = float(jnp.max(jnp.abs(out)))
    assert scale > 1e-2  # a vanishing output would make the check empty
    np.testing.assert_allclose(rotated, expected, atol=ATOL * max(scale, 1.0))
    # The output is anisotropic, so the check is not satisfied by an isotropic tensor.
    aniso = out - jnp.trace(out, axis1=-2, axis2=-1)[:, None, None] / 3 * jnp.eye(3)
    assert float(jnp.max(jnp.abs(aniso))) > 1e-2


def test_padding_invariance():
    cfg = small_config()
    _, params, apply = model_and_params(cfg)
    graphs = crystals()
    batched = apply(params, pad_to_bucket(graphs, BUDGET))[:3]
    big = BatchBudget(max_graphs=5, min_nodes=64, min_edges=512)
    for i, g in enumerate(graphs):
        alone = apply(params, pad_to_bucket([g], big))[0]
        np.testing.assert_allclose(alone, batched[i], atol=1e-5)


def test_mean_uses_only_real_atoms():
    cfg = small_config()
    _, params, apply = model_and_params(cfg)
    batch = pad_to_bucket(crystals(), BUDGET)
    n_real = int(np.sum(batch.n_node[:-1]))
    feats = np.array(batch.nodes["features"])
    feats[n_real:] = 1e3 * np.random.default_rng(0).normal(size=feats[n_real:].shape)
    noisy = batch._replace(nodes={**batch.nodes, "features": feats})
    np.testing.assert_array_equal(apply(params, noisy)[:3], apply(params, batch)[:3])


def test_supercell_gives_same_tensor():
    """The tensor is intensive: two copies of a crystal's atoms and bonds change nothing."""
    cfg = small_config()
    _, params, apply = model_and_params(cfg)
    g = crystals()[1]
    n, e = int(g.n_node[0]), int(g.n_edge[0])
    doubled = jraph.GraphsTuple(
        nodes={k: np.concatenate([v, v]) for k, v in g.nodes.items()},
        edges={k: np.concatenate([v, v]) for k, v in g.edges.items()},
        senders=np.concatenate([g.senders, g.senders + n]),
        receivers=np.concatenate([g.receivers, g.receivers + n]),
        n_node=np.array([2 * n]),
        n_edge=np.array([2 * e]),
        globals=g.globals,
    )
    one = apply(params, pad_to_bucket([g, crystals()[0]], BUDGET))[0]
    two = apply(params, pad_to_bucket([doubled, crystals()[0]], BUDGET))[0]
    np.testing.assert_allclose(two, one, atol=1e-5)


def _perturb_edges(batch: jraph.GraphsTuple, seed: int) -> jraph.GraphsTuple:
    rng = np.random.default_rng(seed)
    n_real_edges = int(np.sum(batch.n_edge[:-1]))
    radial = np.array(batch.edges["radial"])
    radial[:n_real_edges] = rng.uniform(size=radial[:n_real_edges].shape)
    shifts = np.array(batch.edges["shifts"])
    shifts[:n_real_edges] += rng.normal(size=shifts[:n_real_edges].shape)
    return batch._replace(edges={**batch.edges, "radial": radial, "shifts": shifts})


def test_dtnn_simple_ignores_edges_and_dtnn_does_not():
    batch = pad_to_bucket(crystals(), BUDGET)
    perturbed = _perturb_edges(batch, 5)

    _, params, apply = model_and_params(small_config(use_edges=False))
    assert not any("bond" in k for k in params["params"]["block_0"])
    np.testing.assert_array_equal(apply(params, perturbed), apply(params, batch))

    _, params, apply = model_and_params(small_config(use_edges=True))
    diff = jnp.max(jnp.abs(apply(params, perturbed)[:3] - apply(params, batch)[:3]))
    assert float(diff) > 1e-4


def test_rejects_wrong_radial_width():
    cfg = small_config()
    model, params, _ = model_and_params(cfg)
    batch = pad_to_bucket(crystals(), BUDGET)
    bad = batch._replace(edges={**batch.edges, "radial": batch.edges["radial"][:, :5]})
    with pytest.raises(ValueError, match="n_radial"):
        model.apply(params, bad)


def test_edge_envelope_weights_every_bond_input():
    """Bonds at or beyond the cutoff give nothing (the neighbour count included); a legacy
    config (saved before the envelope, ``edge_cutoff_angstrom=None``) keeps the raw count."""
    import dataclasses

    from dtnn_jax.config import ExperimentConfig
    from dtnn_jax.graph import edge_vectors
    from dtnn_jax.models.readout import bond_moments, edge_envelope

    batch = pad_to_bucket(crystals(), BUDGET)
    length = np.asarray(safe_norm(edge_vectors(batch)))
    cutoff = float(np.median(length[: int(batch.n_edge[:3].sum())]))
    cfg = dataclasses.replace(small_config(), edge_cutoff_angstrom=cutoff)
    env = np.asarray(edge_envelope(jnp.asarray(length), cutoff))
    assert np.all(env[length >= cutoff] == 0.0) and np.all(env[length < cutoff] > 0.0)
    inside = batch._replace(edges={**batch.edges, "radial": batch.edges["radial"] * 0})
    count = np.asarray(bond_moments(inside, cfg).scalars[:, -1])  # the enveloped count
    legacy = dataclasses.replace(cfg, edge_cutoff_angstrom=None)
    raw = np.asarray(bond_moments(inside, legacy).scalars[:, -1])
    real = np.arange(len(length)) < int(batch.n_edge[:3].sum())
    expected = np.zeros_like(count)
    np.add.at(expected, np.asarray(batch.receivers)[real], env[real] / cfg.avg_num_neighbors)
    np.testing.assert_allclose(count, expected, rtol=1e-5, atol=1e-7)
    assert np.all(raw >= count) and np.any(raw > count)
    # configs written before the envelope existed read as legacy
    saved = ExperimentConfig.default("electronic").to_dict()
    del saved["readout"]["edge_cutoff_angstrom"]
    assert ExperimentConfig.from_dict(saved).readout.edge_cutoff_angstrom is None
    assert ExperimentConfig.default("electronic").readout.edge_cutoff_angstrom == 5.0
