"""The on-disk per-crystal cache: encoder features and force constants, computed once.

`CrystalCache` keeps one verified entry per crystal and setting, content addressed (the key
hashes the setting -- encoder name and weights sha256, cutoff, layer or dtype and symmetry,
format version -- with the crystal's lattice, positions and elements), so a rerun on a
superset of crystals computes only the new ones, and a killed run keeps every batch it
finished (entries are written per batch). Entries are verified on read (a stale, truncated
or corrupt entry is rebuilt, never used), written atomically under unique temporary names
(processes may share the directory), and bounded: past ``$DTNN_JAX_CACHE_MAX_GB``
(default `DEFAULT_MAX_GB`) the least recently used go. ``dtnn cache info|clear`` shows and
empties it. A cache directory that cannot be written is not an error: the results are
computed and used anyway, with one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from dtnn_jax.runtime import default_cache_dir

CACHE_FORMAT_VERSION = 2
CRYSTALS_DIR = "crystals"
DEFAULT_MAX_GB = 10.0
"""Default size limit of the per-crystal cache (all kinds together), GB."""
MAX_GB_ENV = "DTNN_JAX_CACHE_MAX_GB"


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


def crystal_digest(structure: Structure) -> str:
    """sha256 of one crystal's lattice, Cartesian positions and atomic numbers."""
    return structures_digest([structure])


def _max_bytes() -> float:
    """The size limit of the per-crystal cache (bytes): ``$DTNN_JAX_CACHE_MAX_GB`` or
    `DEFAULT_MAX_GB`."""
    setting = os.environ.get(MAX_GB_ENV)
    try:
        return float(setting) * 1e9 if setting else DEFAULT_MAX_GB * 1e9
    except ValueError:
        warnings.warn(
            f"${MAX_GB_ENV}={setting!r} is not a number; using {DEFAULT_MAX_GB} GB", stacklevel=2
        )
        return DEFAULT_MAX_GB * 1e9


class CrystalCache:
    """A directory of verified per-crystal arrays, content addressed, bounded (LRU).

    One entry per crystal and setting: the key is the sha256 of (cache format, ``kind``,
    ``setting`` -- e.g. encoder name, weights sha256, cutoff, layer, dtype, symmetry --
    and the crystal's lattice, positions and elements), so an entry serves any later call
    with that crystal, in any list. An entry is one ``.npz`` holding its arrays, its key
    and their sha256; a damaged or misplaced entry is rebuilt, never used. Writes go to a
    unique temporary name and are renamed into place, so processes may share a directory
    (the last complete write of a key wins; all are identical). Reading an entry marks it
    used (its mtime); when the directory outgrows ``max_bytes`` the least recently used
    entries go first. A directory that cannot be written only warns: nothing is cached.

    Layout: ``<directory>/crystals/<kind>/<key[:2]>/<key>.npz``.
    """

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        kind: str = "features",
        setting: str = "",
        max_bytes: float | None = None,
    ):
        self.kind = kind
        self.setting = setting
        self.max_bytes = _max_bytes() if max_bytes is None else float(max_bytes)
        self.root = _writable(Path(directory) if directory else default_cache_dir())

    def key(self, structure: Structure) -> str:
        meta = f"crystal-v{CACHE_FORMAT_VERSION}|{self.kind}|{self.setting}|"
        return hashlib.sha256((meta + crystal_digest(structure)).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / CRYSTALS_DIR / self.kind / key[:2] / f"{key}.npz"

    def load(self, structure: Structure) -> dict[str, np.ndarray] | None:
        """The verified arrays of ``structure``'s entry, or None (missing or damaged)."""
        key = self.key(structure)
        path = self.path(key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files}
            digest = str(arrays.pop("__sha256__"))
            if str(arrays.pop("__key__")) != key or digest != arrays_digest(arrays):
                raise ValueError("checksum mismatch")
        except FileNotFoundError:  # evicted by another process meanwhile
            return None
        except Exception as err:  # any damage means: rebuild
            warnings.warn(f"cache entry {path} is invalid ({err}); rebuilding it", stacklevel=3)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: last to be evicted
        return arrays

    def store(self, structure: Structure, arrays: dict[str, np.ndarray]) -> None:
        """Writes ``structure``'s entry atomically (unique temporary name, then rename).

        A failed write only warns: the caller has the arrays already.
        """
        key = self.key(structure)
        path = self.path(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{key}.{os.getpid()}.{uuid.uuid4().hex}.tmp.npz"
            np.savez(
                tmp, __key__=np.array(key), __sha256__=np.array(arrays_digest(arrays)), **arrays
            )
            os.replace(tmp, path)
            _PENDING_BYTES[self.root] = _PENDING_BYTES.get(self.root, 0) + path.stat().st_size
        except OSError as err:
            warnings.warn(f"could not write the cache entry {path} ({err})", stacklevel=3)
            with contextlib.suppress(OSError):
                tmp.unlink()

    def store_many(self, items) -> None:
        """`store` for ``(structure, arrays)`` pairs (e.g. one finished batch), then `evict`."""
        for structure, arrays in items:
            self.store(structure, arrays)
        self.evict(force=False)

    def evict(self, force: bool = True) -> int:
        """Deletes least recently used entries (all kinds) until the cache is within
        ``max_bytes`` (down to 90 % of it); returns the number deleted.

        Without ``force`` the directory is scanned only once per process and then after
        every 1 % of ``max_bytes`` written (a scan costs a stat per entry).
        """
        if self.root is None:
            return 0
        if not force and _PENDING_BYTES.get(self.root, 0) < 0.01 * self.max_bytes:
            if self.root in _SCANNED:
                return 0
        _SCANNED.add(self.root)
        _PENDING_BYTES[self.root] = 0
        entries = cache_entries(self.root)
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return 0
        removed = 0
        for path, size, _ in sorted(entries, key=lambda e: e[2]):
            if total <= 0.9 * self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
            total -= size
        return removed


_PENDING_BYTES: dict[Path, int] = {}  # bytes this process wrote since its last scan
_SCANNED: set[Path] = set()  # cache roots this process has scanned for eviction


def cache_entries(root: Path) -> list[tuple[Path, int, float]]:
    """(path, bytes, mtime) of every per-crystal entry under ``root``; temporary files of
    writers that died over an hour ago are deleted on the way."""
    out = []
    stale = time.time() - 3600
    for path in (root / CRYSTALS_DIR).glob("*/*/*.npz"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if path.name.startswith("."):
            if stat.st_mtime < stale:
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        out.append((path, stat.st_size, stat.st_mtime))
    return out


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
