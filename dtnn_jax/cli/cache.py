"""``dtnn cache info|clear``: the on-disk caches (per-crystal features and force constants,
compiled programs) -- where they are, how big, and emptying them."""

from __future__ import annotations

import argparse

KINDS = ("features", "force-constants")


def register(subparsers) -> None:
    cache = subparsers.add_parser(
        "cache",
        help="show or clear the on-disk caches",
        description="The per-crystal cache of encoder features and force constants (bounded "
        "by $DTNN_JAX_CACHE_MAX_GB, least recently used entries evicted first) and JAX's "
        "compilation cache, under $DTNN_JAX_CACHE (default ~/.cache/dtnn_jax).",
    )
    sub = cache.add_subparsers(dest="cache_command", required=True, metavar="SUBCOMMAND")
    info = sub.add_parser("info", help="entries and sizes per kind, the size limit")
    info.add_argument("--cache-dir", default=None, help="cache directory (default: the package's)")
    info.set_defaults(func=run)
    clear = sub.add_parser("clear", help="delete per-crystal entries (all kinds by default)")
    clear.add_argument("--cache-dir", default=None, help="cache directory (default: the package's)")
    clear.add_argument(
        "--kind", choices=KINDS, default=None, help="only this kind of entry (default: all)"
    )
    clear.add_argument(
        "--compiled", action="store_true", help="also delete JAX's compiled programs"
    )
    clear.set_defaults(func=run)


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes < 1e9 else f"{nbytes / 1e9:.2f} GB"


def _tree_bytes(path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from dtnn_jax.encoder.cache import CRYSTALS_DIR, MAX_GB_ENV, _max_bytes, cache_entries
    from dtnn_jax.runtime import compilation_cache_dir, default_cache_dir

    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    compiled = compilation_cache_dir() if not args.cache_dir else root / "jax"
    entries = cache_entries(root) if root.is_dir() else []
    # whole-list entries of the cache format before the per-crystal one (no longer read)
    legacy = (
        [p for p in root.glob("*-*.*") if p.suffix in (".npz", ".json")] if root.is_dir() else []
    )
    if args.cache_command == "info":
        print(f"cache directory: {root}")
        total = 0
        for kind in sorted({p.parent.parent.name for p, _, _ in entries} | set(KINDS)):
            mine = [size for p, size, _ in entries if p.parent.parent.name == kind]
            total += sum(mine)
            print(f"  {kind:16s} {len(mine):7d} crystals  {_size(sum(mine))}")
        print(f"  {'total':16s} {len(entries):7d} entries   {_size(total)}")
        print(f"  limit {_size(_max_bytes())} (${MAX_GB_ENV}; least recently used evicted)")
        if legacy:
            nbytes = sum(p.stat().st_size for p in legacy)
            print(f"  {len(legacy)} files of the old whole-list format ({_size(nbytes)}, unused)")
        if compiled is not None:
            n, nbytes = _tree_bytes(compiled)
            print(f"compiled programs: {compiled}  {n} files  {_size(nbytes)}")
        return 0
    removed = 0
    for path, _, _ in entries:
        if args.kind is None or path.parent.parent.name == args.kind:
            path.unlink(missing_ok=True)
            removed += 1
    if args.kind is None:
        for path in legacy:
            path.unlink(missing_ok=True)
    print(f"removed {removed} entries from {root / CRYSTALS_DIR}")
    if args.compiled and compiled is not None and compiled.is_dir():
        n, _ = _tree_bytes(compiled)
        shutil.rmtree(compiled, ignore_errors=True)
        print(f"removed {n} compiled programs from {compiled}")
    return 0
