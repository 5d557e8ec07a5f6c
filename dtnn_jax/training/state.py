"""The training state and how a run directory saves, resumes and refuses it.

`TrainState` is everything the next epoch needs; it is saved with the run's history and
configuration as one Orbax checkpoint (`dtnn_jax.training.checkpoint`), so an interrupted run
restarted with the same data continues bit for bit. A run directory whose checkpoint was
written by a different configuration is refused (or, with ``restart=True``, started again):
resuming silently under another learning-rate schedule or model would mix two runs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import flax.struct
import numpy as np

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.errors import InputError
from dtnn_jax.training.checkpoint import Checkpointer

log = logging.getLogger("dtnn_jax")

# Settings that may differ between a run and its resume: they change nothing computed.
_FREE_TRAIN_SETTINGS = ("progress_bar", "checkpoint_every_epochs")


@flax.struct.dataclass
class TrainState:
    """Everything the next epoch needs.

    Attributes:
        params: the current readout parameters.
        opt_state: the optimizer state (readout parameters only).
        best_params: the parameters with the best validation MAE so far.
        epoch: completed epochs.
        step: completed optimisation steps (the schedule's and dropout's clock).
        best_val_mae: the best validation MAE_tensor so far (inf before the first).
        best_epoch: the epoch that gave ``best_params`` (0 before the first validation).
    """

    params: Any
    opt_state: Any
    best_params: Any
    epoch: Any = 0
    step: Any = 0
    best_val_mae: Any = float("inf")
    best_epoch: Any = 0

    @classmethod
    def create(cls, params: Any, opt_state: Any) -> TrainState:
        return cls(params=params, opt_state=opt_state, best_params=params)

    def as_python(self) -> TrainState:
        """The counters as Python numbers (after a restore they are 0-d arrays)."""
        return self.replace(
            epoch=int(self.epoch),
            step=int(self.step),
            best_val_mae=float(self.best_val_mae),
            best_epoch=int(self.best_epoch),
        )


def run_identity(config: ExperimentConfig, model: Any) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint.

    The whole configuration and the model (its repr tells a PaiNN run from a DTNN run with
    the same config), except settings that change nothing computed. ``max_epochs`` may
    grow only when ``decay_epochs`` pins the learning-rate schedule.
    """
    data = config.to_dict()
    train = {k: v for k, v in data["train"].items() if k not in _FREE_TRAIN_SETTINGS}
    if train.get("decay_epochs") is not None:
        train.pop("max_epochs")
    return {**data, "train": train, "model": repr(model)}


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def resume_or_start(
    ckpt: Checkpointer | None,
    state: TrainState,
    identity: dict,
    scaler_dict: dict,
) -> tuple[TrainState, list[dict]]:
    """The state to train from: the latest checkpoint of the same run, or ``state``.

    Raises:
        InputError: the checkpoint belongs to a run with another configuration, model or
            training targets; the message names what differs.
    """
    if ckpt is None or ckpt.latest_step() is None:
        return state, []
    meta = ckpt.metadata()
    # Rebuilt through the config classes, so a setting added later with its default value
    # does not count as a change.
    saved_config = ExperimentConfig.from_dict(meta.get("config", {}))
    saved = run_identity(saved_config, None) | {"model": meta.get("model")}
    diff = _differences(saved, identity)
    saved_scaler = meta.get("scaler", {})
    if not np.allclose(
        [saved_scaler.get("offset", np.nan), saved_scaler.get("scale", np.nan)],
        [scaler_dict["offset"], scaler_dict["scale"]],
        rtol=1e-6,
    ):
        diff.append("training targets (target scaler)")
    if diff:
        raise InputError(
            f"{ckpt.directory.parent} holds a run with a different {', '.join(diff)}; use a "
            "fresh workdir, the original config, or restart=True (dtnn train --restart) to "
            "discard it"
        )
    step = ckpt.latest_step()
    restored = ckpt.restore(state).as_python()
    log.info("resuming from epoch %d (checkpoint in %s)", step, ckpt.directory)
    history = [h for h in meta.get("history", []) if h["epoch"] <= restored.epoch]
    return restored, history


def clear_checkpoints(workdir: Path) -> None:
    """Removes a run directory's checkpoints (``restart``), keeping everything else."""
    shutil.rmtree(Path(workdir) / "checkpoints", ignore_errors=True)


def checkpoint_metadata(config: ExperimentConfig, model: Any, scaler_dict: dict, history):
    """The JSON item saved with every checkpoint."""
    return {
        "config": config.to_dict(),
        "model": repr(model),
        "scaler": scaler_dict,
        "history": list(history),
    }


__all__ = [
    "TrainState",
    "checkpoint_metadata",
    "clear_checkpoints",
    "resume_or_start",
    "run_identity",
]
