"""Per-shard result files of a multi-process (or split) run, and their merge.

A sharded command (``dtnn screen``, ``dtnn featurize``, ``dtnn predict`` under several
processes, or with ``--shard I/N``) writes its shard's results to
``<out>/shards/<kind>-<I>-of-<N>.json`` (or ``.npz``), atomically (a temporary name renamed
into place), so a killed process leaves either no file or a complete one and its shard can
be re-run alone. `read_shards` gives the merge every shard in order, and refuses a missing,
duplicated or foreign shard (another pool, another shard count) with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dtnn_jax.errors import InputError

SHARD_DIR = "shards"


class ShardError(InputError):
    """Shard files that cannot be merged (the message says which and why)."""


def fingerprint(names: Iterable[str]) -> str:
    """A short content hash of the inputs' names, in order: shards of one pool agree on it."""
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise ShardError(f"--shard must be I/N with 0 <= I < N, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def shard_path(out_dir: str | os.PathLike, kind: str, index: int, count: int, suffix: str) -> Path:
    return Path(out_dir) / SHARD_DIR / f"{kind}-{index:04d}-of-{count:04d}{suffix}"


def write_shard(
    out_dir: str | os.PathLike,
    kind: str,
    index: int,
    count: int,
    meta: dict[str, Any],
    payload: Any = None,
    arrays: dict[str, Any] | None = None,
) -> Path:
    """Writes one shard's results (JSON: ``meta`` + ``payload``) atomically.

    Numeric results go in ``arrays``: they are written first, atomically, as
    ``<kind>-I-of-N.npz`` (read back by `read_shard_arrays`), and the JSON (which
    `read_shards` looks for) last, with ``payload`` naming the file, so a shard is visible
    only once complete.
    """
    if arrays is not None:
        import numpy as np

        npz = shard_path(out_dir, kind, index, count, ".npz")
        npz.parent.mkdir(parents=True, exist_ok=True)
        tmp = npz.with_name(npz.name + f".tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, npz)
        payload = {"arrays": npz.name}
    path = shard_path(out_dir, kind, index, count, ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    record = {"kind": kind, "index": index, "count": count, **meta, "payload": payload}
    tmp.write_text(json.dumps(record))  # NaN stays NaN (Python's json reads it back)
    os.replace(tmp, path)
    return path


def read_shard_arrays(out_dir: str | os.PathLike, record: dict) -> dict[str, Any]:
    """The arrays of a shard read by `read_shards` (written by `write_shard` with ``arrays``)."""
    import numpy as np

    with np.load(Path(out_dir) / SHARD_DIR / record["payload"]["arrays"]) as f:
        return {k: f[k] for k in f.files}


def read_shards(
    out_dir: str | os.PathLike, kind: str, expect: dict[str, Any], uniform: tuple[str, ...] = ()
) -> list[dict]:
    """Every shard of a run, in shard order, checked to belong together.

    Args:
        out_dir: the run's output directory.
        kind: the command's shard kind ("screen", "featurize", "predict").
        expect: fields every shard must carry with these values (e.g. the pool's
            ``fingerprint`` and ``n_items``).
        uniform: fields every shard must agree on (e.g. the model's name).

    Raises:
        ShardError: no shard, a missing shard (naming how to re-run it), shards of
            different shard counts, or a shard of another input or model.
    """
    directory = Path(out_dir) / SHARD_DIR
    files = sorted(directory.glob(f"{kind}-*-of-*.json")) if directory.is_dir() else []
    if not files:
        raise ShardError(f"{directory}: no {kind} shard files to merge")
    records = [json.loads(f.read_text()) for f in files]
    counts = {r["count"] for r in records}
    if len(counts) != 1:
        raise ShardError(
            f"{directory}: shards of different runs ({sorted(counts)} shards each); remove "
            "the stale ones"
        )
    count = counts.pop()
    indices = [r["index"] for r in records]
    if len(set(indices)) != len(indices):
        raise ShardError(f"{directory}: shard(s) written twice: {sorted(indices)}")
    missing = sorted(set(range(count)) - set(indices))
    if missing:
        raise ShardError(
            f"{directory}: shard(s) {missing} of {count} missing; re-run them alone with "
            f"--shard {missing[0]}/{count} (same arguments), then merge with --merge"
        )
    for r, f in zip(records, files, strict=True):
        wrong = {k: (r.get(k), v) for k, v in expect.items() if r.get(k) != v}
        wrong |= {
            k: (r.get(k), records[0].get(k)) for k in uniform if r.get(k) != records[0].get(k)
        }
        if wrong:
            raise ShardError(f"{f}: written for another input or model: {wrong}")
    return sorted(records, key=lambda r: r["index"])
