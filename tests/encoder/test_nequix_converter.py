"""The equinox-free ``.nqx`` reader of experiments/convert_nequix.py and the shipped weights."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dtnn_jax.encoder.interface import WEIGHTS_DIR
from dtnn_jax.encoder.nequix import NequixConfig, load_weights

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = Path("/work/shared/weights/nequix")
SHIPPED = {  # name -> sha256 of the source .nqx (atomicarchitects/nequix, models/)
    "nequix-oam-1": "6a43475eaeb32a7a049f36c1306d78aa1e7a17e8af37aeda7901c8fec0ca845c",
    "nequix-oam-1-pft": "4ce693d68886512aab50c84ea2400efd68163e11155f7c7babe98e695177e809",
}
SOURCE_COMMIT = "0ffdf881603d2c97f9105c64c3ec2df74dc1c224"

# A two-layer toy model: species H and O, hidden irreps 4x0e+2x1o, lmax 1.
TINY_HEADER = {
    "cutoff": 4.0,
    "atomic_numbers": [1, 8],
    "atom_energies": {"1": -1.0, "8": -2.0},
    "hidden_irreps": "4x0e + 2x1o",
    "lmax": 1,
    "n_layers": 2,
    "radial_basis_size": 3,
    "radial_mlp_size": 4,
    "radial_mlp_layers": 1,
    "radial_polynomial_p": 6.0,
    "index_weights": False,
    "layer_norm": True,
    "shift": 0.5,
    "scale": 2.0,
    "avg_n_neighbors": 10.0,
}
# Its leaves in equinox's tree order, derived by hand from nequix/model.py (0.4.5):
# atom_energies; per layer radial_mlp.layers[i].weights, linear_1/linear_2/skip ._weights
# (dict keys sorted), layer_norm.affine_weight[i]; readout._weights. Layer 1 has the paths
# 0e x 0e -> 0e and 0e x 1o -> 1o; layer 2 (scalar output) 0e x 0e -> 0e and 1o x 1o -> 0e.
TINY_LEAVES = [
    ("atom_energies", (2,)),
    ("layers.0.radial_mlp.layers.0.weights", (3, 4)),
    ("layers.0.radial_mlp.layers.1.weights", (4, 4)),
    ("layers.0.linear_1.w[0,0] 2x0e,2x0e", (2, 2)),
    ("layers.0.linear_2.w[0,0] 2x0e,6x0e", (2, 6)),
    ("layers.0.linear_2.w[1,1] 2x1o,2x1o", (2, 2)),
    ("layers.0.skip.w[0,0] 2x0e,6x0e", (2, 6)),
    ("layers.0.layer_norm.affine_weight.0", (6,)),
    ("layers.0.layer_norm.affine_weight.1", (2,)),
    ("layers.1.radial_mlp.layers.0.weights", (3, 4)),
    ("layers.1.radial_mlp.layers.1.weights", (4, 6)),
    ("layers.1.linear_1.w[0,0] 4x0e,4x0e", (4, 4)),
    ("layers.1.linear_1.w[1,1] 2x1o,2x1o", (2, 2)),
    ("layers.1.linear_2.w[0,0] 6x0e,4x0e", (6, 4)),
    ("layers.1.skip.w[0,0] 4x0e,4x0e", (4, 4)),
    ("layers.1.layer_norm.affine_weight.0", (4,)),
    ("readout.w[0,0] 4x0e,1x0e", (4, 1)),
]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def converter():
    spec = importlib.util.spec_from_file_location(
        "convert_nequix", REPO / "experiments" / "convert_nequix.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_nqx(path, header, leaves, trailing=()):
    """What nequix.model.save_model writes: a JSON line, then numpy.save of each leaf."""
    with open(path, "wb") as f:
        f.write((json.dumps(header) + "\n").encode())
        for leaf in [*leaves, *trailing]:
            np.save(f, leaf)


def _tiny_leaves(rng):
    leaves = [rng.normal(size=shape).astype(np.float32) for _, shape in TINY_LEAVES]
    leaves[0] = np.array([-1.0, -2.0], np.float32)  # the header's atom energies
    return leaves


def test_tree_order_of_a_tiny_model(converter):
    assert converter.leaf_spec(TINY_HEADER) == TINY_LEAVES


def test_reads_header_and_leaves_and_ignores_trailing_scalars(converter, tmp_path, rng):
    leaves = _tiny_leaves(rng)
    path = tmp_path / "tiny.nqx"
    _write_nqx(path, TINY_HEADER, leaves, trailing=[np.float64(6.0), np.int64(3), np.bool_(1)])
    header, read = converter.read_nqx(path)
    assert header == TINY_HEADER and len(read) == len(TINY_LEAVES) + 3
    named, n_trailing = converter.name_leaves(header, read)
    assert n_trailing == 3 and list(named) == [name for name, _ in TINY_LEAVES]
    for (name, _), leaf in zip(TINY_LEAVES, leaves, strict=True):
        np.testing.assert_array_equal(named[name], leaf)


def test_converted_tiny_model_loads_into_the_jax_layout(converter, tmp_path, rng):
    path = tmp_path / "tiny.nqx"
    _write_nqx(path, TINY_HEADER, _tiny_leaves(rng))
    _, meta = converter.convert(path, tmp_path / "out", "tiny")
    assert meta["n_model_leaves"] == 17 and meta["leaf_order"] == [n for n, _ in TINY_LEAVES]
    params, config = load_weights(tmp_path / "out" / "tiny")
    assert config.node_irreps == ("2x0e", "4x0e+2x1o", "4x0e") and config.num_layers == 2
    assert config.energy_scale == 2.0 and config.energy_shift_ev == 0.5
    assert set(params["layers"][1]["linear_1"]) == {"0e", "1o"}
    assert params["layers"][0]["radial"][-1].shape == (4, 4)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda leaves: leaves[:-1], "16 leaves in the file, the model has 17"),
        (lambda leaves: [*leaves, np.zeros(3, np.float32)], "array leaves after"),
        (lambda leaves: [leaves[0], leaves[2], leaves[1], *leaves[3:]], "shape"),
        (lambda leaves: [leaves[0].astype(np.int32), *leaves[1:]], "dtype"),
    ],
)
def test_rejects_a_wrong_tree(converter, tmp_path, rng, damage, message):
    path = tmp_path / "bad.nqx"
    _write_nqx(path, TINY_HEADER, damage(_tiny_leaves(rng)))
    with pytest.raises(converter.NqxFormatError, match=message):
        converter.name_leaves(*converter.read_nqx(path))


def test_rejects_bad_headers_and_other_architectures(converter, tmp_path, rng):
    path = tmp_path / "bad.nqx"
    path.write_bytes(b"not json\n")
    with pytest.raises(converter.NqxFormatError, match="JSON"):
        converter.read_nqx(path)
    with pytest.raises(converter.NqxFormatError, match="index_weights"):
        converter.leaf_spec({**TINY_HEADER, "index_weights": True})
    with pytest.raises(converter.NqxFormatError, match="lacks"):
        converter.leaf_spec({k: v for k, v in TINY_HEADER.items() if k != "lmax"})
    leaves = _tiny_leaves(rng)
    leaves[0] = np.array([-1.0, -3.0], np.float32)
    _write_nqx(path, TINY_HEADER, leaves)
    with pytest.raises(converter.NqxFormatError, match="atom_energies"):
        converter.convert(path, tmp_path / "out", "bad")


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_weights_match_their_json(converter, name):
    """No /work/shared needed: the npz, its json and the converter's tree agree."""
    meta = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert meta["source_sha256"] == SHIPPED[name] and meta["source_commit"] == SOURCE_COMMIT
    assert meta["licence"] == "MIT" and "2508.16067" in meta["citation"]
    spec = converter.leaf_spec(meta["nequix_header"])
    assert meta["leaf_order"] == [n for n, _ in spec] and len(spec) == 63
    with np.load(WEIGHTS_DIR / f"{name}.npz") as data:
        assert list(data.files) == meta["leaf_order"]
        assert [data[n].shape for n in data.files] == [shape for _, shape in spec]
        assert all(data[n].dtype == np.float32 for n in data.files)
        assert sum(data[n].size for n in data.files) == meta["n_parameters"] == 707_658
    config = NequixConfig.from_json(WEIGHTS_DIR / f"{name}.json")
    assert config.model_name == name and config.source_sha256 == SHIPPED[name]
    assert config.cutoff_angstrom == 6.0 and config.num_species == 89
    licence = (WEIGHTS_DIR / "LICENSE-Nequix.md").read_text()
    assert "MIT License" in licence and SHIPPED[name] in licence and SOURCE_COMMIT in licence


@pytest.mark.skipif(not SOURCE_DIR.exists(), reason="the Nequix .nqx sources are not here")
@pytest.mark.parametrize("name", list(SHIPPED))
def test_reconverting_the_source_reproduces_shipped_weights(converter, tmp_path, name):
    converter.convert(SOURCE_DIR / f"{name}.nqx", tmp_path, name)
    new_meta = json.loads((tmp_path / f"{name}.json").read_text())
    old_meta = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert new_meta == old_meta
    with np.load(tmp_path / f"{name}.npz") as new, np.load(WEIGHTS_DIR / f"{name}.npz") as old:
        assert new.files == old.files
        for key in old.files:
            np.testing.assert_array_equal(new[key], old[key], err_msg=key)
