"""``dtnn train``: train and evaluate DTNN on the shipped data (or a labelled file).

The same entry point as ``python experiments/train.py``. For each requested target it
trains one readout on split ``--seed`` (80/10/10), evaluates it on the test split beside the
mean-predictor and ridge baselines, and writes, under ``--workdir``:

* ``<target>/``: checkpoints, ``history.json``, ``metrics.json``, ``test_predictions.npz``;
* ``accuracy.json`` / ``accuracy.md``: the test table (MAE_tensor per crystal system);
* ``parity_<target>.png``: predicted vs DFT components of the test crystals.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dtnn_jax.config import DEFAULT_ENCODER_LAYER, OUTPUT_MAPS, TARGETS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train and evaluate DTNN (one seed; all targets by default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        choices=[*TARGETS, "all"],
        default="all",
        help="dielectric tensor to learn (default: all three, trained separately)",
    )
    p.add_argument("--workdir", default="runs/dtnn", help="run directory (resumes if present)")
    p.add_argument("--seed", type=int, default=0, help="split/initialisation seed")
    p.add_argument(
        "--layer",
        type=int,
        default=DEFAULT_ENCODER_LAYER,
        help=f"SevenNet-0 layer 1..5 (default {DEFAULT_ENCODER_LAYER})",
    )
    p.add_argument("--simple", action="store_true", help="DTNN-simple: no edge inputs")
    p.add_argument(
        "--output-map",
        choices=OUTPUT_MAPS,
        default=None,
        help="network output -> eps: matrix_exp (default, positive definite) or affine "
        "(the paper's)",
    )
    p.add_argument("--quick", action="store_true", help="tiny model and few epochs (smoke test)")
    p.add_argument("--max-epochs", type=int, default=None, help="override the epoch budget")
    p.add_argument(
        "--data",
        default=None,
        help="labelled data file (JSON/extxyz/CSV, see dtnn_jax.data.load_labelled); "
        "default: the shipped Petousis et al. 2017 set",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N records")
    p.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/dtnn_jax)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace, target: str):
    """The `ExperimentConfig` the flags describe."""
    import dataclasses

    from dtnn_jax.config import ExperimentConfig

    make = ExperimentConfig.quick if args.quick else ExperimentConfig.default
    config = make(target=target, encoder_layer=args.layer, seed=args.seed)
    train = config.train
    if args.max_epochs is not None:
        train = dataclasses.replace(train, max_epochs=args.max_epochs)
    if args.no_progress:
        train = dataclasses.replace(train, progress_bar=False)
    readout = dataclasses.replace(config.readout, use_edges=not args.simple)
    if args.output_map is not None:
        readout = dataclasses.replace(readout, output_map=args.output_map)
    return dataclasses.replace(config, readout=readout, train=train)


def run(args: argparse.Namespace) -> int:
    from dtnn_jax.data import load_labelled, load_petousis2017
    from dtnn_jax.encoder.features import graphs_with_features
    from dtnn_jax.training.experiment import train_and_evaluate
    from dtnn_jax.training.report import write_report

    records = load_petousis2017() if args.data is None else load_labelled(args.data)
    if args.limit:
        records = records[: args.limit]
    targets = list(TARGETS) if args.target == "all" else [args.target]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # One encoder pass serves every target (the cache is keyed by structures and layer).
    graphs = graphs_with_features(
        [r.structure for r in records],
        args.layer,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
    )
    results = {}
    for target in targets:
        config = config_from_args(args, target)
        t0 = time.perf_counter()
        results[target] = train_and_evaluate(config, workdir / target, records, graphs)
        results[target]["wall_time_s"] = time.perf_counter() - t0
        m = results[target]["test"]
        base = results[target]["baselines"]
        print(
            f"{target:>10}: test MAE_tensor {m['mae_tensor']:.3f} "
            f"(mean predictor {base['mean_tensor']['mae_tensor']:.3f}, "
            f"ridge {base['ridge_isotropic']['mae_tensor']:.3f}) "
            f"in {results[target]['wall_time_s']:.0f} s"
        )
    write_report(results, workdir, records)
    print(f"done in {time.perf_counter() - start:.0f} s; table and plots in {workdir}")
    return 0
