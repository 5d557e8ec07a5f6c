"""``dtnn screen POOL``: rank a pool of crystals as candidate dielectrics.

POOL is a directory of structure files, or ``shipped`` for the ~5,300 unlabeled Materials
Project structures shipped with the package. With band gaps (--band-gaps CSV with columns
id, band_gap_ev; id = material id or file name/stem) the ranking is by the figure of merit
FOM = band gap x eps_poly; without them it ranks eps_poly only, and says so. Likely metals
(no band gap known and no charge-balanced ionic formula) and, where no band gap is known,
crystals with a predicted eps_inf above 15.5 (the band-gap proxy: likely metals, semimetals
or gaps < 0.5 eV; see dtnn_jax.inference.screening_rank) are not ranked as dielectrics
unless --rank-metals is given. Writes a ranked CSV, a summary, the element frequencies of
the top K and plots to -o/--output.

Cost-aware by default: the pool is ranked with the fast feature model (--model, default
dtnn-sevennet0-petousis2017: one encoder pass per crystal), and the --refine K best (default
3 x --top) are predicted again with the physics model (--refine-model, default: the shipped
default model; ~3N force evaluations per crystal) and ranked by that ahead of the rest, which
are reported as pre-screen only (ranked.csv column stage). On held-out crystals a pre-screen
twice (three times) the size of the wanted top cut 6 % (4 %) of the physics model's top
(benchmarks/results/screen_refine.md). --refine 0 ranks with --model alone, as does a
screen with your own --model unless --refine or --refine-model is given.

Under N processes (--coordinator/--num-processes/--process-id, JAX's variables or a SLURM
step) every process screens its own round-robin shard of the pool and writes it to
OUT/shards; process 0 merges them into one ranked CSV, summary and plot set, identical to a
single-process run. A shard can be (re)computed alone with --shard I/N, and the shards
merged with --merge.

Exit status: 0 all crystals predicted, 1 some failed, 2 unusable arguments, pool or model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dtnn_jax.cli.common import plain
from dtnn_jax.cli.featurize import add_shard_arguments
from dtnn_jax.constants import TARGETS

# Default refine size per wanted candidate (see the module docstring).
REFINE_PER_TOP = 3


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "screen",
        help="rank a pool of crystals by FOM = band gap x eps_poly",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("pool", metavar="POOL", help="directory of structure files, or 'shipped'")
    s.add_argument(
        "--band-gaps",
        default=None,
        metavar="CSV",
        help="CSV with columns id (material id or file name/stem) and band_gap_ev",
    )
    s.add_argument("--top", type=int, default=50, metavar="K", help="candidates to report")
    s.add_argument(
        "--target", choices=TARGETS, default="total", help="tensor to rank by (default: total)"
    )
    s.add_argument(
        "--model",
        default=None,
        help="the (pre-)screen model: bundle name or directory, e.g. a dtnn train --workdir "
        "(default: the fast dtnn-sevennet0-petousis2017)",
    )
    s.add_argument(
        "--refine",
        type=int,
        default=None,
        metavar="K",
        help="predict the K best again with --refine-model and rank them first (default "
        "3 x --top, or 0 when --model is given without --refine-model; 0: no refinement)",
    )
    s.add_argument(
        "--refine-model",
        default=None,
        help="the refining model (default: the shipped default, the physics model)",
    )
    s.add_argument(
        "-o",
        "--output",
        "--out",
        dest="output",
        default="screening",
        help="output directory (default: screening; --out: the old name)",
    )
    s.add_argument("--chunk-size", type=int, default=256, help="crystals per prediction call")
    s.add_argument("--limit", type=int, default=None, help="screen only the first N crystals")
    s.add_argument(
        "--rank-metals",
        action="store_true",
        help="rank likely metals and band-gap-proxy exclusions too (not recommended)",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_shard_arguments(s, "screen only shard I of N", "merge the shards in --out, rank them")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import itertools

    from dtnn_jax.cli.common import (
        CommandError,
        bars_wanted,
        existing_file,
        positive,
        writable_dir,
    )

    for name in ("--top", "--chunk-size", "--limit", "--max-atoms"):
        positive(name, getattr(args, name.lstrip("-").replace("-", "_")))
    if args.refine is None:  # the two-stage screen is the default of the shipped models
        default = args.model is None or args.refine_model is not None
        args.refine = REFINE_PER_TOP * args.top if default else 0
    if args.refine < 0:
        raise CommandError(f"--refine must be >= 0, got {args.refine}")
    if args.pool != "shipped":
        from dtnn_jax.cli.predict import expand_inputs

        if not Path(args.pool).is_dir():
            raise CommandError(f"{args.pool}: not a directory of structure files (or 'shipped')")
        files, empty = expand_inputs([args.pool])
        if empty:
            raise CommandError(f"{args.pool}: {empty[0]['error']}; nothing to screen")
    band_gaps = None
    if args.band_gaps:
        from dtnn_jax.inference.pool import read_band_gaps

        band_gaps = read_band_gaps(existing_file(args.band_gaps, "--band-gaps"))
    out = writable_dir(args.output, "--output")

    from dtnn_jax import distributed, shards
    from dtnn_jax.cli.predict import load_model_or_fail
    from dtnn_jax.inference import FAST_MODEL
    from dtnn_jax.inference.pool import pool_items
    from dtnn_jax.inference.screening import merge_screen, screen
    from dtnn_jax.runtime import enable_compilation_cache

    pool = files if args.pool != "shipped" else "shipped"
    if args.limit is not None:
        items, _ = pool_items(pool)
        pool = list(itertools.islice(items, args.limit))
    ranking = {
        "band_gaps": band_gaps,
        "top_k": args.top,
        "target": args.target,
        "rank_metals": args.rank_metals,
    }
    enable_compilation_cache()
    # before anything that may start JAX's backend (loading a model does)
    group = distributed.ProcessGroup(0, 1) if args.merge else distributed.initialize_from_args(args)
    refining = _refine_model(args)
    if refining is not None:
        ranking |= {"refine_model": refining, "refine_top": args.refine}
    if args.merge:
        return _report(merge_screen(out, pool, **ranking), out, args.target)
    shard = shards.parse_shard(args.shard) if args.shard else None
    if shard is None and group.count > 1:
        shard = (group.index, group.count)

    model = load_model_or_fail(args.model or FAST_MODEL)
    if args.target not in model.targets:
        raise CommandError(f"model {model.name} has no {args.target!r} model")
    if refining is not None and refining.name == model.name:
        ranking.pop("refine_model"), ranking.pop("refine_top")  # nothing to refine
    summary = screen(
        pool,
        model,
        out,
        **ranking,
        chunk_size=args.chunk_size,
        progress=bars_wanted(not args.no_progress),
        max_atoms=args.max_atoms,
        allow_isolated=args.allow_isolated,
        shard=shard,
    )
    if shard is not None:
        index, count = shard
        print(f"shard {index}/{count}: {summary['n_rows']} crystals written to {out}/shards/")
        if group.count == 1:  # an explicit --shard: the user merges
            print(f"merge the {count} shards with: dtnn screen {args.pool} --merge -o {out}")
            return 0
        distributed.barrier("dtnn-screen-shards-written", args.distributed_timeout)
        if not group.is_main:
            return 0
        summary = merge_screen(out, pool, **ranking)
    return _report(summary, out, args.target)


def _refine_model(args):
    """The refining model of a cost-aware screen, or None (--refine 0)."""
    from dtnn_jax.cli.common import CommandError
    from dtnn_jax.cli.predict import load_model_or_fail

    if args.refine == 0:
        return None
    model = load_model_or_fail(args.refine_model)
    if args.target not in model.targets:
        raise CommandError(f"refine model {model.name} has no {args.target!r} model")
    return model


def _report(summary: dict, out, target: str) -> int:
    """Prints the summary of a ranked screen; returns the exit status."""
    from dtnn_jax.cli.common import as_flags

    print(
        f"screened {summary['n_pool']} crystals with {summary['model']}: "
        f"{summary['n_predicted']} predicted, {summary['n_failed']} failed, "
        f"{summary['n_ranked']} ranked by {summary['ranking']}"
    )
    if summary.get("refine_model"):
        print(
            f"refined the best {summary['n_refined']} with {summary['refine_model']} (ranked "
            "first; the rest are pre-screen only: ranked.csv column stage)"
        )
    if summary["note"]:
        print(f"note: {summary['note']}")
    if summary["uses_fom"] and summary["n_without_band_gap"]:
        print(f"{summary['n_without_band_gap']} predicted crystals have no band gap (unranked)")
    score_name = "FOM (eV)" if summary["uses_fom"] else f"eps_poly ({target})"
    print(f"  {'rank':>4}  {'id':<24} {'formula':<14} {score_name:>10}  stage")
    for entry in summary["top_k"][:10]:
        score = entry["fom"] if summary["uses_fom"] else entry[f"eps_poly_{target}"]
        print(
            f"  {entry['rank']:>4}  {entry['id']:<24} {entry['formula']:<14} {score:10.3f}  "
            f"{entry.get('stage') or ''}"
        )
    for f in summary["failures"]:
        print(f"dtnn screen: {f['source']}: {as_flags(f['error'])}", file=sys.stderr)
    print(f"ranked CSV, plots and element frequencies in {out}/")
    return 1 if summary["n_failed"] else 0
