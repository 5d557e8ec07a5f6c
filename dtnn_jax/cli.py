"""The ``dtnn`` command line: ``dtnn data|featurize|train|predict|screen ...``.

Each command lives beside the code it drives and registers itself through a
``register(subparsers)`` function; this module only assembles them. The heavy work (models,
data, compilation) happens inside the commands; ``dtnn --help`` takes about 3 s (JAX import).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command modules, in the order `dtnn --help` lists them
_COMMAND_MODULES = (
    "dtnn_jax.data.cli",
    "dtnn_jax.encoder.cli",
    "dtnn_jax.training.cli",
    "dtnn_jax.inference.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtnn",
        description="Dielectric tensors of crystals from a frozen SevenNet-0 encoder (JAX).",
    )
    from dtnn_jax import __version__

    parser.add_argument("--version", action="version", version=f"dtnn-jax {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
