"""The frozen encoders the package knows, by name: `get_encoder`, `available_encoders`.

Names are case-insensitive registry keys ("sevennet-0"); an encoder's weights load on first
use, so asking for an encoder's cutoff, elements or irreps is cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from dtnn_jax.constants import DEFAULT_ENCODER
from dtnn_jax.encoder.interface import FrozenEncoder


def _sevennet0() -> FrozenEncoder:
    from dtnn_jax.encoder.sevennet import SevenNet

    return SevenNet("sevennet0", name="SevenNet-0", key="sevennet-0")


def _nequix(weights: str, name: str):
    def make() -> FrozenEncoder:
        from dtnn_jax.encoder.nequix import Nequix

        return Nequix(weights, name=name, key=weights)

    return make


_FACTORIES: dict[str, Callable[[], FrozenEncoder]] = {
    "sevennet-0": _sevennet0,
    # trained on OMat24 + sAlex + MPtrj; -pft: then phonon fine-tuned (the physics head's K)
    "nequix-oam-1": _nequix("nequix-oam-1", "Nequix-OAM-1"),
    "nequix-oam-1-pft": _nequix("nequix-oam-1-pft", "Nequix-OAM-1-PFT"),
}


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
