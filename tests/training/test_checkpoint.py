"""The Orbax wrapper: round trip, and interrupted saves are never taken for finished ones."""

from __future__ import annotations

import numpy as np
import optax
import pytest

from dtnn_jax.training.checkpoint import Checkpointer, write_json_atomic


def state(value: float):
    params = {"w": np.full((2, 3), value, np.float32)}
    return {
        "params": params,
        "opt_state": optax.adamw(1e-3).init(params),
        "epoch": 3,
        "best_val_mae": float(value),
    }


def test_round_trip_and_latest(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() is None
        with pytest.raises(FileNotFoundError):
            ckpt.restore(state(0.0))
        ckpt.save(1, state(1.0))
        ckpt.save(2, state(2.0))
        restored = ckpt.restore(state(0.0))
    np.testing.assert_array_equal(restored["params"]["w"], 2.0)
    assert int(restored["epoch"]) == 3 and float(restored["best_val_mae"]) == 2.0
    assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)


def test_unfinished_save_is_ignored(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state(1.0))
    # What a crash in the middle of writing step 2 leaves behind: Orbax's temporary dir.
    (tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-1700000000").mkdir()
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 1
        np.testing.assert_array_equal(ckpt.restore(state(0.0))["params"]["w"], 1.0)


def test_write_json_atomic_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "h.json"
    write_json_atomic(path, [{"a": 1}])
    write_json_atomic(path, [{"a": 2}])
    assert path.read_text().count('"a": 2') == 1
    assert [p.name for p in path.parent.iterdir()] == ["h.json"]
