"""`CrystalCache`: per-crystal keys, verification, LRU bound, concurrent writers, the CLI."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.encoder.cache import MAX_GB_ENV, CrystalCache, cache_entries


def _crystal(a: float) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _arrays(seed: int, n: int = 1000) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(size=n).astype(np.float32)}


def test_round_trip_keys_and_misplaced_entry(tmp_path):
    cache = CrystalCache(tmp_path, "features", "enc|L4")
    a, b = _crystal(5.6), _crystal(5.7)
    assert cache.load(a) is None
    cache.store(a, _arrays(0))
    np.testing.assert_array_equal(cache.load(a)["x"], _arrays(0)["x"])
    assert cache.load(b) is None  # another crystal
    assert CrystalCache(tmp_path, "features", "enc|L5").load(a) is None  # another setting
    assert CrystalCache(tmp_path, "force-constants", "enc|L4").load(a) is None  # another kind
    # an entry copied under another crystal's name (valid checksum, wrong key) is not used
    cache.path(cache.key(b)).parent.mkdir(parents=True, exist_ok=True)
    cache.path(cache.key(b)).write_bytes(cache.path(cache.key(a)).read_bytes())
    with pytest.warns(UserWarning, match="invalid"):
        assert cache.load(b) is None


def test_lru_eviction_keeps_recently_used(tmp_path):
    cache = CrystalCache(tmp_path, "features", "s", max_bytes=1e9)
    crystals = [_crystal(5.0 + 0.1 * i) for i in range(6)]
    for i, c in enumerate(crystals):
        cache.store(c, _arrays(i))
        os.utime(cache.path(cache.key(c)), (1000.0 + i, 1000.0 + i))  # stored in order
    size = cache.path(cache.key(crystals[0])).stat().st_size
    assert cache.load(crystals[0]) is not None  # used now: the most recent
    bounded = CrystalCache(tmp_path, "features", "s", max_bytes=4.5 * size)
    removed = bounded.evict()
    kept = [bounded.path(bounded.key(c)).exists() for c in crystals]
    assert removed == 2 and kept == [True, False, False, True, True, True]  # down to 4 (90 %)
    assert sum(s for _, s, _ in cache_entries(tmp_path)) <= 0.9 * 4.5 * size + 1


def test_size_limit_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_GB_ENV, "0.5")
    assert CrystalCache(tmp_path).max_bytes == 0.5e9
    monkeypatch.setenv(MAX_GB_ENV, "lots")
    with pytest.warns(UserWarning, match="not a number"):
        CrystalCache(tmp_path)


def _writer(directory: str, seed: int, barrier) -> None:
    cache = CrystalCache(directory, "force-constants", "s")
    crystals = [_crystal(5.0 + 0.1 * i) for i in range(5)]
    barrier.wait()
    for _ in range(10):
        for i, c in enumerate(crystals):
            cache.store(c, _arrays(i, 20000))  # the same content from both writers


def test_two_processes_writing_at_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, barrier)) for s in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = CrystalCache(tmp_path, "force-constants", "s")
    for i in range(5):
        np.testing.assert_array_equal(
            cache.load(_crystal(5.0 + 0.1 * i))["x"], _arrays(i, 20000)["x"]
        )
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == [] and len(cache_entries(tmp_path)) == 5


def test_unwritable_directory_only_warns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="not writable"):
        cache = CrystalCache(blocker / "sub")
    cache.store(_crystal(5.0), _arrays(0))  # nothing happens
    assert cache.load(_crystal(5.0)) is None


def test_cli_info_and_clear(tmp_path, capsys):
    from dtnn_jax.cli import main

    for kind in ("features", "force-constants"):
        cache = CrystalCache(tmp_path, kind, "s")
        for i in range(3):
            cache.store(_crystal(5.0 + 0.1 * i), _arrays(i))
    assert main(["cache", "info", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "features" in out and "force-constants" in out and "3 crystals" in out
    assert main(["cache", "clear", "--cache-dir", str(tmp_path), "--kind", "features"]) == 0
    assert "removed 3 entries" in capsys.readouterr().out
    assert len(cache_entries(tmp_path)) == 3
    assert main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert cache_entries(tmp_path) == []


def test_store_many_keeps_the_cache_bounded(tmp_path):
    probe = CrystalCache(tmp_path / "probe", "features", "s")
    probe.store(_crystal(4.0), _arrays(0))
    size = probe.path(probe.key(_crystal(4.0))).stat().st_size
    cache = CrystalCache(tmp_path / "c", "features", "s", max_bytes=3.5 * size)
    for batch in range(3):  # three finished batches of four crystals
        crystals = [_crystal(5.0 + 0.1 * (4 * batch + i)) for i in range(4)]
        cache.store_many([(c, _arrays(i)) for i, c in enumerate(crystals)])
        total = sum(s for _, s, _ in cache_entries(tmp_path / "c"))
        assert total <= 3.5 * size
    assert cache.load(crystals[-1]) is not None  # the newest stay
