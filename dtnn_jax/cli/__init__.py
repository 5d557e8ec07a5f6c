"""The ``dtnn`` command line: ``dtnn data|featurize|train|predict|screen|models|cache ...``.

One module per command (`dtnn_jax.cli.data`, ...), each with ``register(subparsers)`` and a
``run(args)``. The modules import nothing heavy at module level, so ``dtnn --help`` and
``dtnn predict --help`` answer at once; the work (JAX, models, data) is imported inside
``run``. Every user error (a bad file, bundle, setting or destination) is one message on
stderr and exit status 2 (`dtnn_jax.errors.InputError`); 1 means some inputs failed while
the others were processed; 0 means all went well.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dtnn_jax.cli.common import CommandError

# command modules, in the order `dtnn --help` lists them
_COMMANDS = ("data", "featurize", "train", "predict", "screen", "models", "cache")


def build_parser() -> argparse.ArgumentParser:
    from dtnn_jax import __version__

    parser = argparse.ArgumentParser(
        prog="dtnn",
        description="Dielectric tensors of crystals from a frozen, pretrained encoder (JAX).",
    )
    parser.add_argument("--version", action="version", version=f"dtnn-jax {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"dtnn_jax.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from dtnn_jax.cli.common import prepare_runtime
    from dtnn_jax.errors import InputError

    prepare_runtime()
    try:
        return int(args.func(args) or 0)
    except (CommandError, InputError) as err:
        print(f"dtnn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dtnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
