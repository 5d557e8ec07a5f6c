"""eps(R x) = R eps(x) R^T and the invariances, for random crystals and vmapped rotations.

Three levels, each on hypothesis crystals (skewed triclinic cells, 1-20 atoms, any
SevenNet-0 element, atoms >= 1 A apart): the encoder features (rotate with e3nn's D(R)),
the readout alone (fed D(R)-rotated features on the rotated geometry) and the full model
through `DielectricModel.predict_detailed` (structures rotated and graphs rebuilt). The full
model must also be invariant under translation, atom permutation, supercells (the tensor is
intensive) and a change of unit cell (Niggli-reduced vs given), and symmetric.

Tolerance: float32 with |eps| ~ 10-100; measured round-off is <= 2e-6 of max |eps| for the
full model and <= 4e-6 of the feature scale for the encoder, so ``REL_TOL = 1e-4`` leaves
margin while a broken symmetry shows up at >= 1e-2 (e.g. the inversion test: 2.5e-2).
"""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from pymatgen.core import Structure

from dtnn_jax.encoder.sevennet import sevennet_forward
from dtnn_jax.graph import BatchBudget, pad_to_bucket
from dtnn_jax.inputs import crystal_graph
from dtnn_jax.models import DTNN
from tests.properties.tiny_model import (
    BUDGET,
    anisotropy,
    rel_error,
    rotated,
    structure_of,
    tiny_bundle,
    tiny_model,
    transform,
)
from tests.strategies import crystals, euler_angles, rotation_batches

REL_TOL = 1e-4
# A single crystal of <= 20 atoms always fits this padded shape (one compilation).
SINGLE = BatchBudget(max_graphs=1, min_nodes=32, min_edges=1024)
SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rotate_graph(graph, rotation):
    nodes = {**graph.nodes, "positions": graph.nodes["positions"] @ rotation.T}
    edges = {**graph.edges, "shifts": graph.edges["shifts"] @ rotation.T}
    glob = {**graph.globals, "lattice": graph.globals["lattice"] @ rotation.T}
    return graph._replace(nodes=nodes, edges=edges, globals=glob)


@functools.cache
def _rotated_encoder_and_readout():
    """Jitted (enc_params, readout_params, batch, rots [k, 3, 3], angles 3 x [k]) -> outputs.

    For every rotation, in one vmapped call: the encoder's layer features of the rotated
    crystal, D(R) applied to the unrotated features, both edge radial bases, and the
    readout alone applied to the D(R)-rotated features on the rotated geometry.
    """
    model = tiny_model()
    config = model.encoder.config
    layer = tiny_bundle().targets["total"].config.encoder_layer
    readout = DTNN(tiny_bundle().targets["total"].config.readout)

    @jax.jit
    def run(enc_params, readout_params, batch, rots, angles):
        base = sevennet_forward(enc_params, batch, config)
        feats = base.node_features[layer - 1]  # IrrepsArray [n_node, 480]

        def one(rot, alpha, beta, gamma):
            g = _rotate_graph(batch, rot)
            out = sevennet_forward(enc_params, g, config)
            expected = feats.transform_by_angles(alpha, beta, gamma).array  # D(R) f
            g = g._replace(
                nodes={**g.nodes, "features": expected},
                edges={**g.edges, "radial": base.edge_radial},
            )
            eps = readout.apply(readout_params, g, deterministic=True)  # [n_graph, 3, 3]
            return out.node_features[layer - 1].array, expected, out.edge_radial, eps

        return base.edge_radial, jax.vmap(one)(rots, *angles)

    return run


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crystal=crystals(), rots=rotation_batches(3))
def test_encoder_features_and_readout_alone_rotate(crystal, rots):
    model = tiny_model()
    graph = crystal_graph(structure_of(crystal), model.encoder)
    batch = jax.tree.map(jnp.asarray, pad_to_bucket([graph], SINGLE))
    rots = np.concatenate([np.eye(3)[None], rots]).astype(np.float32)  # identity first
    params = model.bundle.targets["total"].members[0].params
    radial0, (feats, expected, radial, eps) = _rotated_encoder_and_readout()(
        model.encoder.params, params, batch, jnp.asarray(rots), euler_angles(rots)
    )
    n = len(crystal)
    scale = float(jnp.max(jnp.abs(expected[0, :n])))
    assert scale > 1e-2
    # encoder: f(R x) = D(R) f(x); the radial basis is invariant
    err = float(jnp.max(jnp.abs(feats[:, :n] - expected[:, :n])))
    assert err < REL_TOL * scale, f"encoder features: {err:.2e} vs scale {scale:.2e}"
    np.testing.assert_allclose(radial, np.broadcast_to(radial0, radial.shape), atol=1e-5)
    # readout alone: y(D(R) f, R x) = R y(f, x) R^T
    eps = np.asarray(eps[:, 0])  # [k + 1, 3, 3] the real graph
    for r in range(1, len(rots)):
        assert rel_error(eps[r], transform(rots[r], eps[0])) < REL_TOL
    np.testing.assert_allclose(eps, np.swapaxes(eps, -1, -2), atol=1e-5 * np.abs(eps).max())
    # the l = 1, 2 features really move, so the checks are not empty
    irreps = tiny_bundle().targets["total"].config.readout.input_irreps
    l2 = e3nn.IrrepsArray(irreps, feats[0, :n]).filter("2e").array
    assert float(jnp.max(jnp.abs(l2))) > 1e-3


@SETTINGS
@given(crystal=crystals(), rots=rotation_batches(4))
def test_full_model_rotates_with_the_crystal(crystal, rots):
    s = structure_of(crystal)
    pred = tiny_model().predict_detailed([s, *[rotated(s, r) for r in rots]], budget=BUDGET)
    assert all(e is None for e in pred.errors), pred.errors
    eps = pred.mean["total"]  # [5, 3, 3]
    np.testing.assert_allclose(eps, np.swapaxes(eps, -1, -2), atol=1e-6 * np.abs(eps).max())
    assert anisotropy(eps[0]) > 1e-2  # random weights give anisotropic tensors
    for r, rot in enumerate(rots, start=1):
        assert rel_error(eps[r], transform(rot, eps[0])) < REL_TOL


def _translated(s: Structure, shift) -> Structure:
    out = s.copy()
    out.translate_sites(list(range(len(s))), shift, frac_coords=False, to_unit_cell=True)
    return out


def _permuted(s: Structure, seed: int) -> Structure:
    perm = np.random.default_rng(seed).permutation(len(s))
    return Structure.from_sites([s[int(i)] for i in perm])


@SETTINGS
@given(crystal=crystals(max_atoms=5))
def test_full_model_invariances(crystal):
    """Translation, permutation, 2x1x1 and 1x2x2 supercells, Niggli-reduced cell."""
    s = structure_of(crystal)
    reduced = s.get_reduced_structure()  # Niggli
    # pymatgen keeps the Cartesian frame: the reduced rows are integer combinations of the
    # given ones, so the tensor must not change (no rotation to undo)
    change = reduced.lattice.matrix @ np.linalg.inv(s.lattice.matrix)
    np.testing.assert_allclose(change, np.round(change), atol=1e-6)
    variants = {
        "given": s,
        "translated": _translated(s, [0.37, -1.21, 2.05]),
        "permuted": _permuted(s, len(s)),
        "supercell 2x1x1": s * (2, 1, 1),
        "supercell 1x2x2": s * (1, 2, 2),
        "niggli": reduced,
    }
    pred = tiny_model().predict_detailed(list(variants.values()), budget=BUDGET)
    assert all(e is None for e in pred.errors), pred.errors
    eps = pred.mean["total"]
    for name, e in zip(variants, eps, strict=True):
        assert rel_error(e, eps[0]) < REL_TOL, name
        np.testing.assert_allclose(e, e.T, atol=1e-6 * np.abs(e).max())
