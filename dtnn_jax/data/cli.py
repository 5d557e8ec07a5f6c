"""``dtnn data ...`` commands; registered by ``dtnn_jax.cli`` through :func:`register`."""

from __future__ import annotations

import argparse

from dtnn_jax.data.summary import format_summary, plot_summary, summarize


def _summary(args: argparse.Namespace) -> int:
    if args.data is None:
        from dtnn_jax.data.shipped import load_petousis2017

        records = load_petousis2017()
    else:
        from dtnn_jax.data.labelled import load_labelled

        records = load_labelled(args.data)
    print(format_summary(summarize(records)))
    path = plot_summary(records, args.out_png)
    print(f"histograms written to {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command (with ``summary``) to a top-level CLI's subparsers."""
    data = subparsers.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    summary = data_sub.add_parser(
        "summary", help="counts, cell sizes and eps_poly ranges; histogram PNG"
    )
    summary.add_argument(
        "--data", default=None, help="labelled file (json/extxyz/csv); default: shipped set"
    )
    summary.add_argument("--out-png", default="data_summary.png", help="histogram PNG path")
    summary.set_defaults(func=_summary)
