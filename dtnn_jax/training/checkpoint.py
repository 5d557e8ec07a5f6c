"""Resumable training checkpoints: the project's only use of Orbax.

A checkpoint is one Orbax step under ``<workdir>/checkpoints/<epoch>/`` holding a pytree of
arrays (the training state: parameters, optimizer state, best parameters, counters) and,
in the same step, a JSON item (the run's history and configuration). Orbax writes each step
to a temporary directory and renames it once complete, so a save interrupted by a crash
leaves the previous checkpoint intact and is never mistaken for a finished one, and the
state and its history can never disagree. ``<workdir>/checkpoint_format.json`` records the
checkpoint format version: checkpoints of another format, or ones that cannot be read, raise
a `CheckpointError` naming the directory.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from dtnn_jax.errors import InputError

CHECKPOINT_FORMAT = "dtnn_jax.checkpoint"
# Bump when the saved training state changes incompatibly (keys, optimizer layout).
# 2: the state and the run's history + configuration are one Orbax step (composite items).
CHECKPOINT_FORMAT_VERSION = 2
FORMAT_FILE = "checkpoint_format.json"


class CheckpointError(InputError):
    """A training checkpoint is corrupt or from an incompatible version (message says which)."""


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
        """Opens ``workdir``'s checkpoints.

        In a multi-process run every process opens it and calls `save` with the same
        (replicated) state: Orbax's multi-process save, in which process 0 writes. The
        directory must therefore be on a filesystem every process sees; restoring gives
        host arrays, so a run can resume on another number of processes.
        """
        self.directory = Path(workdir).absolute() / "checkpoints"
        if jax.process_index() == 0:
            _check_format(Path(workdir).absolute())
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step (epoch), or None if there is none."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, metadata: dict | None = None) -> None:
        """Saves ``state`` (a pytree of arrays / scalars) and JSON ``metadata`` as ``step``."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_as_arrays(state)),
            metadata=ocp.args.JsonSave(metadata or {}),
        )
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> Any:
        """Restores checkpoint ``step`` (default: the latest) into ``template``'s structure."""
        step = self._step(step)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_as_arrays(template)))
        return self._restore(step, args)["state"]

    def metadata(self, step: int | None = None) -> dict:
        """The JSON item saved with checkpoint ``step`` (default: the latest)."""
        step = self._step(step)
        return dict(
            self._restore(step, ocp.args.Composite(metadata=ocp.args.JsonRestore()))["metadata"]
        )

    def _step(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return step

    def _restore(self, step: int, args):
        try:
            return self._manager.restore(step, args=args)
        except Exception as err:  # Orbax/TensorStore raise many types for the same problem
            raise CheckpointError(
                f"{self.directory / str(step)}: cannot restore checkpoint of epoch {step} "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); it is "
                "corrupt or does not match this model: delete it to fall back to an earlier one, "
                "or use a fresh workdir"
            ) from err

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_format(workdir: Path) -> None:
    """Stamps a new run directory with the checkpoint format; refuses other formats."""
    path = workdir / FORMAT_FILE
    if path.exists():
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path}: corrupt checkpoint format file ({err})") from err
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a dtnn-jax checkpoint directory")
        if version != CHECKPOINT_FORMAT_VERSION:
            raise CheckpointError(
                f"{workdir}: checkpoints have format version {version} (written by dtnn-jax "
                f"{meta.get('dtnn_jax_version', '?')}); this dtnn-jax reads version "
                f"{CHECKPOINT_FORMAT_VERSION}. Use a fresh workdir or the matching dtnn-jax."
            )
        return
    from dtnn_jax import __version__

    write_json_atomic(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "dtnn_jax_version": __version__,
        },
    )


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Writes JSON to ``path`` through a temporary file and a rename (no torn files).

    The temporary name is unique to the writer, so two processes writing the same file
    (the same content, in a multi-process run) cannot take each other's file away.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
