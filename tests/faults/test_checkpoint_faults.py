"""Missing, corrupt and incompatible checkpoints and bundles raise errors that say so."""

from __future__ import annotations

import json

import numpy as np
import optax
import pytest

from dtnn_jax.inference import BundleError, load_bundle, save_bundle
from dtnn_jax.training.checkpoint import FORMAT_FILE, Checkpointer, CheckpointError
from tests.properties.tiny_model import tiny_bundle


def _state(value: float):
    params = {"w": np.full((2, 3), value, np.float32)}
    return {"params": params, "opt_state": optax.adam(1e-3).init(params), "epoch": 1}


def test_checkpoint_from_an_incompatible_version_is_refused(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, _state(1.0))
    stamp = json.loads((tmp_path / FORMAT_FILE).read_text())
    assert stamp["format_version"] == 2 and stamp["format"] == "dtnn_jax.checkpoint"
    (tmp_path / FORMAT_FILE).write_text(json.dumps({**stamp, "format_version": 0}))
    with pytest.raises(CheckpointError, match=r"format version 0 .* reads version 2"):
        Checkpointer(tmp_path)
    (tmp_path / FORMAT_FILE).write_text("{ torn")
    with pytest.raises(CheckpointError, match="corrupt checkpoint format file"):
        Checkpointer(tmp_path)


def test_corrupt_or_mismatched_checkpoint_names_the_step(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, _state(3.0))
        # a different model's state: the arrays do not fit the template
        with pytest.raises(CheckpointError, match=r"checkpoints/3: cannot restore .* epoch 3"):
            ckpt.restore({"params": {"w": np.zeros((5, 5), np.float32)}, "epoch": 0})
    step_dir = tmp_path / "checkpoints" / "3"
    for f in step_dir.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\x00garbage" * 4)
    with Checkpointer(tmp_path) as ckpt, pytest.raises(CheckpointError, match="corrupt"):
        ckpt.restore(_state(0.0))


def test_bundle_with_other_encoder_weights_or_truncated_params(tmp_path):
    path = save_bundle(tiny_bundle(), tmp_path / "b")
    meta = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**meta, "encoder_sha256": "0" * 64}))
    with pytest.raises(BundleError, match=r"encoder weights 000000000000.*incompatible"):
        load_bundle(path)
    (path / "bundle.json").write_text(json.dumps(meta))
    data = (path / "params.npz").read_bytes()
    (path / "params.npz").write_bytes(data[: len(data) // 2])  # a download cut short
    with pytest.raises(BundleError, match=r"params\.npz: cannot read parameters"):
        load_bundle(path)
    (path / "bundle.json").unlink()
    with pytest.raises(BundleError, match=r"missing bundle\.json"):
        load_bundle(path)
