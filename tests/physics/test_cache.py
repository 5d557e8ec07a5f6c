"""The per-crystal force-constant cache: supersets, killed runs, damage, keys.

Uses the float64 pass of ``test_force_constants_nequix.py`` (same padded shape: no
compilation beyond the session's first).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from dtnn_jax.encoder import get_encoder
from dtnn_jax.physics import force_constants as fc_module
from dtnn_jax.physics.force_constants import force_constants, force_constants_setting
from tests.physics.conftest import TEST_BUDGET

ENCODER = "nequix-oam-1-pft"
ONE_PER_BATCH = dataclasses.replace(TEST_BUDGET, max_graphs=1)


def _call(structures, cache_dir, **kwargs):
    kwargs = {"dtype": "float64", "symmetry": False, "budget": TEST_BUDGET, **kwargs}
    return force_constants(structures, ENCODER, cache_dir=cache_dir, **kwargs)


def _entries(cache_dir):
    return sorted((cache_dir / "crystals" / "force-constants").glob("*/*.npz"))


@pytest.fixture
def computed(monkeypatch):
    """The crystals (by atom count and position) each call of the pass computes."""
    calls: list[list[int]] = []
    real = fc_module.iter_force_constants

    def counting(encoder, graphs, *args, **kwargs):
        calls.append([int(g.n_node[0]) for g in graphs])
        yield from real(encoder, graphs, *args, **kwargs)

    monkeypatch.setattr(fc_module, "iter_force_constants", counting)
    return calls


def test_superset_computes_only_new_crystals(nacl_rattled, sio2_rattled, tmp_path, computed):
    first = _call([sio2_rattled], tmp_path)
    assert computed == [[3]] and len(_entries(tmp_path)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # valid entries load silently
        both = _call([nacl_rattled, sio2_rattled], tmp_path)
    assert computed == [[3], [2]]  # only NaCl is new
    np.testing.assert_array_equal(both[1].k_ev_per_a2, first[0].k_ev_per_a2)
    assert both[1].provenance == first[0].provenance and both[0].n_atoms == 2
    again = _call([sio2_rattled, nacl_rattled], tmp_path)  # any order, any list
    assert computed == [[3], [2]] and len(_entries(tmp_path)) == 2
    np.testing.assert_array_equal(again[1].k_ev_per_a2, both[0].k_ev_per_a2)
    np.testing.assert_array_equal(again[0].forces_ev_per_a, both[1].forces_ev_per_a)


def test_killed_run_keeps_finished_batches(nacl_rattled, sio2_rattled, tmp_path, monkeypatch):
    real = fc_module.iter_force_constants

    def killed_after_one_batch(*args, **kwargs):
        stream = real(*args, **kwargs)
        yield next(stream)
        raise KeyboardInterrupt  # the user's Ctrl-C (or a kill) during the second batch

    monkeypatch.setattr(fc_module, "iter_force_constants", killed_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        _call([nacl_rattled, sio2_rattled], tmp_path, budget=ONE_PER_BATCH)
    assert len(_entries(tmp_path)) == 1  # the first batch's crystal was kept
    monkeypatch.setattr(fc_module, "iter_force_constants", real)
    sizes = []

    def counting(encoder, graphs, *args, **kwargs):
        sizes.append([int(g.n_node[0]) for g in graphs])
        yield from real(encoder, graphs, *args, **kwargs)

    monkeypatch.setattr(fc_module, "iter_force_constants", counting)
    _call([nacl_rattled, sio2_rattled], tmp_path, budget=ONE_PER_BATCH)
    assert sizes == [[3]]  # batches go by (displaced atoms, atoms): NaCl (2) first


def test_damaged_entry_is_rebuilt(nacl_rattled, sio2_rattled, tmp_path, computed):
    first = _call([nacl_rattled, sio2_rattled], tmp_path)
    entries = _entries(tmp_path)
    assert len(entries) == 2
    # damage 1: altered numbers in a valid npz: the checksum catches it; only it is redone
    with np.load(entries[0]) as f:
        arrays = {name: f[name] for name in f.files}
    arrays["k_ev_per_a2"][0, 1] += 1.0
    np.savez(entries[0], **arrays)
    with pytest.warns(UserWarning, match="invalid.*rebuilding"):
        rebuilt = _call([nacl_rattled, sio2_rattled], tmp_path)
    assert len(computed) == 2 and len(computed[1]) == 1
    for a, b in zip(first, rebuilt, strict=True):
        np.testing.assert_allclose(a.k_ev_per_a2, b.k_ev_per_a2, atol=1e-12)
    # damage 2: a truncated file
    entries[1].write_bytes(entries[1].read_bytes()[: entries[1].stat().st_size // 2])
    with pytest.warns(UserWarning, match="invalid"):
        _call([nacl_rattled, sio2_rattled], tmp_path)
    assert len(computed) == 3 and len(computed[2]) == 1
    _call([nacl_rattled, sio2_rattled], tmp_path)  # valid again: nothing computed
    assert len(computed) == 3


def test_settings_separate_entries_and_exclude_the_readout():
    pft, oam = get_encoder(ENCODER), get_encoder("nequix-oam-1")
    settings = {
        force_constants_setting(pft, "float32", 1e-5),
        force_constants_setting(pft, "float64", 1e-5),
        force_constants_setting(pft, "float32", None),
        force_constants_setting(oam, "float32", 1e-5),
    }
    assert len(settings) == 4
    # K depends on the potential only: its key names the encoder, weights, cutoff, dtype and
    # symmetry, nothing of a readout or bundle (so a retrained readout reuses every entry)
    setting = force_constants_setting(pft, "float32", 1e-5)
    assert pft.weights_sha256 in setting and str(pft.cutoff_angstrom) in setting


def test_bad_arguments(nacl_rattled, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        force_constants([nacl_rattled], ENCODER, dtype="float16", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="chunk"):
        force_constants([nacl_rattled], ENCODER, cache_dir=tmp_path, chunk=0)
