"""Shard files and multi-process settings, in one process (no JAX runtime started)."""

from __future__ import annotations

import numpy as np
import pytest

from dtnn_jax import distributed, shards
from dtnn_jax.distributed import DistributedError, ProcessGroup


@pytest.mark.parametrize("n_items,count", [(0, 3), (1, 3), (10, 3), (7, 7), (5, 8)])
def test_shard_indices_cover_every_item_once(n_items, count):
    seen = [
        i
        for index in range(count)
        for i in distributed.shard_indices(n_items, ProcessGroup(index, count))
    ]
    assert sorted(seen) == list(range(n_items))


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1", "a/b", "1/0", "2/1"])
def test_parse_shard_refuses_bad_text(text):
    with pytest.raises(shards.ShardError, match="--shard must be I/N"):
        shards.parse_shard(text)


def test_parse_shard():
    assert shards.parse_shard(" 2/5 ") == (2, 5)


def _write_all(tmp_path, count, meta, skip=()):
    for i in range(count):
        if i not in skip:
            shards.write_shard(tmp_path, "screen", i, count, meta, {"rows": [i]})


def test_read_shards_round_trip_in_order(tmp_path):
    meta = {"fingerprint": shards.fingerprint(["a", "b"]), "n_items": 2}
    for i in (2, 0, 1):
        shards.write_shard(tmp_path, "screen", i, 3, meta, {"rows": [i, float("nan")]})
    records = shards.read_shards(tmp_path, "screen", expect=meta)
    assert [r["payload"]["rows"][0] for r in records] == [0, 1, 2]
    assert np.isnan(records[0]["payload"]["rows"][1])
    assert not list((tmp_path / shards.SHARD_DIR).glob("*.tmp*"))


def test_missing_shard_names_the_rerun(tmp_path):
    _write_all(tmp_path, 4, {"n_items": 9}, skip=(1, 3))
    with pytest.raises(shards.ShardError, match=r"\[1, 3\] of 4 missing.*--shard 1/4"):
        shards.read_shards(tmp_path, "screen", expect={"n_items": 9})


def test_shards_of_another_pool_or_count_are_refused(tmp_path):
    _write_all(tmp_path, 2, {"fingerprint": "aaa"})
    with pytest.raises(shards.ShardError, match="another input"):
        shards.read_shards(tmp_path, "screen", expect={"fingerprint": "bbb"})
    shards.write_shard(tmp_path, "screen", 0, 3, {"fingerprint": "aaa"}, {})
    with pytest.raises(shards.ShardError, match="different runs"):
        shards.read_shards(tmp_path, "screen", expect={"fingerprint": "aaa"})


def test_no_shards(tmp_path):
    with pytest.raises(shards.ShardError, match="no screen shard files"):
        shards.read_shards(tmp_path, "screen", expect={})


def test_array_shard_round_trip(tmp_path):
    x = np.arange(12.0).reshape(2, 2, 3)
    shards.write_shard(tmp_path, "featurize", 0, 1, {"n": 2}, arrays={"x": x})
    (record,) = shards.read_shards(tmp_path, "featurize", expect={"n": 2})
    np.testing.assert_array_equal(shards.read_shard_arrays(tmp_path, record)["x"], x)


def test_fingerprint_depends_on_order_and_boundaries():
    assert shards.fingerprint(["ab", "c"]) != shards.fingerprint(["a", "bc"])
    assert shards.fingerprint(["a", "b"]) != shards.fingerprint(["b", "a"])


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(key, raising=False)
    for key in ("SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_requested_settings(clean_env):
    assert distributed.requested() is None
    assert distributed.requested("h:1", 2, 1) == ("h:1", 2, 1)
    assert distributed.requested("h:1", 1, 0) is None  # one process: nothing to start
    clean_env.setenv("JAX_COORDINATOR_ADDRESS", "h:9")
    clean_env.setenv("JAX_NUM_PROCESSES", "4")
    clean_env.setenv("JAX_PROCESS_ID", "3")
    assert distributed.requested() == ("h:9", 4, 3)


def test_requested_under_slurm_lets_jax_detect(clean_env):
    clean_env.setenv("SLURM_NTASKS", "8")
    clean_env.setenv("SLURM_PROCID", "5")
    assert distributed.requested() == (None, None, None)


@pytest.mark.parametrize(
    "args,match",
    [
        (("h:1", None, None), "needs all of"),
        ((None, 2, 0), "needs all of"),
        (("h:1", 2, 2), "not in 0..1"),
    ],
)
def test_incomplete_settings_are_refused(clean_env, args, match):
    with pytest.raises(DistributedError, match=match):
        distributed.requested(*args)
