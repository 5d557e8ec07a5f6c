"""``dtnn featurize FILES... --layer K --out feats.npz``: SevenNet-0 descriptors of crystals."""

from __future__ import annotations

import argparse
import sys

from dtnn_jax.config import DEFAULT_ENCODER_LAYER


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "featurize",
        help="per-atom SevenNet-0 features of structure files",
        description=(
            "Writes an .npz with one [n_atoms, D] array per input (key = the path as given) "
            "of per-atom features after interaction layer K, plus 'irreps', 'layer', 'files' "
            "(the featurized paths, in order) and 'energy_ev' (SevenNet-0 energies). Files "
            "that cannot be used are reported on stderr and skipped; the others are still "
            "written, and the exit status is 1 if any failed."
        ),
    )
    p.add_argument("files", nargs="+", help="CIF, POSCAR, extxyz or pymatgen JSON files")
    p.add_argument(
        "--layer",
        type=int,
        default=DEFAULT_ENCODER_LAYER,
        help=f"interaction layer 1..5 (default {DEFAULT_ENCODER_LAYER}, the readout's)",
    )
    p.add_argument("--out", default="features.npz", help="output .npz (default features.npz)")
    p.set_defaults(func=run)


# array names of the output besides the per-file features
RESERVED_KEYS = ("irreps", "layer", "files", "energy_ev")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.encoder.features import layer_features
    from dtnn_jax.inputs import prepare_inputs

    encoder = get_encoder()
    try:
        irreps = encoder.layer_irreps(args.layer)  # validates the layer before any work
    except ValueError as err:
        print(f"error: --layer: {err}", file=sys.stderr)
        return 2
    unique = list(dict.fromkeys(args.files))
    for path in sorted(set(args.files)):
        if args.files.count(path) > 1:
            print(f"note: {path} given twice; featurized once", file=sys.stderr)
    graphs, names, failed = [], [], 0
    for crystal in prepare_inputs(unique, encoder):
        error = crystal.error
        if crystal.source in RESERVED_KEYS:
            error = "this name is reserved in the output .npz"
        if error is not None:
            print(f"error: {crystal.source}: {error}", file=sys.stderr)
            failed += 1
            continue
        graphs.append(crystal.graph)
        names.append(crystal.source)
    features, energies = layer_features(encoder, graphs, args.layer, progress=len(graphs) > 32)
    arrays = dict(zip(names, features, strict=True))
    np.savez(
        args.out,
        **arrays,
        irreps=np.array(irreps),
        layer=np.array(args.layer),
        files=np.array(names, dtype=str),
        energy_ev=energies,
    )
    print(f"wrote {len(arrays)} crystals ({irreps}) to {args.out}; {failed} failed")
    return 1 if failed else 0
