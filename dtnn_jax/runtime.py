"""Process-level settings: JAX's persistent compilation cache.

A fresh Python process compiles every jitted function again; on 2 CPU cores that is most of
the time of ``dtnn predict one.cif``. `enable_compilation_cache` points JAX's persistent
compilation cache at a directory under the package cache (``~/.cache/dtnn_jax/jax`` or
``$DTNN_JAX_CACHE/jax``; ``$DTNN_JAX_COMPILATION_CACHE`` overrides it, ``off`` disables
it), so the second process loads the compiled executables instead. Processes may share
the directory: JAX (0.10) writes an entry in place, and a process that reads one another is
still writing warns and compiles again. To lock reads and writes, set a size limit
(``JAX_COMPILATION_CACHE_MAX_SIZE``, bytes; needs the ``filelock`` package): JAX's LRU
cache then takes a file lock, as the test suite does. The command line and
`dtnn_jax.load_model` call it; a cache directory set by the user before
(``jax.config.update("jax_compilation_cache_dir", ...)``) is left alone.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

# Compilations faster than this are not worth a disk entry (seconds).
MIN_COMPILE_SECONDS_CACHED = 0.2


def default_cache_dir() -> Path:
    """The package's cache directory: ``$DTNN_JAX_CACHE`` or ``~/.cache/dtnn_jax``."""
    return Path(os.environ.get("DTNN_JAX_CACHE", Path.home() / ".cache" / "dtnn_jax"))


def compilation_cache_dir() -> Path | None:
    """Where compiled executables are kept, or None when the cache is switched off."""
    setting = os.environ.get("DTNN_JAX_COMPILATION_CACHE")
    if setting is not None and setting.lower() in ("", "0", "off", "false", "no"):
        return None
    if setting:
        return Path(setting)
    return default_cache_dir() / "jax"


@functools.cache
def enable_compilation_cache() -> Path | None:
    """Turns on JAX's persistent compilation cache (once per process); returns its directory.

    Does nothing (returns the existing setting) if a cache directory is already configured,
    and warns and returns None if the directory cannot be created.
    """
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    directory = compilation_cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.warn(
            f"JAX compilation cache {directory} cannot be created ({err}); every process "
            "compiles again (set $DTNN_JAX_COMPILATION_CACHE to a writable directory)",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS_CACHED)
    return directory
