"""``dtnn featurize FILES... --layer K --out feats.npz``: frozen-encoder descriptors of crystals."""

from __future__ import annotations

import argparse
import sys

from dtnn_jax.constants import DEFAULT_ENCODER, DEFAULT_ENCODER_LAYER

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
    p.add_argument("files", nargs="+", help="CIF, POSCAR, extxyz or pymatgen JSON files")
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
        "--out", default="features.npz", help="output .npz (default features.npz; .npz added)"
    )
    add_input_arguments(p)
    p.set_defaults(func=run)


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

    from dtnn_jax.cli.common import CommandError, positive, writable_file

    positive("--max-atoms", args.max_atoms)
    out = Path(args.out)
    if out.suffix != ".npz":  # numpy would append it silently; say where the file goes
        out = out.with_name(out.name + ".npz")
    writable_file(out, "--out")

    from dtnn_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    import numpy as np

    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.encoder.features import layer_features
    from dtnn_jax.inputs import prepare_inputs

    try:
        encoder = get_encoder(args.encoder)
        irreps = encoder.layer_irreps(args.layer)  # validates the layer before any work
    except ValueError as err:
        raise CommandError(str(err)) from err
    unique = list(dict.fromkeys(args.files))
    for path in unique:
        if args.files.count(path) > 1:
            print(
                f"note: {path} given {args.files.count(path)} times; featurized once",
                file=sys.stderr,
            )
    graphs, names, failed = [], [], 0
    crystals = prepare_inputs(unique, encoder, args.max_atoms, args.allow_isolated)
    for crystal in crystals:
        error = crystal.error
        if crystal.source in RESERVED_KEYS:
            error = "this name is reserved in the output .npz"
        if error is not None:
            print(f"error: {crystal.source}: {error}", file=sys.stderr)
            failed += 1
            continue
        if crystal.warning:
            print(f"warning: {crystal.source}: {crystal.warning}", file=sys.stderr)
        graphs.append(crystal.graph)
        names.append(crystal.source)
    if not graphs:
        raise CommandError(f"none of the {failed} input crystal(s) could be featurized")
    features, energies = layer_features(encoder, graphs, args.layer, progress=len(graphs) > 32)
    np.savez(
        out,
        **dict(zip(names, features, strict=True)),
        irreps=np.array(irreps),
        layer=np.array(args.layer),
        encoder=np.array(encoder.key),
        files=np.array(names, dtype=str),
        energy_ev=energies,
    )
    print(
        f"wrote {len(names)} crystals ({encoder.name} layer {args.layer}, {irreps}) to {out}; "
        f"{failed} failed"
    )
    return 1 if failed else 0
