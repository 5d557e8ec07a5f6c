"""``dtnn data summary``: counts, cell sizes and eps_poly ranges of a dataset, with histograms."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    data = subparsers.add_parser(
        "data", help="inspect datasets", description="Inspect the shipped or a labelled dataset."
    )
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    summary = data_sub.add_parser(
        "summary",
        help="counts, cell sizes and eps_poly ranges; histogram PNG",
        description="Counts, atoms per structure and eps_poly ranges per target of the shipped "
        "Petousis et al. 2017 set (or --data FILE), printed, with histograms in a PNG.",
    )
    summary.add_argument(
        "--data", default=None, help="labelled file (json/extxyz/csv); default: shipped set"
    )
    summary.add_argument(
        "-o",
        "--output",
        "--out-png",
        dest="output",
        default="data_summary.png",
        help="histogram PNG path (default data_summary.png; --out-png: the old name)",
    )
    summary.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dtnn_jax.cli.common import existing_file, writable_file
    from dtnn_jax.data.summary import format_summary, plot_summary, summarize

    out_png = writable_file(args.output, "--output")
    if args.data is None:
        from dtnn_jax.data.shipped import load_petousis2017

        records = load_petousis2017()
    else:
        from dtnn_jax.data.labelled import load_labelled

        records = load_labelled(existing_file(args.data, "--data"))
    print(format_summary(summarize(records)))
    path = plot_summary(records, out_png)
    print(f"histograms written to {path}")
    return 0
