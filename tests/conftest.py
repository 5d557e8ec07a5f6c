"""Shared fixtures: seeded keys, tiny real crystals, a persistent JAX compilation cache."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import settings

# CI draws the same examples on every run (a failure there is reproducible); elsewhere
# hypothesis explores new ones. Select with HYPOTHESIS_PROFILE=ci.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Tests run on CPU in float32; the persistent cache makes re-runs compile nothing.
_CACHE = Path(os.environ.get("DTNN_JAX_TEST_CACHE", Path(__file__).parent.parent / ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


@pytest.fixture
def nacl():
    """Rock-salt NaCl, 2-atom primitive cell (a = 5.64 A)."""
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60),
        ["Na", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
    )


@pytest.fixture
def triclinic():
    """A skewed triclinic 3-atom cell."""
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice.from_parameters(3.1, 4.2, 5.3, 71.0, 83.0, 104.0),
        ["Si", "O", "O"],
        [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.62, 0.71, 0.55]],
    )
