"""The force-constant cache: round trip, damage -> rebuild, keys that separate settings.

Uses the float64 pass of ``test_force_constants_nequix.py`` (same shape: no compilation).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dtnn_jax.encoder import get_encoder
from dtnn_jax.physics import force_constants as fc_module
from dtnn_jax.physics.force_constants import force_constants, force_constants_cache_key
from tests.physics.conftest import TEST_BUDGET

ENCODER = "nequix-oam-1-pft"


def _call(structures, cache_dir, **kwargs):
    kwargs = {"dtype": "float64", "symmetry": False, "budget": TEST_BUDGET, **kwargs}
    return force_constants(structures, ENCODER, cache_dir=cache_dir, **kwargs)


def test_round_trip_and_damage_rebuild(nacl_rattled, sio2_rattled, tmp_path, monkeypatch):
    structures = [nacl_rattled, sio2_rattled]
    first = _call(structures, tmp_path)
    entries = sorted(tmp_path.glob("force-constants-*.npz"))
    assert len(entries) == 1 and entries[0].with_suffix(".json").exists()

    computed = []
    real = fc_module.compute_force_constants

    def counting(*args, **kwargs):
        computed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fc_module, "compute_force_constants", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid entry loads silently
        again = _call(structures, tmp_path)
    assert computed == []
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.k_ev_per_a2, b.k_ev_per_a2)
        np.testing.assert_array_equal(a.forces_ev_per_a, b.forces_ev_per_a)
        assert a.energy_ev == b.energy_ev and a.provenance == b.provenance

    # damage 1: altered numbers (a valid npz): the checksum catches it, the entry is rebuilt
    with np.load(entries[0]) as f:
        arrays = {name: f[name] for name in f.files}
    arrays["k_ev_per_a2"][5] += 1.0
    np.savez(entries[0], **arrays)
    with pytest.warns(UserWarning, match="invalid"):
        rebuilt = _call(structures, tmp_path)
    assert computed == [1]
    for a, b in zip(first, rebuilt, strict=True):
        np.testing.assert_allclose(a.k_ev_per_a2, b.k_ev_per_a2, atol=1e-12)
    # damage 2: a truncated file (a crash mid-write by another writer)
    entries[0].write_bytes(entries[0].read_bytes()[: entries[0].stat().st_size // 2])
    with pytest.warns(UserWarning, match="invalid"):
        _call(structures, tmp_path)
    assert computed == [1, 1]
    _call(structures, tmp_path)  # valid again: no further computation
    assert computed == [1, 1]


def test_keys_separate_settings(nacl_rattled, sio2_rattled):
    encoder = get_encoder(ENCODER)
    structures = [nacl_rattled, sio2_rattled]
    keys = {
        force_constants_cache_key(encoder, structures, "float32", 1e-5),
        force_constants_cache_key(encoder, structures, "float64", 1e-5),
        force_constants_cache_key(encoder, structures, "float32", None),
        force_constants_cache_key(encoder, structures[::-1], "float32", 1e-5),
        force_constants_cache_key(get_encoder("nequix-oam-1"), structures, "float32", 1e-5),
    }
    assert len(keys) == 5


def test_bad_arguments(nacl_rattled, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        force_constants([nacl_rattled], ENCODER, dtype="float16", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="chunk"):
        force_constants([nacl_rattled], ENCODER, cache_dir=tmp_path, chunk=0)
