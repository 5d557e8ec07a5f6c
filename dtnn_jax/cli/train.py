"""``dtnn train``: train and evaluate DTNN readouts, and write a model bundle to use them.

The same entry point as ``python experiments/train.py``. For each requested target and each
split seed it trains one readout (80/10/10 split), evaluates it on the test split beside the
mean-predictor and ridge baselines, and writes under --workdir:

  bundle.json, params.npz   the trained readouts (one ensemble per target, a member per
                            seed): dtnn predict --model WORKDIR and dtnn screen use them
  TARGET/ (or TARGET/seedS/ with several seeds)   checkpoints, history.json, metrics.json,
                            test_predictions.npz (and the run's own one-member bundle)
  accuracy.json, accuracy.md   the test table (MAE_tensor per crystal system; mean +- std
                            over seeds)
  parity_TARGET.png         predicted vs DFT components of the test crystals

With --physics the ionic tensor is not read off the features: a head predicts each atom's
Born effective charges Z* from them, and eps_ion = 4 pi e^2 / Omega Z* Kinv Z*, with K the
frozen encoder's own force constants at the given geometry (a phonon-fine-tuned potential,
nequix-oam-1-pft layer 2 by default). Z* is fitted through eps_ion (no Born-charge labels are
needed). The total is then not trained: the bundle serves total = electronic + ionic.

With --folds K there is no test split and no table: member k trains on 90 % of the data and
stops early on the k-th disjoint 10 % (so the ensemble learns from every labelled crystal;
how the shipped models were made). Estimate accuracy with --seeds first.

A rerun with the same --workdir resumes interrupted runs; a changed setting is refused
unless --restart is given. Under N processes (--coordinator/--num-processes/--process-id,
JAX's variables or a SLURM step) training is data-parallel over every process's devices
(one mesh; XLA reduces the gradients); process 0 writes checkpoints and results.
"""

from __future__ import annotations

import argparse
import sys
import time

from dtnn_jax.cli.common import plain
from dtnn_jax.constants import (
    DEFAULT_ENCODER,
    DEFAULT_ENCODER_LAYER,
    OUTPUT_MAPS,
    PHYSICS_ENCODER,
    PHYSICS_ENCODER_LAYER,
    READOUT_VARIANTS,
    TARGETS,
)
from dtnn_jax.distributed import add_arguments as add_distributed_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train and evaluate DTNN readouts; writes a model bundle",
        description=plain(__doc__),
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
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="S",
        help="split/initialisation seeds, one ensemble member each (default: --seed)",
    )
    p.add_argument("--seed", type=int, default=0, help="the split seed of a single model")
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="K members on disjoint 90/10 train/validation folds, no test split (a final "
        "model that sees every crystal); instead of --seeds",
    )
    p.add_argument(
        "--encoder",
        default=None,
        help=f"frozen encoder (default {DEFAULT_ENCODER}; with --physics {PHYSICS_ENCODER})",
    )
    p.add_argument(
        "--layer",
        type=int,
        default=None,
        help=f"encoder layer whose features are read (default {DEFAULT_ENCODER_LAYER}; with "
        f"--physics {PHYSICS_ENCODER_LAYER})",
    )
    p.add_argument(
        "--physics",
        action="store_true",
        help="ionic = learned Born charges x the encoder's force constants; total = "
        "electronic + ionic (see above)",
    )
    p.add_argument(
        "--readout",
        choices=list(READOUT_VARIANTS),
        default="dtnn",
        help="dtnn (default), dtnn_simple (no edge inputs) or head (no equivariant blocks: "
        "an MLP on scalars plus linear l = 1, 2 heads)",
    )
    p.add_argument("--simple", action="store_true", help="the same as --readout dtnn_simple")
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
    p.add_argument("--restart", action="store_true", help="discard checkpoints in --workdir")
    p.add_argument(
        "--shards",
        type=int,
        default=None,
        help="split each step's batch over this many devices (default: one per device of "
        "all processes); fix it to resume on another number of processes or devices",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_distributed_arguments(p)


def config_from_args(args: argparse.Namespace, target: str, seed: int):
    """The `ExperimentConfig` the flags describe."""
    import dataclasses

    from dtnn_jax.config import ExperimentConfig

    make = ExperimentConfig.quick if args.quick else ExperimentConfig.default
    readout = "dtnn_simple" if args.simple else args.readout
    config = make(
        target=target, encoder_layer=args.layer, seed=seed, encoder=args.encoder, readout=readout
    )
    if args.physics and target == "ionic":
        config = config.with_physics()
    train = config.train
    if args.max_epochs is not None:
        train = dataclasses.replace(train, max_epochs=args.max_epochs)
    if args.no_progress:
        train = dataclasses.replace(train, progress_bar=False)
    if args.shards is not None:
        train = dataclasses.replace(train, shards=args.shards)
    if args.output_map is not None and config.physics is None:
        config = dataclasses.replace(
            config, readout=dataclasses.replace(config.readout, output_map=args.output_map)
        )
    return dataclasses.replace(config, train=train)


def run(args: argparse.Namespace) -> int:
    from dtnn_jax.cli.common import (
        CommandError,
        bars_wanted,
        existing_file,
        positive,
        writable_dir,
    )

    positive("--limit", args.limit)
    args.no_progress = not bars_wanted(not args.no_progress)  # no bars into a log file
    positive("--max-epochs", args.max_epochs)
    positive("--shards", args.shards)
    positive("--folds", args.folds)
    if args.folds is not None and args.seeds is not None:
        raise CommandError("--folds and --seeds are two ways to make members: give one")
    if args.folds is not None:
        seeds = list(range(args.folds))  # member k: fold k, initialisation seed k
    else:
        seeds = args.seeds if args.seeds is not None else [args.seed]
    if len(set(seeds)) != len(seeds):
        raise CommandError(f"--seeds repeats a seed: {seeds}")
    data = existing_file(args.data, "--data") if args.data is not None else None
    workdir = writable_dir(args.workdir, "--workdir")
    if args.encoder is None:
        args.encoder = PHYSICS_ENCODER if args.physics else DEFAULT_ENCODER
    if args.layer is None:
        args.layer = PHYSICS_ENCODER_LAYER if args.physics else DEFAULT_ENCODER_LAYER
    targets = list(TARGETS) if args.target == "all" else [args.target]
    if args.physics:
        if args.target == "total":
            raise CommandError(
                "with --physics the total is electronic + ionic, not trained: use --target "
                "all (both parts) or ionic"
            )
        targets = [t for t in targets if t != "total"]
    try:  # a bad encoder or layer fails here, before any data is read
        configs = {t: [config_from_args(args, t, s) for s in seeds] for t in targets}
    except ValueError as err:
        raise CommandError(str(err)) from err

    from dtnn_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    from dtnn_jax import distributed

    group = distributed.initialize_from_args(args)
    from dtnn_jax.data import load_labelled, load_petousis2017
    from dtnn_jax.encoder.features import graphs_with_features
    from dtnn_jax.training.experiment import run_experiment
    from dtnn_jax.training.export import export_bundle, records_digest
    from dtnn_jax.training.report import write_report

    records = load_petousis2017() if data is None else load_labelled(data)
    if args.limit:
        records = records[: args.limit]
    start = time.perf_counter()
    # One encoder pass serves every target and seed (the cache is keyed by structures).
    graphs = graphs_with_features(
        [r.structure for r in records],
        args.layer,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        encoder=args.encoder,
    )
    by_target = {t: graphs for t in targets}
    if args.physics and "ionic" in targets:
        from dtnn_jax.physics.training import ionic_graphs

        physics = configs["ionic"][0].physics
        by_target["ionic"] = ionic_graphs(
            [r.structure for r in records],
            args.layer,
            feature_encoder=args.encoder,
            k_encoder=args.encoder,
            treatment=physics.treatment,
            floor=physics.floor,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
        )
    results: dict[str, list[dict]] = {}
    runs: dict[str, list] = {}
    for target in targets:
        for config in configs[target]:
            rundir = workdir / target
            fold = None if args.folds is None else (config.seed, args.folds)
            if fold is not None:
                rundir = rundir / f"fold{config.seed}"
            elif len(seeds) > 1:
                rundir = rundir / f"seed{config.seed}"
            t0 = time.perf_counter()
            summary, fit = run_experiment(
                config, rundir, records, by_target[target], restart=args.restart, fold=fold
            )
            summary["wall_time_s"] = time.perf_counter() - t0
            results.setdefault(target, []).append(summary)
            if fold is not None:
                val = summary["validation"]
                runs.setdefault(target, []).append(
                    (config, fit, {f"val_{k}": v for k, v in val.items()})
                )
                print(
                    f"{target:>10} fold {fold[0]}/{fold[1]}: validation MAE_tensor "
                    f"{val['mae_tensor']:.3f} in {summary['wall_time_s']:.0f} s"
                )
                continue
            runs.setdefault(target, []).append((config, fit, summary["test"]))
            m, base = summary["test"], summary["baselines"]
            print(
                f"{target:>10} seed {config.seed}: test MAE_tensor {m['mae_tensor']:.3f} "
                f"(mean predictor {base['mean_tensor']['mae_tensor']:.3f}, "
                f"ridge {base['ridge_isotropic']['mae_tensor']:.3f}) "
                f"in {summary['wall_time_s']:.0f} s"
            )
    if not group.is_main:  # process 0 writes the report and the bundle
        return 0
    if args.folds is None:
        write_report(results, workdir)
        members = (
            f"one member per split seed ({', '.join(map(str, seeds))}; 80/10/10, each member "
            "saw its own 80 %)"
        )
    else:
        members = (
            f"{args.folds} members on disjoint 90/10 train/validation folds (every labelled "
            "crystal is in the training set of at least all but one member)"
        )
    what = f"DTNN readouts on frozen {args.encoder} layer {args.layer} features"
    if args.physics:
        what = (
            f"electronic: a DTNN readout on frozen {args.encoder} layer {args.layer} features; "
            "ionic: learned Born charges x the same potential's force constants; total = "
            "electronic + ionic"
        )
    kept = _previous_targets(workdir, targets, records_digest(records), args.encoder)
    bundle = export_bundle(
        workdir,
        runs,
        records_digest(records),
        len(records),
        description=f"{what}; {members}",
        training_data=str(data) if data is not None else "shipped Petousis et al. 2017",
        produced_by="dtnn train",
    )
    if kept:
        _add_targets(bundle, kept)
    where = "table and plots" if args.folds is None else "runs"
    print(f"done in {time.perf_counter() - start:.0f} s; {where} in {workdir}")
    print(f"model bundle: {bundle} (dtnn predict --model {bundle} FILES...)")
    return 0


def _previous_targets(workdir, targets, data_sha256: str, encoder_name: str) -> dict:
    """The models of ``workdir/bundle.json`` that this run does not retrain, kept when they
    were trained on the same data with the same encoder (a rerun with ``--target
    electronic`` must not drop the ionic and total models); a note says what is kept or
    dropped."""
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.inference import BundleError
    from dtnn_jax.inference.bundle import load_bundle

    if not (workdir / "bundle.json").exists():
        return {}
    try:
        previous = load_bundle(workdir)
    except BundleError as err:
        print(f"note: the previous {workdir}/bundle.json is not kept ({err})", file=sys.stderr)
        return {}
    others = {t: m for t, m in previous.targets.items() if t not in targets}
    if not others:
        return {}
    names = ", ".join(others)
    same_encoder = (
        previous.metadata.get("encoder_sha256") == get_encoder(encoder_name).weights_sha256
    )
    if previous.metadata.get("training_data_sha256") != data_sha256 or not same_encoder:
        print(
            f"note: the {names} model(s) of the previous {workdir}/bundle.json were trained "
            "on other data or another encoder and are dropped from it; retrain them with "
            "--target",
            file=sys.stderr,
        )
        return {}
    print(f"note: {workdir}/bundle.json keeps its {names} model(s) (not retrained)")
    return others


def _add_targets(path, kept: dict) -> None:
    """Adds ``kept`` target models to the bundle at ``path`` (same encoder, same data)."""
    import dataclasses

    from dtnn_jax.constants import TARGETS
    from dtnn_jax.inference.bundle import load_bundle, save_bundle

    bundle = load_bundle(path)
    both = {**bundle.targets, **kept}
    targets = {t: both[t] for t in TARGETS if t in both}
    save_bundle(dataclasses.replace(bundle, targets=targets), path)
