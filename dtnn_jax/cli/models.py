"""``dtnn models``: the model bundles shipped with the package (names for --model).

Lists each shipped bundle (`dtnn_jax.inference.available_models`) with its targets, ensemble
size, encoder and description, and marks the default model (`dtnn predict`, the refine stage
of `dtnn screen`) and the fast one (the pre-screen). ``dtnn models DIR...`` describes bundle
directories of your own (a ``dtnn train --workdir``) the same way. Reads only the bundles'
``bundle.json``, so it answers at once.

Exit status: 0, or 2 when a given directory holds no bundle.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dtnn_jax.cli.common import plain


def register(subparsers) -> None:
    m = subparsers.add_parser(
        "models",
        help="list the shipped model bundles (names for --model)",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("bundles", nargs="*", metavar="DIR", help="bundle directories to describe")
    m.set_defaults(func=run)


def describe(path: Path, roles: str = "") -> str:
    """A few lines on one bundle from its ``bundle.json``."""
    from dtnn_jax.cli.common import CommandError

    try:
        meta = json.loads((path / "bundle.json").read_text())
        targets = {t: len(v["members"]) for t, v in meta["targets"].items()}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CommandError(f"{path}: not a model bundle ({err})") from err
    served = dict(targets)
    if "total" not in served and {"electronic", "ionic"} <= set(served):
        served["total"] = 0  # served as electronic + ionic
    parts = [
        f"{t} ({n} member{'s' if n != 1 else ''})" if n else f"{t} (= electronic + ionic)"
        for t, n in served.items()
    ]
    head = meta.get("name", path.name) + (f"  [{roles}]" if roles else "")
    return "\n".join(
        [
            head,
            f"  targets: {', '.join(parts)}",
            f"  encoder: {meta.get('encoder', '?')}; trained on {meta.get('training_data', '?')}",
            f"  {meta.get('description', '')}",
        ]
    )


def run(args: argparse.Namespace) -> int:
    from dtnn_jax.inference.bundle import (
        DEFAULT_MODEL,
        FAST_MODEL,
        PRETRAINED_DIR,
        available_models,
    )

    if args.bundles:
        print("\n\n".join(describe(Path(p)) for p in args.bundles))
        return 0
    roles = {
        DEFAULT_MODEL: "default: dtnn predict, the refine stage of dtnn screen",
        FAST_MODEL: "fast: the pre-screen of dtnn screen",
    }
    names = available_models()
    print(f"{len(names)} shipped model bundle(s); use a name (or a bundle directory) as --model\n")
    print("\n\n".join(describe(PRETRAINED_DIR / n, roles.get(n, "")) for n in names))
    return 0
