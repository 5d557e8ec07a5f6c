"""Encoders as plug-ins: the registry, featurize/encoder_energy by name, O(3) predictions."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.encoder import available_encoders, get_encoder
from dtnn_jax.encoder.features import (
    encoder_energy,
    features_setting,
    featurize,
    graphs_with_features,
)
from dtnn_jax.graph import BatchBudget, pad_to_bucket
from dtnn_jax.inference import DielectricModel, Member, ModelBundle, TargetModel
from dtnn_jax.models import DTNN, TargetScaler
from dtnn_jax.models.cartesian import split_irreps

NEQUIX = "nequix-oam-1"
# One small padded shape for every Nequix call here: one compilation per entry point.
BUDGET = BatchBudget(max_graphs=2, max_nodes=16, max_edges=1024, min_nodes=16, min_edges=1024)


@pytest.fixture(scope="module")
def chiral():
    """A non-centrosymmetric, triclinic crystal (its mirror image is another crystal)."""
    return Structure(
        Lattice.from_parameters(3.4, 4.1, 4.6, 78.0, 84.0, 101.0),
        ["Si", "O", "O"],
        [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.62, 0.71, 0.55]],
    )


def test_registry_knows_the_shipped_encoders():
    assert {"sevennet-0", NEQUIX, "nequix-oam-1-pft"} <= set(available_encoders())
    nequix = get_encoder("Nequix-OAM-1")  # names are case-insensitive
    assert nequix is get_encoder(NEQUIX)
    assert nequix.cutoff_angstrom == 6.0 and nequix.num_layers == 4
    assert nequix.layer_irreps(2) == "128x0e+64x1o+32x2e+32x3o"
    assert nequix.layer_irreps(4) == "128x0e"
    assert nequix.inversion_equivariant and not get_encoder("sevennet-0").inversion_equivariant
    assert nequix.weights_sha256 != get_encoder("nequix-oam-1-pft").weights_sha256
    with pytest.raises(ValueError, match=r"unknown encoder 'foo'.*sevennet-0"):
        get_encoder("foo")
    with pytest.raises(ValueError, match=r"layer must be in 1\.\.4"):
        nequix.check_layer(5)


def test_featurize_and_energy_by_encoder_name(chiral):
    feats = featurize([chiral], layer=2, encoder=NEQUIX, budget=BUDGET)
    assert feats[0].shape == (3, 704) and np.all(np.isfinite(feats[0]))
    e_nequix = encoder_energy(chiral, encoder=NEQUIX)
    e_sevennet = encoder_energy(chiral)
    assert np.isfinite(e_nequix) and e_nequix != e_sevennet  # two different potentials


def test_cache_is_keyed_by_encoder(chiral, tmp_path):
    keys = {name: features_setting(get_encoder(name), 2) for name in available_encoders()}
    assert len(set(keys.values())) == len(keys)
    graphs = graphs_with_features([chiral], 2, cache_dir=tmp_path, progress=False, encoder=NEQUIX)
    assert graphs[0].nodes["features"].shape == (3, 704)
    assert graphs[0].edges["radial"].shape == (int(graphs[0].n_edge[0]), 8)


def test_readout_drops_l3_and_keeps_parity_labels():
    irreps = get_encoder(NEQUIX).layer_irreps(2)
    x = np.random.default_rng(0).normal(size=(5, 704)).astype(np.float32)
    parts = split_irreps(x, irreps)
    assert parts.scalars.shape == (5, 128)
    assert parts.vectors.shape == (5, 64, 3)  # 1o: true vectors
    assert parts.tensors.shape == (5, 32, 3, 3)  # 2e: true tensors; 32x3o dropped


def _nequix_model(chiral) -> DielectricModel:
    config = ExperimentConfig.quick(encoder=NEQUIX, encoder_layer=2)
    readout = dataclasses.replace(config.readout, output_map="affine")
    config = dataclasses.replace(config, readout=readout)
    graphs = graphs_with_features([chiral], 2, progress=False, encoder=NEQUIX)
    params = DTNN(readout).init(jax.random.key(0), pad_to_bucket(graphs, BatchBudget(max_graphs=1)))
    member = Member(params=params, scaler=TargetScaler.create(5.0, 2.0), seed=0)
    bundle = ModelBundle(
        name="nequix-tiny",
        targets={"total": TargetModel(config=config, members=(member,))},
        metadata={"encoder_sha256": get_encoder(NEQUIX).weights_sha256},
    )
    return DielectricModel(bundle)


def test_nequix_predictions_are_o3_equivariant_without_averaging(chiral):
    """eps of the inverted (mirror) crystal equals eps within 1e-5: O(3) by construction."""
    model = _nequix_model(chiral)
    assert model.encoder.key == NEQUIX
    inverted = Structure(chiral.lattice.matrix * -1, chiral.species, chiral.frac_coords)
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    rotation = Structure(chiral.lattice.matrix @ q.T, chiral.species, chiral.frac_coords)
    pred = model.predict_detailed([chiral, inverted, rotation], budget=BUDGET).mean["total"]
    scale = np.abs(pred[0]).max()
    assert np.abs(pred[1] - pred[0]).max() < 1e-5 * scale  # inversion
    np.testing.assert_allclose(pred[2], q @ pred[0] @ q.T, atol=1e-4 * scale)  # rotation
    assert np.abs(pred[0] - np.diag(np.diag(pred[0]))).max() > 1e-4 * scale  # anisotropic
