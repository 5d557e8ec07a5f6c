"""The frozen encoders the package knows, by name: `get_encoder`, `available_encoders`.

Names are case-insensitive registry keys ("sevennet-0"); an encoder's weights load on first
use, so asking for an encoder's cutoff, elements or irreps is cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from dtnn_jax.encoder.interface import FrozenEncoder

DEFAULT_ENCODER = "sevennet-0"


def _sevennet0() -> FrozenEncoder:
    from dtnn_jax.encoder.sevennet import SevenNet

    return SevenNet("sevennet0", name="SevenNet-0", key="sevennet-0")


_FACTORIES: dict[str, Callable[[], FrozenEncoder]] = {"sevennet-0": _sevennet0}


def available_encoders() -> list[str]:
    """Registry names of the shipped encoders."""
    return sorted(_FACTORIES)


@functools.cache
def _get(key: str) -> FrozenEncoder:
    return _FACTORIES[key]()


def get_encoder(name: str | FrozenEncoder | None = None) -> FrozenEncoder:
    """The process-wide encoder of that name (default `DEFAULT_ENCODER`), built once.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if isinstance(name, FrozenEncoder):
        return name
    key = (name or DEFAULT_ENCODER).lower()
    if key not in _FACTORIES:
        raise ValueError(f"unknown encoder {name!r}; available: {', '.join(available_encoders())}")
    return _get(key)
