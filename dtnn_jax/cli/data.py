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
        "--source",
        default="petousis2017",
        choices=("petousis2017", "phonondb2018", "e3nn_models", "combined", "all"),
        help="shipped source to summarise (ignored with --data): one source, 'combined' (the "
        "deduplicated training set, Petousis + phonondb) or 'all' (each source, then combined)",
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


def _shipped_records(source: str):
    """Records of one shipped source, the combined training set (every record of every
    crystal), or for ``"all"`` a dict of each source plus ``"combined"``."""
    from dtnn_jax.data.combined import load_training_set
    from dtnn_jax.data.shipped import load_petousis2017
    from dtnn_jax.data.sources import load_e3nn_models, load_phonondb2018

    loaders = {
        "petousis2017": load_petousis2017,
        "phonondb2018": load_phonondb2018,
        "e3nn_models": load_e3nn_models,
    }
    if source in loaders:
        return loaders[source]()
    crystals = load_training_set()
    combined = [r for c in crystals for r in c.records]
    print(f"combined training set: {len(crystals)} crystals, {len(combined)} records")
    if source == "combined":
        return combined
    return {**{name: load() for name, load in loaders.items()}, "combined": combined}


def run(args: argparse.Namespace) -> int:
    from dtnn_jax.cli.common import existing_file, writable_file
    from dtnn_jax.data.summary import format_summary, plot_summary, summarize

    out_png = writable_file(args.output, "--output")
    if args.data is None:
        records = _shipped_records(getattr(args, "source", "petousis2017"))
    else:
        from dtnn_jax.data.labelled import load_labelled

        records = load_labelled(existing_file(args.data, "--data"))
    if isinstance(records, dict):  # --source all: one block per source, then combined
        for name, recs in records.items():
            print(f"== {name}")
            print(format_summary(summarize(recs)))
        records = records["combined"]
    else:
        print(format_summary(summarize(records)))
    path = plot_summary(records, out_png)
    print(f"histograms written to {path}")
    return 0
