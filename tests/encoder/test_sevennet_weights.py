"""The shipped SevenNet-0 weight files: architecture, shapes, conventions, provenance."""

from __future__ import annotations

import json
import math

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np
import pytest

from dtnn_jax.encoder.config import SevenNetConfig
from dtnn_jax.encoder.interface import WEIGHTS_DIR
from dtnn_jax.encoder.weights import conv_layout


def test_config_is_sevennet0(sevennet):
    _, config = sevennet
    assert config.cutoff_angstrom == 5.0 and config.cutoff_on_angstrom == 4.5
    assert config.n_radial_basis == 8 and config.radial_hidden == (64, 64)
    assert config.node_irreps == ("128x0e",) + ("128x0e+64x1e+32x2e",) * 4 + ("128x0e",)
    assert config.num_species == 89
    for d in config.conv_denominators:
        assert d == pytest.approx(math.sqrt(1295.2495), rel=1e-6)
    assert config.instruction_order == "unsorted"  # written by sevenn 0.9.1
    hash(config)  # static jit argument


def test_param_shapes_match_config(sevennet):
    params, config = sevennet
    assert params["species_embedding"].shape == (89, 128)
    assert params["bessel_frequencies"].shape == (8,)
    assert params["energy_shift"].shape == params["energy_scale"].shape == (89,)
    assert len(params["layers"]) == config.num_layers
    n_trainable = 0
    for k, layer in enumerate(params["layers"], start=1):
        paths = config.conv_paths(k)
        assert layer["radial"][-1].shape == (64, sum(p[3] for p in paths))
        for l1, entries in conv_layout(config, k).items():
            width = sum(2 * l3 + 1 for _, _, l3, _ in entries)
            assert layer["cg"][f"l{l1}"].shape == (2 * l1 + 1, 9, width)
        gate_in = dict((l, m) for m, l in config.gate_input_irreps(k))
        for l, block in layer["linear_out"].items():
            assert block.shape[1] == gate_in[int(l[1:])]
        n_trainable += sum(
            int(np.prod(a.shape))
            for name in ("self_connection", "linear_in", "linear_out", "radial")
            for a in (layer[name].values() if isinstance(layer[name], dict) else layer[name])
        )
    # layer 1's self-connection has no l > 0 input: those blocks are absent (zeros)
    assert set(params["layers"][0]["self_connection"]) == {"l0"}
    n_trainable += 89 * 128 + 8 + 128 * 64 + 64
    # SevenNet-0 has 842,440 trainable parameters (+ 178 frozen shift/scale)
    assert n_trainable == 842_440


def test_layer_tensor_product_paths(sevennet):
    _, config = sevennet
    assert config.conv_paths(1) == [(0, 0, 0, 128), (0, 1, 1, 128), (0, 2, 2, 128)]
    assert len(config.conv_paths(2)) == 15  # l1 x l2 -> l3 <= 2
    assert all(l3 == 0 for _, _, l3, _ in config.conv_paths(5))
    assert sum(p[3] for p in config.conv_paths(5)) == 224


def test_stored_w3j_are_e3nn_jax_cg_with_old_signs():
    """Pitfall 2 of DESIGN.md: (1,2,2), (2,1,2), (2,2,1) carry the opposite sign."""
    with np.load(WEIGHTS_DIR / "sevennet0.npz") as data:
        buffers = {k: data[k] for k in data.files if "_w3j_" in k}
    assert len(buffers) == 8 * 3  # layers 2-4
    flipped = set()
    for key, w3j in buffers.items():
        l1, l2, l3 = map(int, key.split("_w3j_")[1].split("_"))
        cg = np.asarray(e3nn.clebsch_gordan(l1, l2, l3))
        if np.allclose(w3j, cg, atol=1e-6):
            continue
        np.testing.assert_allclose(w3j, -cg, atol=1e-6)
        flipped.add((l1, l2, l3))
    assert flipped == {(1, 2, 2), (2, 1, 2), (2, 2, 1)}


def test_e3nn_jax_sh_equal_e3nn_torch_polynomials(rng):
    """e3nn (torch) and e3nn-jax share the real SH basis for l <= 2: no change of basis."""
    v = rng.normal(size=(16, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    x, y, z = v.T
    s3, s5, s15 = math.sqrt(3), math.sqrt(5), math.sqrt(15)
    # e3nn/o3/_spherical_harmonics.py (e3nn 0.5-0.6), component normalisation
    torch_sh = np.stack(
        [
            np.ones_like(x),
            s3 * x,
            s3 * y,
            s3 * z,
            s15 * x * z,
            s15 * x * y,
            s5 * (y**2 - 0.5 * (x**2 + z**2)),
            s15 * y * z,
            0.5 * s15 * (z**2 - x**2),
        ],
        axis=1,
    )
    jax_sh = e3nn.spherical_harmonics("0e+1o+2e", jnp.asarray(v), True, "component").array
    np.testing.assert_allclose(np.asarray(jax_sh), torch_sh, atol=1e-5)


def test_weight_files_carry_provenance():
    meta = json.loads((WEIGHTS_DIR / "sevennet0.json").read_text())
    assert meta["sevenn_wheel_version"] == "0.13.0"
    assert meta["source_sha256"] == (
        "7052cb42b7b3be42b40b97fa0d21077a48c54b5548948fc4dcf346629f813c36"
    )
    assert meta["architecture"]["sevenn_checkpoint_version"] == "0.9.1"
    notice = (WEIGHTS_DIR / "LICENSE-SevenNet.md").read_text()
    assert "MIT License" in notice and meta["source_sha256"] in notice


def test_config_validation_names_the_problem():
    kwargs = dict(
        cutoff_angstrom=5.0,
        cutoff_on_angstrom=4.5,
        n_radial_basis=8,
        radial_hidden=(64, 64),
        lmax_edge=2,
        node_irreps=("128x0e", "128x0e"),
        conv_denominators=(36.0,),
        species_z=(1, 8),
    )
    SevenNetConfig(**kwargs)
    with pytest.raises(ValueError, match="cutoff_on"):
        SevenNetConfig(**{**kwargs, "cutoff_on_angstrom": 6.0})
    with pytest.raises(ValueError, match="one more irreps"):
        SevenNetConfig(**{**kwargs, "conv_denominators": (36.0, 36.0)})
    with pytest.raises(ValueError, match="even"):
        SevenNetConfig(**{**kwargs, "node_irreps": ("128x0e", "128x0e+8x1o")})
