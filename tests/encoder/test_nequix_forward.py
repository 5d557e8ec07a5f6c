"""The JAX Nequix against the original model, its O(3) symmetry, padding, Hessian, float64."""

from __future__ import annotations

from pathlib import Path

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dtnn_jax.encoder.nequix import load_nequix, nequix_forward
from dtnn_jax.graph import BatchBudget, build_graph, pad_to_bucket

FIXTURE = Path(__file__).parent / "fixtures" / "nequix_reference.npz"
MODELS = {"nequix-oam-1": "oam1", "nequix-oam-1-pft": "oam1pft"}
HIDDEN = "128x0e+64x1o+32x2e+32x3o"

# Parity tolerances (float32 on both sides). Measured on the fixture: energy <= 6.4e-7
# eV/atom, forces <= 6.2e-6 eV/A, features <= 1.9e-6 relative (max |diff| / max |ref| per
# layer and crystal), node energies <= 1.2e-6 eV.
ENERGY_TOL_EV_PER_ATOM = 1e-5
FORCE_TOL_EV_PER_ANGSTROM = 1e-4
FEATURE_REL_TOL = 1e-4

BATCH_BUDGET = BatchBudget(max_graphs=9, min_nodes=72, min_edges=3200)
SINGLE_BUDGET = BatchBudget(max_graphs=1, min_nodes=8, min_edges=128)


def _forward_and_forces(params, graph, config):
    """(EncoderOutput, forces [n_node, 3], gradient wrt params) in one compiled function."""

    def total(positions, p):
        g = graph._replace(nodes={**graph.nodes, "positions": positions})
        out = nequix_forward(p, g, config)
        return jnp.sum(out.energy), out

    (grad, grad_params), out = jax.grad(total, argnums=(0, 1), has_aux=True)(
        graph.nodes["positions"], params
    )
    return out, -grad, grad_params


# config is static; the two OAM models share one architecture, hence one compilation
forward_and_forces_jit = jax.jit(_forward_and_forces, static_argnums=2)


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _graph(reference, key):
    return build_graph(
        reference[f"{key}_positions"],
        reference[f"{key}_numbers"],
        reference[f"{key}_lattice"],
        cutoff_angstrom=6.0,
    )


@pytest.fixture(scope="module")
def batch(reference):
    """All reference crystals in one padded batch (the last graph is padding)."""
    keys = [str(k) for k in reference["keys"]]
    return keys, pad_to_bucket([_graph(reference, k) for k in keys], BATCH_BUDGET)


@pytest.fixture(scope="module")
def outputs_by_model(batch):
    """name -> (config, EncoderOutput, forces, gradient wrt params) on the reference batch."""
    out = {}
    for name in MODELS:
        params, config = load_nequix(name)
        out[name] = (config, *forward_and_forces_jit(params, batch[1], config))
    return out


@pytest.fixture(params=list(MODELS))
def model_outputs(request, outputs_by_model):
    """(model name, config, EncoderOutput, forces, gradient wrt params)."""
    return (request.param, *outputs_by_model[request.param])


def _split(values, n_node):
    return np.split(np.asarray(values), np.cumsum(np.asarray(n_node))[:-1])


def test_graphs_have_nequix_edge_counts(reference, batch):
    keys, graph = batch
    for key, n_edge in zip(keys, np.asarray(graph.n_edge), strict=False):
        assert n_edge == reference[f"{key}_n_edges"], key


def test_energy_and_forces_match_original(reference, batch, model_outputs):
    name, _, out, forces, _ = model_outputs
    tag = MODELS[name]
    keys, graph = batch
    forces = _split(forces, graph.n_node)
    atomic = _split(out.node_energies, graph.n_node)
    for i, key in enumerate(keys):
        n_atoms = len(reference[f"{key}_numbers"])
        e_err = abs(float(out.energy[i]) - float(reference[f"{key}_{tag}_energy"])) / n_atoms
        f_err = np.abs(forces[i] - reference[f"{key}_{tag}_forces"]).max()
        assert e_err < ENERGY_TOL_EV_PER_ATOM, (key, e_err)
        assert f_err < FORCE_TOL_EV_PER_ANGSTROM, (key, f_err)
        np.testing.assert_allclose(atomic[i], reference[f"{key}_{tag}_node_energies"], atol=1e-4)
    # the rattled crystals have large forces, so the comparison has teeth
    assert np.abs(reference[f"si4p4ru_rattled_{tag}_forces"]).max() > 0.5
    # the padding graph and nodes contribute nothing; their forces are finite zeros
    assert float(out.energy[-1]) == 0.0
    assert np.all(np.isfinite(forces[-1])) and np.all(forces[-1] == 0.0)


def test_layer_features_match_original(reference, batch, model_outputs):
    name, config, out, _, _ = model_outputs
    tag = MODELS[name]
    keys, graph = batch
    assert len(out.node_features) == config.num_layers == 4
    assert config.node_irreps[1:] == (HIDDEN, HIDDEN, HIDDEN, "128x0e")
    for k, feats in enumerate(out.node_features, start=1):
        assert feats.irreps == e3nn.Irreps(config.node_irreps[k])
        per_crystal = _split(feats.array, graph.n_node)
        for i, key in enumerate(keys):
            ref = reference[f"{key}_{tag}_features_{k}"]  # the first atoms only
            got = per_crystal[i][: ref.shape[0]]
            rel = np.abs(got - ref).max() / np.abs(ref).max()
            assert rel < FEATURE_REL_TOL, (key, k, rel)
        assert np.all(per_crystal[-1] == 0.0)  # padding nodes


def test_output_shapes_and_padding_edges(batch, model_outputs):
    _, config, out, _, _ = model_outputs
    _, graph = batch
    n_node, n_edge = graph.nodes["positions"].shape[0], graph.senders.shape[0]
    assert out.energy.shape == (graph.n_node.shape[0],)
    assert out.node_energies.shape == (n_node,)
    assert [f.shape for f in out.node_features] == [(n_node, 704)] * 3 + [(n_node, 128)]
    assert out.edge_radial.shape == (n_edge, config.n_radial_basis) == (n_edge, 8)
    assert out.edge_sh.irreps == e3nn.Irreps("0e+1o+2e+3o") and out.edge_sh.shape == (n_edge, 16)
    assert out.edge_vectors.shape == (n_edge, 3) and out.edge_lengths.shape == (n_edge,)
    real = np.asarray(out.edge_lengths) > 0
    assert real.sum() == int(np.sum(graph.n_edge[:-1])) < n_edge
    assert np.all(np.asarray(out.edge_radial)[~real] == 0.0)
    assert np.all(np.abs(np.asarray(out.edge_radial)[real]).max(axis=1) > 0)


def _transform(graph, matrix):
    """Applies the orthogonal matrix to every Cartesian vector of the graph (rows)."""
    nodes = {**graph.nodes, "positions": graph.nodes["positions"] @ matrix.T}
    edges = {**graph.edges, "shifts": graph.edges["shifts"] @ matrix.T}
    lattice = graph.globals["lattice"] @ matrix.T
    return graph._replace(nodes=nodes, edges=edges, globals={**graph.globals, "lattice": lattice})


@pytest.fixture(scope="module")
def transformed_outputs(reference):
    """One crystal, alone in a small padded graph, under I, R, -I (inversion) and -R."""
    params, config = load_nequix("nequix-oam-1")
    graph = jax.tree.map(
        jnp.asarray, pad_to_bucket([_graph(reference, "pi2_rattled")], SINGLE_BUDGET)
    )
    rotation = Rotation.random(random_state=3).as_matrix()
    matrices = np.stack([np.eye(3), rotation, -np.eye(3), -rotation])
    matrices = jnp.asarray(matrices, jnp.float32)  # [4, 3, 3]

    @jax.jit
    def outputs(p, g, mats):  # params and graph as arguments, not constants
        return jax.vmap(lambda m: nequix_forward(p, _transform(g, m), config))(mats)

    return graph, matrices, outputs(params, graph, matrices)


def _transformed(x: e3nn.IrrepsArray, wigner: dict) -> np.ndarray:
    """x transformed irrep by irrep with the Wigner matrices ``{irrep: D(Q)}`` (numpy)."""
    chunks = [
        np.einsum("ij,nuj->nui", wigner[ir], np.asarray(chunk)).reshape(chunk.shape[0], -1)
        for (_, ir), chunk in zip(x.irreps, x.chunks, strict=True)
    ]
    return np.concatenate(chunks, axis=1)


def test_o3_equivariance(transformed_outputs):
    """E is invariant; features and edge SH transform with D(Q) for Q = R, -I and -R."""
    _, matrices, out = transformed_outputs
    base = jax.tree.map(lambda a: a[0], out)
    irreps = sorted({ir for x in (*base.node_features, base.edge_sh) for _, ir in x.irreps})
    # D(Q) of an improper Q includes the parity: (-1)^l for 'e', -(-1)^l for 'o'
    wigners = jax.jit(jax.vmap(lambda q: [ir.D_from_matrix(q) for ir in irreps]))(matrices)
    for t in range(1, matrices.shape[0]):
        np.testing.assert_allclose(out.energy[t], base.energy, rtol=1e-6, atol=1e-5)
        wigner = {ir: np.asarray(d[t]) for ir, d in zip(irreps, wigners, strict=True)}
        pairs = [*zip(base.node_features, [f[t] for f in out.node_features], strict=True)]
        pairs.append((base.edge_sh, out.edge_sh[t]))
        for b, moved in pairs:
            scale = float(jnp.abs(b.array).max())
            # float32 round-off of 4 layers: measured <= 2.4e-6 of the feature scale
            err = np.abs(np.asarray(moved.array) - _transformed(b, wigner)).max()
            assert err < 1e-4 * scale, (t, b.irreps, err / scale)


def test_inversion_flips_odd_irreps(transformed_outputs):
    """Under x -> -x: 0e and 2e features are unchanged, 1o and 3o change sign (true O(3))."""
    _, _, out = transformed_outputs
    for k in range(3):  # layers 1-3 carry every irrep
        base, inverted = out.node_features[k][0], out.node_features[k][2]
        for irrep, sign in (("0e", 1), ("1o", -1), ("2e", 1), ("3o", -1)):
            b = base.filter(irrep).array
            assert float(jnp.abs(b).max()) > 1e-2, (k, irrep)  # present, so the test can fail
            np.testing.assert_allclose(inverted.filter(irrep).array, sign * b, atol=1e-4)


def test_padding_invariance(batch, outputs_by_model, transformed_outputs):
    """A crystal alone (little padding) gives what it gives inside a bigger padded batch."""
    keys, graph = batch
    _, _, out = transformed_outputs
    batch_out = outputs_by_model["nequix-oam-1"][1]
    i = keys.index("pi2_rattled")
    start, n = int(np.sum(graph.n_node[:i])), int(graph.n_node[i])
    np.testing.assert_allclose(out.energy[0][0], batch_out.energy[i], rtol=1e-6)
    for alone, inside in zip(out.node_features, batch_out.node_features, strict=True):
        np.testing.assert_allclose(alone.array[0][:n], inside.array[start : start + n], atol=1e-5)


def test_params_are_frozen(model_outputs):
    """The parameters enter through stop_gradient: their gradient is exactly zero."""
    grad_params = model_outputs[4]
    leaves = jax.tree.leaves(grad_params)
    assert leaves and all(float(jnp.abs(g).max()) == 0.0 for g in leaves)


def _energy_forces_hessian(positions, params, graph, config):
    """E [n_graph], forces [n_node, 3] and the Hessian of sum(E) [n_node, 3, n_node, 3].

    The Hessian as `jax.hessian` computes it (forward mode over the reverse-mode gradient),
    with the gradient and energies of the same pass as auxiliary outputs.
    """

    def total(x):
        g = graph._replace(nodes={**graph.nodes, "positions": x})
        energy = nequix_forward(params, g, config).energy
        return jnp.sum(energy), energy

    def gradient(x):
        (_, energy), grad = jax.value_and_grad(total, has_aux=True)(x)
        return grad, (energy, grad)

    hessian, (energy, grad) = jax.jacfwd(gradient, has_aux=True)(positions)
    return energy, -grad, hessian


@pytest.mark.slow  # compiling forward-over-reverse mode of 4 layers: ~10-25 s on 2 cores
def test_float64_hessian_on_padded_batch(reference):
    """float64 end to end (x64 on, params and positions cast): values, forces and the Hessian.

    On a tiny crystal padded with zero-length edges: the Hessian (forward over reverse
    mode) is finite, symmetric, obeys the acoustic sum rule and is zero on padding atoms;
    energy and forces match the float32 original.
    """
    key = "srs_rattled"
    params, config = load_nequix("nequix-oam-1")
    graph = jax.tree.map(jnp.asarray, pad_to_bucket([_graph(reference, key)], SINGLE_BUDGET))
    assert int(graph.n_edge[-1]) > 0  # padding edges of zero length are present
    n = int(graph.n_node[0])
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        nodes = {**graph.nodes, "positions": jnp.asarray(graph.nodes["positions"], jnp.float64)}
        edges = {**graph.edges, "shifts": jnp.asarray(graph.edges["shifts"], jnp.float64)}
        graph64 = graph._replace(nodes=nodes, edges=edges)
        energy, forces, hessian = jax.jit(_energy_forces_hessian, static_argnums=3)(
            graph64.nodes["positions"], params64, graph64, config
        )
        assert energy.dtype == forces.dtype == hessian.dtype == jnp.float64
        energy, forces, hessian = (np.asarray(a) for a in (energy, forces, hessian))
    assert abs(energy[0] - float(reference[f"{key}_oam1_energy"])) / n < ENERGY_TOL_EV_PER_ATOM
    np.testing.assert_allclose(forces[:n], reference[f"{key}_oam1_forces"], atol=1e-4)
    assert np.all(np.isfinite(hessian)) and hessian.shape == (8, 3, 8, 3)
    real = hessian[:n, :, :n, :]  # eV/A^2
    assert np.abs(real).max() > 1.0  # force constants of SrS: ~2.5 eV/A^2
    np.testing.assert_allclose(hessian, hessian.transpose(2, 3, 0, 1), atol=1e-9)
    np.testing.assert_allclose(real.sum(axis=2), 0.0, atol=1e-9)  # acoustic sum rule
    assert np.all(hessian[n:] == 0.0) and np.all(hessian[:, :, n:] == 0.0)  # padding atoms


def test_unknown_species_raise_on_host():
    _, config = load_nequix("nequix-oam-1")
    config.check_species([1, 8, 83, 94])  # H, O, Bi, Pu: known
    with pytest.raises(ValueError, match=r"\[0, 84, 95\]"):
        config.check_species([26, 84, 95, 0])  # Po and Am are not in Nequix, 0 is no element
