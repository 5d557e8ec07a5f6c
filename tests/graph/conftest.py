"""Fixtures for the graph tests: the shipped Petousis et al. (2017) crystals."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shipped_structures() -> list:
    """Every crystal of the shipped dataset as a pymatgen ``Structure`` (1056 expected)."""
    try:
        from dtnn_jax.data import load_petousis2017
    except ImportError as err:
        pytest.skip(f"dtnn_jax.data.load_petousis2017 is not available yet: {err}")
    return [record.structure for record in load_petousis2017()]
