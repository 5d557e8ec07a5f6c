"""Resumable training checkpoints: the project's only use of Orbax.

A checkpoint is one pytree of arrays (parameters, optimizer state, best parameters,
counters), saved under ``<workdir>/checkpoints/<epoch>/``. Orbax writes each step to a
temporary directory and renames it once complete, so a save interrupted by a crash leaves
the previous checkpoint intact and is never mistaken for a finished one. Beside it,
``<workdir>/run_config.json`` records the configuration a run was started with, so a resume
with an incompatible model is refused instead of silently loading mismatched arrays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _as_arrays(tree: Any) -> Any:
    """Orbax stores arrays only: turn Python/NumPy scalars into 0-d arrays."""
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x) if isinstance(x, int | float | np.generic) else x, tree
    )


class Checkpointer:
    """Saves and restores the training state of one run directory.

    Attributes:
        directory: where the numbered checkpoints live (``<workdir>/checkpoints``).
    """

    def __init__(self, workdir: str | os.PathLike, max_to_keep: int = 2):
        self.directory = Path(workdir).absolute() / "checkpoints"
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step (epoch), or None if there is none."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Saves ``state`` (a pytree of arrays / scalars) as checkpoint ``step``."""
        self._manager.save(step, args=ocp.args.StandardSave(_as_arrays(state)), force=True)
        self._manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> Any:
        """Restores checkpoint ``step`` (default: the latest) into ``template``'s structure."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return self._manager.restore(step, args=ocp.args.StandardRestore(_as_arrays(template)))

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Writes JSON to ``path`` through a temporary file and a rename (no torn files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
