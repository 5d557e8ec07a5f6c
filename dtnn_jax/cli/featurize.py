"""``dtnn featurize FILES... --layer K -o feats.npz``: frozen-encoder descriptors of crystals."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dtnn_jax.cli.common import CommandError
from dtnn_jax.constants import DEFAULT_ENCODER, DEFAULT_ENCODER_LAYER
from dtnn_jax.distributed import add_arguments as add_distributed_arguments

# array names of the output besides the per-crystal features
RESERVED_KEYS = ("irreps", "layer", "files", "energy_ev", "encoder")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "featurize",
        help="per-atom features of a frozen encoder for structure files",
        description=(
            "Writes an .npz with one [n_atoms, D] array per crystal (key: the path as given, "
            "or path#k for the k-th crystal of a multi-structure file) of per-atom features "
            "after interaction layer K, plus 'irreps', 'layer', 'encoder', 'files' (the "
            "featurized names, in order) and 'energy_ev' (the encoder's energies). Inputs "
            "that cannot be used are reported on stderr and skipped; the others are still "
            "written, and the exit status is 1 if any failed."
        ),
    )
    p.add_argument(
        "files",
        nargs="+",
        help="CIF, POSCAR, extxyz or pymatgen JSON files, or directories of them",
    )
    p.add_argument(
        "--layer",
        type=int,
        default=DEFAULT_ENCODER_LAYER,
        help=f"interaction layer (default {DEFAULT_ENCODER_LAYER}, the readout's)",
    )
    p.add_argument(
        "--encoder", default=DEFAULT_ENCODER, help=f"encoder name (default {DEFAULT_ENCODER})"
    )
    p.add_argument(
        "-o",
        "--output",
        "--out",
        dest="output",
        default="features.npz",
        help="output .npz (default features.npz; .npz added; --out: the old name)",
    )
    add_shard_arguments(p, "featurize only shard I of N", "merge the shards of --out")
    p.set_defaults(func=run)


def add_shard_arguments(p: argparse.ArgumentParser, shard_help: str, merge_help: str) -> None:
    """The options of a command that can run in shards (featurize, screen): ``--shard I/N``,
    ``--merge``, the input pass's and the distributed run's."""
    p.add_argument("--shard", default=None, metavar="I/N", help=shard_help)
    p.add_argument("--merge", action="store_true", help=merge_help)
    add_input_arguments(p)
    add_distributed_arguments(p)


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """The input-pass options shared by featurize, predict and screen."""
    p.add_argument(
        "--max-atoms",
        type=int,
        default=None,
        help="size guard: larger crystals are refused (default 2000, dtnn_jax.io.MAX_ATOMS)",
    )
    p.add_argument(
        "--allow-isolated",
        action="store_true",
        help="keep atoms without a neighbour within the cutoff (as nodes without edges)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dtnn_jax.cli.common import as_flags, bars_wanted, positive, writable_file
    from dtnn_jax.inputs import input_item

    positive("--max-atoms", args.max_atoms)
    out = Path(args.output)
    if out.suffix != ".npz":  # numpy would append it silently; say where the file goes
        out = out.with_name(out.name + ".npz")
    writable_file(out, "--output")

    from dtnn_jax import distributed, shards
    from dtnn_jax.cli.predict import expand_inputs

    files, empty = expand_inputs(args.files)  # a directory: its structure files, in order
    for record in empty:
        print(f"error: {record['source']}: {record['error']}", file=sys.stderr)
    if not files:
        raise CommandError("nothing to featurize: " + "; ".join(r["source"] for r in empty))
    files = [str(f) for f in files]
    unique = list(dict.fromkeys(files))
    for path in unique:
        if files.count(path) > 1:
            print(f"note: {path} given {files.count(path)} times; featurized once", file=sys.stderr)
    identity = {"n_items": len(unique), "fingerprint": shards.fingerprint(unique)}
    identity |= {"encoder": args.encoder.lower(), "layer": args.layer}
    if args.merge:
        return _merge(out, identity)
    group = distributed.initialize_from_args(args)
    shard = shards.parse_shard(args.shard) if args.shard else None
    if shard is None and group.count > 1:
        shard = (group.index, group.count)

    from dtnn_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.encoder.features import layer_features
    from dtnn_jax.inputs import prepare_inputs

    try:
        encoder = get_encoder(args.encoder)
        irreps = encoder.layer_irreps(args.layer)  # validates the layer before any work
    except ValueError as err:
        raise CommandError(str(err)) from err
    mine = unique
    if shard is not None:
        positions = distributed.shard_indices(len(unique), distributed.ProcessGroup(*shard))
        mine = [input_item(unique[i], i) for i in positions]
    graphs, names, positions_done = [], [], []
    failed = [r["source"] for r in empty] if shard is None or shard[0] == 0 else []
    crystals = prepare_inputs(mine, encoder, args.max_atoms, args.allow_isolated)
    for crystal in crystals:
        error = crystal.error
        if crystal.source in RESERVED_KEYS:
            error = "this name is reserved in the output .npz"
        if error is not None:
            print(f"error: {crystal.source}: {as_flags(error)}", file=sys.stderr)
            failed.append(crystal.source)
            continue
        if crystal.warning:
            print(f"warning: {crystal.source}: {crystal.warning}", file=sys.stderr)
        graphs.append(crystal.graph)
        names.append(crystal.source)
        positions_done.append(crystal.position)
    features, energies = [], np.zeros(0)
    if graphs:
        features, energies = layer_features(
            encoder, graphs, args.layer, progress=bars_wanted(len(graphs) > 32)
        )
    result = Featurized(names, positions_done, features, energies, failed, irreps, encoder.key)
    if shard is None:
        return result.write(out, args.layer, encoder.name)
    index, count = shard
    meta = {**identity, **result.meta()}
    shards.write_shard(
        out.parent, f"featurize-{out.stem}", index, count, meta, arrays=result.arrays()
    )
    print(f"shard {index}/{count}: {len(names)} crystals written to {out.parent}/shards/")
    if group.count == 1:
        print(f"merge the {count} shards with: dtnn featurize FILES... --merge -o {out}")
        return 1 if failed else 0
    distributed.barrier("dtnn-featurize-shards-written", args.distributed_timeout)
    return _merge(out, identity) if group.is_main else (1 if failed else 0)


class Featurized:
    """The features of some crystals, as written to the output .npz (or a shard of it)."""

    def __init__(self, names, positions, features, energies, failed, irreps, encoder_key):
        self.names, self.positions, self.features = list(names), list(positions), list(features)
        self.energies = np.asarray(energies, np.float64)
        self.failed, self.irreps, self.encoder_key = list(failed), irreps, encoder_key

    def meta(self) -> dict:
        return {
            "names": self.names,
            "positions": self.positions,
            "failed": self.failed,
            "irreps": self.irreps,
            "encoder_key": self.encoder_key,
        }

    def arrays(self) -> dict:
        return {f"c{k}": f for k, f in enumerate(self.features)} | {"energy_ev": self.energies}

    def write(self, out, layer: int, encoder_name: str) -> int:
        if not self.names:
            raise CommandError(
                f"none of the {len(self.failed)} input crystal(s) could be featurized"
            )
        np.savez(
            out,
            **dict(zip(self.names, self.features, strict=True)),
            irreps=np.array(self.irreps),
            layer=np.array(layer),
            encoder=np.array(self.encoder_key),
            files=np.array(self.names, dtype=str),
            energy_ev=self.energies,
        )
        print(
            f"wrote {len(self.names)} crystals ({encoder_name} layer {layer}, {self.irreps}) "
            f"to {out}; {len(self.failed)} failed"
        )
        return 1 if self.failed else 0


def _merge(out, identity: dict) -> int:
    """Merges the shards of ``out`` in input order into the single-process result."""
    from dtnn_jax import shards

    records = shards.read_shards(out.parent, f"featurize-{out.stem}", identity)
    parts = []  # (position, order within its shard, name, features, energy)
    failed = []
    for record in records:
        arrays = shards.read_shard_arrays(out.parent, record)
        failed += record["failed"]
        for k, (name, pos) in enumerate(zip(record["names"], record["positions"], strict=True)):
            parts.append((pos, k, name, arrays[f"c{k}"], arrays["energy_ev"][k]))
    parts.sort(key=lambda p: (p[0], p[1]))
    merged = Featurized(
        [p[2] for p in parts],
        [p[0] for p in parts],
        [p[3] for p in parts],
        [p[4] for p in parts],
        failed,
        records[0]["irreps"],
        records[0]["encoder_key"],
    )
    return merged.write(out, identity["layer"], identity["encoder"])
