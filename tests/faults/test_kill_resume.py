"""Training killed mid-run (SIGKILL) resumes from its last checkpoint, losing <= 1 epoch.

A subprocess trains a tiny synthetic fit with a checkpoint every epoch; it is killed as soon
as the checkpoint of epoch 2 exists (at whatever point it is then: mid-epoch or mid-save),
restarted with the same command, and must resume from the newest complete checkpoint and end
with exactly the parameters and history of an uninterrupted in-process run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.training import Checkpointer, fit
from dtnn_jax.training.synthetic import synthetic_graphs

ROOT = Path(__file__).resolve().parents[2]
# the subprocess shares the test session's persistent compilation cache (see conftest.py)
CACHE = os.environ.get("DTNN_JAX_TEST_CACHE", str(ROOT / ".jax_cache"))
MAX_EPOCHS = 6

SCRIPT = f"""
import json, sys
import jax
import numpy as np
from flax import traverse_util
jax.config.update("jax_compilation_cache_dir", {CACHE!r})
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
from tests.faults.test_kill_resume import config, data
from dtnn_jax.training import fit

result = fit(config(), *data(), sys.argv[1])
flat = traverse_util.flatten_dict(jax.device_get(result.params), sep="/")
np.savez(sys.argv[2], **flat)
print(json.dumps({{"start_epoch": result.start_epoch, "history": result.history}}))
"""


def config() -> ExperimentConfig:
    """The quick config with a checkpoint every epoch (also used by the subprocess)."""
    base = ExperimentConfig.quick()
    train = dataclasses.replace(
        base.train,
        max_epochs=MAX_EPOCHS,
        decay_epochs=MAX_EPOCHS,
        checkpoint_every_epochs=1,
        patience_epochs=MAX_EPOCHS,
    )
    return dataclasses.replace(base, train=train)


def data():
    """16 training and 4 validation synthetic graphs."""
    graphs = synthetic_graphs(20, config().readout.input_irreps, seed=0)
    return graphs[:16], graphs[16:]


def _start(workdir: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(workdir), str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _complete_steps(workdir: Path) -> list[int]:
    ckpts = workdir / "checkpoints"
    if not ckpts.is_dir():
        return []
    return sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())


def test_sigkill_then_restart_resumes_bit_identically(tmp_path):
    workdir = tmp_path / "run"
    proc = _start(workdir, tmp_path / "killed.npz")
    deadline = time.monotonic() + 120
    while not any(s >= 2 for s in _complete_steps(workdir)):
        assert proc.poll() is None, f"training exited early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 120 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    with Checkpointer(workdir) as ckpt:
        saved = ckpt.latest_step()
    assert 2 <= saved < MAX_EPOCHS, saved  # killed mid-run, not after the end

    proc = _start(workdir, tmp_path / "resumed.npz")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    resumed = json.loads(stdout.strip().splitlines()[-1])
    # it resumed from the newest complete checkpoint: at most the epoch in flight was lost
    assert resumed["start_epoch"] == saved
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, MAX_EPOCHS + 1))

    reference = fit(config(), *data(), workdir=None)
    flat = traverse_util.flatten_dict(jax.device_get(reference.params), sep="/")
    with np.load(tmp_path / "resumed.npz") as got:
        assert set(got.files) == set(flat)
        for key, value in flat.items():
            np.testing.assert_array_equal(got[key], np.asarray(value), err_msg=key)

    def without_timing(history):  # wall time per epoch is the one thing allowed to differ
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert without_timing(resumed["history"]) == without_timing(reference.history)
