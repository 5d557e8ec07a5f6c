"""The on-disk feature cache: encoder features of a dataset, computed once, verified on read.

An entry is keyed by a content hash of (cache format, encoder name and weights sha256,
layer, cutoff, the structures' lattices, positions and elements) and stored as an ``.npz``
plus a ``.json`` with the arrays' checksum. A stale, truncated or corrupt entry is rebuilt,
never silently used. A cache directory that cannot be written is not an error: the features
are computed and used anyway, with one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from dtnn_jax.runtime import default_cache_dir

CACHE_FORMAT_VERSION = 1


def structures_digest(structures: Sequence[Structure]) -> str:
    """sha256 of the lattices, Cartesian positions and atomic numbers, in order."""
    h = hashlib.sha256()
    for s in structures:
        h.update(np.ascontiguousarray(s.lattice.matrix, np.float64).tobytes())
        h.update(np.ascontiguousarray(s.cart_coords, np.float64).tobytes())
        h.update(np.array([site.specie.Z for site in s], np.int64).tobytes())
    return h.hexdigest()


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the named arrays (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def cache_key(encoder, structures: Sequence[Structure], layer: int | str) -> str:
    """The entry name of ``layer``'s features of ``structures`` under ``encoder``."""
    meta = (
        f"v{CACHE_FORMAT_VERSION}|{encoder.key}|{encoder.weights_sha256}|L{layer}|"
        f"{encoder.cutoff_angstrom}"
    )
    return hashlib.sha256((meta + structures_digest(structures)).encode()).hexdigest()[:24]


class FeatureCache:
    """A directory of verified feature arrays.

    Attributes:
        directory: where entries live, or None when caching is off (unwritable directory).
    """

    def __init__(self, directory: str | os.PathLike | None = None, prefix: str = "features"):
        self.prefix = prefix
        self.directory = _writable(Path(directory) if directory else default_cache_dir())

    def path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{self.prefix}-{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The verified arrays of an entry, or None (missing or damaged: rebuild it)."""
        path = self.path(key)
        if path is None:
            return None
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files}
            if meta.get("format") != CACHE_FORMAT_VERSION or meta.get("sha256") != arrays_digest(
                arrays
            ):
                raise ValueError("checksum mismatch")
            return arrays
        except Exception as err:  # any damage means: rebuild
            warnings.warn(f"feature cache {path} is invalid ({err}); rebuilding it", stacklevel=3)
            return None

    def store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Writes data then checksum, each atomically (rename): a crash leaves no valid pair.

        Temporary names carry the process id, so concurrent writers of one key do not
        clobber each other's partial files (the last complete pair wins; both are
        identical). A failed write only warns: the caller has the arrays already.
        """
        path = self.path(key)
        if path is None:
            return
        try:
            tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
            meta = {"format": CACHE_FORMAT_VERSION, "sha256": arrays_digest(arrays)}
            tmp_meta = path.with_suffix(f".tmp{os.getpid()}.json")
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, path.with_suffix(".json"))
        except OSError as err:
            warnings.warn(
                f"could not write the feature cache {path} ({err}); continuing without it",
                stacklevel=3,
            )


def _writable(directory: Path) -> Path | None:
    """``directory`` (created) if a file can be written there, else None with a warning."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return directory
    except OSError as err:
        warnings.warn(
            f"feature cache directory {directory} is not writable ({err}); features are "
            "computed without caching (set $DTNN_JAX_CACHE or --cache-dir to cache them)",
            stacklevel=3,
        )
        return None
