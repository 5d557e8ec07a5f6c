"""The fast model's PSD ionic head (`dtnn_jax.models.ionic.GramIonic`): for any weights
eps_ion is symmetric positive semi-definite, exactly 0 for a one-atom cell, rotates as
R eps R^T, and only the real atoms of a padded batch enter it."""

from __future__ import annotations

import dataclasses

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtnn_jax.config import ExperimentConfig, ReadoutConfig
from dtnn_jax.graph.batching import pad_to_bucket
from dtnn_jax.models.factory import model_for
from dtnn_jax.models.ionic import GramIonic
from dtnn_jax.training.synthetic import synthetic_graph
from tests.models.test_readout import BUDGET, IRREPS, rotate, small_config


def gram_config(channels: int = 2) -> ReadoutConfig:
    return dataclasses.replace(
        small_config(), ionic_channels=channels, target_scaling="none", output_map="affine"
    )


def batch_with_one_atom_cell():
    rng = np.random.default_rng(0)
    graphs = [synthetic_graph(rng, IRREPS, n, 6) for n in (3, 1, 4)]
    return pad_to_bucket(graphs, BUDGET)


@pytest.fixture(scope="module")
def model_params():
    model = GramIonic(gram_config())
    return model, model.init(jax.random.key(1), batch_with_one_atom_cell())


def test_psd_and_zero_for_one_atom(model_params):
    model, params = model_params
    eps = np.asarray(model.apply(params, batch_with_one_atom_cell()))  # [4, 3, 3]
    np.testing.assert_allclose(eps, np.swapaxes(eps, -1, -2), atol=1e-6)
    assert np.all(eps[1] == 0.0)  # the one-atom cell: no optical mode, exactly 0
    for k in (0, 2):
        values = np.linalg.eigvalsh(eps[k].astype(np.float64))
        assert values.min() >= -1e-6 * values.max()
        assert values.max() > 1e-3  # not trivially zero


def test_rotation_equivariance(model_params, key):
    model, params = model_params
    batch = batch_with_one_atom_cell()
    rots = e3nn.rand_matrix(key, (3,))
    out = model.apply(params, batch)[:3]
    rotated = jnp.stack([model.apply(params, rotate(batch, r, IRREPS))[:3] for r in rots])
    expected = jnp.einsum("rij,gjk,rlk->rgil", rots, out, rots)
    scale = float(jnp.max(jnp.abs(out)))
    np.testing.assert_allclose(rotated, expected, atol=2e-5 * max(scale, 1.0))


def test_config_and_factory():
    cfg = ExperimentConfig.default("ionic")
    gram = dataclasses.replace(
        cfg, readout=dataclasses.replace(gram_config(), input_irreps=cfg.readout.input_irreps)
    )
    assert isinstance(model_for(gram), GramIonic)
    with pytest.raises(ValueError, match="ionic_channels"):
        dataclasses.replace(small_config(), ionic_channels=1)  # standardize + matrix_exp
