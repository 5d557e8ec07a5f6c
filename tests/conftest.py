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

# Tests run on CPU in float32; the persistent cache makes re-runs compile nothing. The test
# session's processes share it: the pytest-xdist workers (pyproject's addopts) and the
# subprocesses some tests start (they inherit this environment). JAX writes an entry in
# place, so two processes filling one directory at once could leave a torn entry behind; a
# size limit switches on JAX's LRU cache, which takes a file lock around every read and
# write (the `filelock` package, a test dependency). The limit is far above what the suite
# writes (about 1 GB), so nothing is evicted.
_CACHE = Path(os.environ.get("DTNN_JAX_TEST_CACHE", Path(__file__).parent.parent / ".jax_cache"))
try:
    import filelock  # noqa: F401

    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(16 << 30))  # subprocesses too
    jax.config.update(
        "jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"])
    )
except ImportError:  # one unlocked directory per worker instead
    _CACHE = _CACHE / os.environ.get("PYTEST_XDIST_WORKER", "main")
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _is_serial(module: str) -> bool:
    """Whether the test module at ``module`` (relative to the rootdir) is marked serial."""
    text = _SERIAL_CACHE.get(module)
    if text is None:
        path = Path(__file__).parent.parent / module
        text = _SERIAL_CACHE[module] = path.read_text() if path.is_file() else ""
    return "pytestmark = pytest.mark.serial" in text


_SERIAL_CACHE: dict[str, str] = {}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's work units: a test module each (a worker compiles a module's functions
    once), and one unit for all the modules marked ``serial`` (they start several JAX
    processes that talk to each other, or a 2-device one), so those run one at a time on
    one worker.

    (``xdist_group`` markers would say the same, but pytest 9.2 ignores the node ids
    pytest-xdist 3.8 rewrites for them, so ``--dist loadgroup`` degrades to ``load``.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "serial" if _is_serial(module) else module

    return ModuleScheduling(config, log)


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
