"""`featurize`, `encoder_energy` and the feature cache of `graphs_with_features`.

All crystals here are tiny, so every encoder call lands in the smallest bucket of the
default budget: one compilation for the whole module.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from dtnn_jax.encoder import cache as cache_module
from dtnn_jax.encoder import features as features_module
from dtnn_jax.encoder import get_encoder
from dtnn_jax.encoder.features import encoder_energy, featurize, graphs_with_features
from dtnn_jax.io import StructureInputError

# Batching changes only the summation order of float32 sums.
BATCH_RTOL, BATCH_ATOL = 1e-5, 1e-6
FEATURE_REL_TOL = 1e-4  # vs torch sevenn, as in test_sevennet_forward.py


def _reference_structure(reference, key: str) -> Structure:
    return Structure(
        Lattice(reference[f"{key}_lattice"]),
        reference[f"{key}_numbers"],
        reference[f"{key}_positions"],
        coords_are_cartesian=True,
    )


@pytest.fixture(scope="module")
def crystals():
    """Three small crystals of different sizes: NaCl (2), SiO2-like triclinic (3), GaAs (2)."""
    nacl = Structure(
        Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60),
        ["Na", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
    )
    triclinic = Structure(
        Lattice.from_parameters(3.1, 4.2, 5.3, 71.0, 83.0, 104.0),
        ["Si", "O", "O"],
        [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.62, 0.71, 0.55]],
    )
    gaas = Structure(
        Lattice.from_parameters(4.0, 4.0, 4.0, 60, 60, 60),
        ["Ga", "As"],
        [[0, 0, 0], [0.25, 0.25, 0.25]],
    )
    return [nacl, triclinic, gaas]


@pytest.fixture(scope="module")
def batch_features(crystals):
    """Layer-4 features of the three crystals featurized together."""
    return featurize(crystals, layer=4)


def test_shapes_per_layer(crystals):
    encoder = get_encoder()
    for layer in range(1, 6):
        feats = featurize(crystals[:2], layer=layer)
        width = 128 if layer == 5 else 480
        assert [f.shape for f in feats] == [(2, width), (3, width)], layer
        assert all(f.dtype == np.float32 and np.all(np.isfinite(f)) for f in feats)
        assert encoder.layer_irreps(layer) == ("128x0e" if layer == 5 else "128x0e+64x1e+32x2e")


def test_order_and_batching_invariance(crystals, batch_features):
    alone = [featurize(s, layer=4)[0] for s in crystals]
    for a, b in zip(alone, batch_features, strict=True):
        np.testing.assert_allclose(b, a, rtol=BATCH_RTOL, atol=BATCH_ATOL)
    reversed_feats = featurize(crystals[::-1], layer=4)[::-1]
    for a, b in zip(reversed_feats, batch_features, strict=True):
        np.testing.assert_allclose(b, a, rtol=BATCH_RTOL, atol=BATCH_ATOL)
    # the crystals really differ, so a mix-up of the order would be caught
    assert not np.allclose(batch_features[0], batch_features[2], atol=1e-2)


def test_matches_direct_forward_and_torch(sevennet, reference, reference_graph, jitted):
    params, config = sevennet
    forward, _ = jitted
    structure = _reference_structure(reference, "si4p4ru")
    n = len(structure)
    direct = forward(params, reference_graph("si4p4ru"), config)
    for layer in (1, 3, 5):
        got = featurize(structure, layer=layer)[0]
        want = np.asarray(direct.node_features[layer - 1].array)[:n]
        np.testing.assert_allclose(got, want, rtol=BATCH_RTOL, atol=BATCH_ATOL)
        ref = reference[f"si4p4ru_features_{layer}"]
        assert np.abs(got - ref).max() / np.abs(ref).max() < FEATURE_REL_TOL


def test_accepts_structure_atoms_and_files(crystals, batch_features, tmp_path):
    nacl = crystals[0]
    path = tmp_path / "nacl.json"
    path.write_text(json.dumps(nacl.as_dict()))
    atoms = AseAtomsAdaptor.get_atoms(crystals[1])
    got = featurize([str(path), atoms, path], layer=4)
    np.testing.assert_allclose(got[0], batch_features[0], rtol=BATCH_RTOL, atol=BATCH_ATOL)
    np.testing.assert_allclose(got[1], batch_features[1], rtol=BATCH_RTOL, atol=BATCH_ATOL)
    np.testing.assert_allclose(got[2], got[0])


def test_encoder_energy_matches_torch(reference):
    for key in ("snse", "rb2te"):
        structure = _reference_structure(reference, key)
        energy = encoder_energy(structure)
        assert abs(energy - float(reference[f"{key}_energy"])) / len(structure) < 1e-5, key


@pytest.mark.filterwarnings("ignore:No Pauling electronegativity")
@pytest.mark.parametrize(
    ("species", "element"),
    [(["Na", "Po"], "Po"), (["Am", "Cl"], "Am"), (["Og", "Cl"], "Og")],
)
def test_unsupported_element_is_named(crystals, species, element):
    assert all(z not in get_encoder().supported_z for z in (84, 95, 118))
    bad = Structure(crystals[0].lattice, species, crystals[0].frac_coords)
    with pytest.raises(StructureInputError, match=rf"#1.*unsupported element\(s\) {element}"):
        featurize([crystals[1], bad], layer=4)


def test_isolated_atom_is_named(crystals):
    lonely = Structure(Lattice.cubic(12.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(StructureInputError, match=r"#1.*(isolated|no neighbour)"):
        featurize([crystals[0], lonely], layer=4)


def test_corrupt_file_is_named(tmp_path, crystals):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_broken\n_cell_length_a 4.0\nthis is not a CIF loop\n")
    with pytest.raises(StructureInputError, match=r"broken\.cif"):
        featurize([crystals[0], bad], layer=4)


@pytest.mark.parametrize("layer", [0, 6, -1])
def test_layer_out_of_range(crystals, layer, tmp_path):
    with pytest.raises(ValueError, match=r"layer must be in 1\.\.5"):
        featurize(crystals[0], layer=layer)
    with pytest.raises(ValueError, match=r"layer must be in 1\.\.5"):
        graphs_with_features(crystals[:1], layer=layer, cache_dir=tmp_path)


# ----------------------------------------------------------------------------------------
# feature cache
# ----------------------------------------------------------------------------------------


def _no_encoder(*_args, **_kwargs):
    raise AssertionError("the encoder ran although the cache was valid")


def _cache_files(cache_dir):
    return sorted(p.name for p in (cache_dir / "crystals" / "features").glob("*/*.npz"))


def test_cache_written_then_read_without_encoder(crystals, batch_features, tmp_path, monkeypatch):
    graphs = graphs_with_features(crystals, layer=4, cache_dir=tmp_path, progress=False)
    names = _cache_files(tmp_path)
    assert len(names) == len(crystals)  # one entry per crystal
    for g, want, s in zip(graphs, batch_features, crystals, strict=True):
        assert g.nodes["features"].shape == (len(s), 480)
        assert g.edges["radial"].shape == (int(g.n_edge[0]), 8)
        np.testing.assert_allclose(g.nodes["features"], want, rtol=BATCH_RTOL, atol=BATCH_ATOL)

    monkeypatch.setattr(features_module, "encode", _no_encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid cache is read silently
        again = graphs_with_features(crystals[::-1], layer=4, cache_dir=tmp_path, progress=False)
    for a, b in zip(graphs, again[::-1], strict=True):  # any order, any sub-list
        np.testing.assert_array_equal(a.nodes["features"], b.nodes["features"])
        np.testing.assert_array_equal(a.edges["radial"], b.edges["radial"])
        np.testing.assert_array_equal(a.senders, b.senders)
    assert _cache_files(tmp_path) == names


def test_superset_encodes_only_new_crystals(crystals, tmp_path, monkeypatch):
    graphs_with_features(crystals[:2], layer=4, cache_dir=tmp_path, progress=False)
    encoded = []
    real_encode = features_module.encode

    def counting_encode(encoder, graphs, *args, **kwargs):
        encoded.append(len(graphs))
        return real_encode(encoder, graphs, *args, **kwargs)

    monkeypatch.setattr(features_module, "encode", counting_encode)
    graphs_with_features(crystals, layer=4, cache_dir=tmp_path, progress=False)
    assert encoded == [1] and len(_cache_files(tmp_path)) == 3


def test_cache_setting_depends_on_layer_and_crystal(crystals, tmp_path):
    encoder = get_encoder()
    cache = cache_module.CrystalCache(
        tmp_path, "features", features_module.features_setting(encoder, 4)
    )
    other_layer = cache_module.CrystalCache(
        tmp_path, "features", features_module.features_setting(encoder, 3)
    )
    key = cache.key(crystals[0])
    assert key == cache.key(crystals[0].copy()) and key != other_layer.key(crystals[0])
    assert key != cache.key(crystals[1])
    moved = crystals[0].copy()
    moved.translate_sites([1], [0.001, 0.0, 0.0], frac_coords=False)
    assert key != cache.key(moved)
    graphs_with_features(crystals[:2], layer=4, cache_dir=tmp_path, progress=False)
    graphs_with_features(crystals[:2], layer=5, cache_dir=tmp_path, progress=False)
    assert len(_cache_files(tmp_path)) == 4


@pytest.mark.parametrize("damage", ["truncate", "garbage", "checksum", "stale_graphs"])
def test_damaged_cache_is_detected_and_rebuilt(crystals, tmp_path, monkeypatch, damage):
    structures = crystals[:2]
    first = graphs_with_features(structures, layer=5, cache_dir=tmp_path, progress=False)
    setting = features_module.features_setting(get_encoder(), 5)
    cache = cache_module.CrystalCache(tmp_path, "features", setting)
    npz = cache.path(cache.key(structures[0]))
    if damage == "truncate":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "garbage":
        data = bytearray(npz.read_bytes())
        data[-200:-100] = b"\x00" * 100
        npz.write_bytes(bytes(data))
    elif damage == "checksum":  # altered numbers in a valid npz
        with np.load(npz) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["features"][0, 0] += 1.0
        np.savez(npz, **arrays)
    else:  # a valid checksum, but written for another graph (e.g. other graph-building code)
        with np.load(npz) as f:
            arrays = {k: f[k] for k in f.files if not k.startswith("__")}
        arrays["n_edge"] = arrays["n_edge"] + 1
        cache.store(structures[0], arrays)

    calls = []
    real_encode = features_module.encode

    def counting_encode(encoder, graphs, *args, **kwargs):
        calls.append(len(graphs))
        return real_encode(encoder, graphs, *args, **kwargs)

    monkeypatch.setattr(features_module, "encode", counting_encode)
    with pytest.warns(UserWarning, match="(invalid|does not match).*rebuilding"):
        rebuilt = graphs_with_features(structures, layer=5, cache_dir=tmp_path, progress=False)
    assert calls == [1]  # only the damaged crystal
    for a, b in zip(first, rebuilt, strict=True):
        np.testing.assert_array_equal(a.nodes["features"], b.nodes["features"])
    # the rebuilt cache is valid again: read without the encoder, without a warning
    monkeypatch.setattr(features_module, "encode", _no_encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphs_with_features(structures, layer=5, cache_dir=tmp_path, progress=False)
