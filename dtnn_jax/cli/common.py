"""What the commands share: user errors, output destinations checked before the work."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


class CommandError(Exception):
    """A problem with the command's arguments; printed as one line, exit status 2."""


def prepare_runtime() -> None:
    """Log the library's notes ("resuming from epoch N") to stderr (``import dtnn_jax``
    already quieted XLA's C++ logs).

    The commands that run JAX turn on the persistent compilation cache themselves
    (`dtnn_jax.runtime.enable_compilation_cache`), so ``dtnn data`` never imports JAX.
    """
    logger = logging.getLogger("dtnn_jax")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("dtnn: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        # said once: not again by a handler on the root logger (absl installs one)
        logger.propagate = False


def bars_wanted(requested: bool = True) -> bool:
    """Whether to draw progress bars: when asked and stderr is a terminal (a bar redrawn
    with carriage returns turns a log file or a pipe into noise)."""
    return bool(requested) and sys.stderr.isatty()


# The library's advice names Python keywords; on the command line the flags do the same.
_KEYWORD_FLAGS = (
    ("allow_isolated=True", "--allow-isolated"),
    ("max_atoms= or dtnn_jax.io.MAX_ATOMS", "--max-atoms"),
    ("max_atoms=", "--max-atoms"),
)


def as_flags(message: str | None) -> str | None:
    """A library message with its Python keyword advice (``allow_isolated=True``) worded
    as the command's flags (``--allow-isolated``)."""
    if message is None:
        return None
    for keyword, flag in _KEYWORD_FLAGS:
        message = message.replace(keyword, flag)
    return message


def plain(doc: str | None) -> str:
    """A module docstring as ``--help`` text: without reST markup (backquotes)."""
    return (doc or "").replace("``", "").replace("`", "")


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a directory that exists (created) and can be written, before any work."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".dtnn-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise CommandError(f"{what} {path} cannot be written ({err.strerror or err})") from err
    return path


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a file whose directory exists (created) and can be written."""
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{what} {path} is a directory, expected a file name")
    writable_dir(path.parent if str(path.parent) else ".", f"the directory of {what}")
    return path


def existing_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a file that exists."""
    path = Path(path)
    if not path.exists():
        raise CommandError(f"{what} {path} not found")
    if path.is_dir():
        raise CommandError(f"{what} {path} is a directory, expected a file")
    return path


def positive(name: str, value: int | None) -> None:
    """Raises `CommandError` unless ``value`` is None or >= 1."""
    if value is not None and value < 1:
        raise CommandError(f"{name} must be >= 1, got {value}")
