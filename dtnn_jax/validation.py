"""Checks shared by the frozen config dataclasses: a bad value fails where it is written."""

from __future__ import annotations


def check_at_least(obj, minimum: float, *names: str) -> None:
    """Raises ValueError naming ``Type.field`` unless every named field is >= ``minimum``."""
    for name in names:
        value = getattr(obj, name)
        if value < minimum:
            raise ValueError(f"{type(obj).__name__}.{name} must be >= {minimum}, got {value}")


def check_positive(obj, *names: str) -> None:
    """Raises ValueError naming ``Type.field`` unless every named field is > 0 (NaN fails)."""
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value}")
