"""Bundles round-trip; `predict` equals encoder + readout applied by hand; bad input is named."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.config import ExperimentConfig, ReadoutConfig
from dtnn_jax.encoder.features import graphs_with_features
from dtnn_jax.graph import BatchBudget, pad_to_bucket
from dtnn_jax.inference import (
    BundleError,
    DielectricModel,
    Member,
    ModelBundle,
    TargetModel,
    load_bundle,
    save_bundle,
)
from dtnn_jax.models import DTNN, TargetScaler
from dtnn_jax.training import evaluate
from tests.properties.tiny_model import bundle_metadata

# Affine output map: a random-init readout outputs |y| ~ 10-100, which through matrix_exp
# would compare exp(20)-sized numbers; the map itself is tested in tests/models.
SMALL = ReadoutConfig(
    width=16, vector_channels=4, tensor_channels=4, n_blocks=1, output_map="affine"
)


@pytest.fixture(scope="module")
def crystals():
    nacl = Structure(
        Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )
    tri = Structure(
        Lattice.from_parameters(3.1, 4.2, 5.3, 71.0, 83.0, 104.0),
        ["Si", "O", "O"],
        [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.62, 0.71, 0.55]],
    )
    return [nacl, tri]


@pytest.fixture(scope="module")
def bundle(crystals, tmp_path_factory):
    graphs = graphs_with_features(crystals, 4, cache_dir=tmp_path_factory.mktemp("cache"))
    batch = pad_to_bucket(graphs, BatchBudget(max_graphs=2))
    members = tuple(
        Member(
            params=DTNN(SMALL).init(jax.random.key(seed), batch),
            scaler=TargetScaler(offset=5.0 + seed, scale=2.0),
            seed=seed,
        )
        for seed in range(2)
    )
    targets = {
        t: TargetModel(
            config=ExperimentConfig(target=t, encoder_layer=4, readout=SMALL), members=members
        )
        for t in ("electronic", "total")
    }
    return ModelBundle(name="tiny", targets=targets, metadata=bundle_metadata()), graphs


def test_bundle_round_trip(bundle, tmp_path):
    b, _ = bundle
    path = save_bundle(b, tmp_path / "tiny")
    back = load_bundle(path)
    assert set(back.targets) == {"electronic", "total"}
    for t in back.targets:
        for m0, m1 in zip(b.targets[t].members, back.targets[t].members, strict=True):
            assert m0.scaler == m1.scaler
            leaves0 = jax.tree.leaves(m0.params)
            leaves1 = jax.tree.leaves(m1.params)
            assert all(np.array_equal(x, y) for x, y in zip(leaves0, leaves1, strict=True))


def test_predict_equals_encoder_plus_readout(bundle, crystals):
    b, graphs = bundle
    model = DielectricModel(b)
    mean, std = model.predict(crystals, target="total", return_std=True)
    assert mean.shape == (2, 3, 3)
    np.testing.assert_allclose(mean, np.swapaxes(mean, 1, 2), atol=1e-5)
    cfg = b.targets["total"].config
    by_hand = np.stack(
        [evaluate(m.params, cfg, graphs, m.scaler) for m in b.targets["total"].members]
    )
    np.testing.assert_allclose(mean, by_hand.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std, by_hand.std(0), rtol=1e-3, atol=1e-4)
    # the two members differ by their offset (5 vs 6): the spread is visible on the diagonal
    assert np.all(std[:, [0, 1, 2], [0, 1, 2]] > 0.1)
    poly_std = model.predict_detailed(crystals).eps_poly_std["total"]
    exact = (np.trace(by_hand, axis1=2, axis2=3) / 3).std(0)
    np.testing.assert_allclose(poly_std, exact, rtol=1e-3, atol=1e-4)


def test_one_bad_input_loses_nothing(bundle, crystals, tmp_path):
    model = DielectricModel(bundle[0])
    bad = tmp_path / "broken.cif"
    bad.write_text("not a cif at all")
    good = model.predict(crystals, target="total")
    with pytest.warns(UserWarning, match=r"broken\.cif"):
        mixed = model.predict([crystals[0], bad, crystals[1]], target="total", errors="nan")
    assert np.isnan(mixed[1]).all()
    np.testing.assert_allclose(mixed[[0, 2]], good, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"broken\.cif"):
        model.predict([crystals[0], bad], target="total")
    with pytest.raises(ValueError, match="target must be one of"):
        model.predict(crystals, target="ionic")


def test_corrupt_or_incompatible_bundles(bundle, tmp_path):
    path = save_bundle(bundle[0], tmp_path / "b")
    meta = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**meta, "format_version": 999}))
    with pytest.raises(BundleError, match="format version 999"):
        load_bundle(path)
    (path / "bundle.json").write_text("{ not json")
    with pytest.raises(BundleError, match="corrupt JSON"):
        load_bundle(path)
    (path / "bundle.json").write_text(json.dumps(meta))
    (path / "params.npz").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="cannot read parameters"):
        load_bundle(path)
    (path / "params.npz").unlink()
    with pytest.raises(BundleError, match=r"missing params\.npz"):
        load_bundle(path)
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle(tmp_path / "does-not-exist")
