"""``dtnn predict`` and ``dtnn screen``: the pretrained models from the command line.

``dtnn predict FILES...`` prints, per crystal, the predicted tensor(s) with their ensemble
spread, eigenvalues, eps_poly, anisotropy ratio lambda_max / lambda_min and the refractive
index sqrt(eps_poly) of the electronic tensor, as a table, JSON or CSV. A file that cannot
be used (unparsable, unsupported element, an atom with no neighbour) gets an error record
naming it and the reason; the other files are still predicted and printed, and the exit
status is 1.

``dtnn screen POOL`` ranks a pool (a directory of structure files, or ``shipped`` for the
shipped unlabeled pool) by FOM = band gap x eps_poly (band gaps from ``--band-gaps``) or,
without band gaps, by eps_poly; see `dtnn_jax.inference.screening`.

Exit status: 0 all inputs predicted, 1 some input failed, 2 unusable arguments or model.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from dtnn_jax.config import TARGETS

FORMATS = ("table", "json", "csv")
_COMPONENTS = ("xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz")


def register(subparsers) -> None:
    """Adds the ``predict`` and ``screen`` commands to the ``dtnn`` parser."""
    p = subparsers.add_parser(
        "predict",
        help="dielectric tensors of structure files with a pretrained model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="CIF/POSCAR/extxyz/JSON files or directories"
    )
    p.add_argument(
        "--target",
        choices=[*TARGETS, "all"],
        default="all",
        help="tensor to print (default: all the model has)",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument("--model", default=None, help="bundle name or directory (default: shipped)")
    p.add_argument("--output", "-o", default=None, help="write here instead of stdout")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr")
    p.add_argument(
        "--inversion-average",
        action="store_true",
        help="average over the crystal and its inverted image (O(3)-equivariant; 2x cost)",
    )
    p.set_defaults(func=run_predict)

    s = subparsers.add_parser(
        "screen",
        help="rank a pool of crystals by FOM = band gap x eps_poly",
        description=__doc__,
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
    s.add_argument("--model", default=None, help="bundle name or directory (default: shipped)")
    s.add_argument("--out", default="screening", help="output directory (default: screening)")
    s.add_argument("--chunk-size", type=int, default=256, help="crystals per prediction call")
    s.add_argument("--limit", type=int, default=None, help="screen only the first N crystals")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=run_screen)


# --------------------------------------------------------------------------- predict


def _expand(paths: list[str]) -> list[Path]:
    from dtnn_jax.inputs import structure_files

    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(structure_files(p) if p.is_dir() else [p])
    return files


def predict_records(
    model,
    files,
    targets,
    chunk_size: int = 256,
    progress: bool = False,
    inversion_average: bool = False,
) -> list[dict]:
    """One JSON-ready record per input crystal: tensors and derived scalars, or the error."""
    from tqdm.auto import tqdm

    from dtnn_jax.inference.records import predict_crystals

    records = []
    with tqdm(total=len(files), disable=not progress, desc="predict", unit="crystal") as bar:
        for record in predict_crystals(model, files, chunk_size, inversion_average):
            records.append(record.as_dict(targets))
            bar.update(1)
    return records


def format_table(records: list[dict], model_name: str) -> str:
    """Human-readable: one block per crystal."""
    out = [f"model: {model_name}  (+- is the ensemble standard deviation over members)"]
    for rec in records:
        head = f"== {rec['source']}" + (f" ({rec['formula']})" if rec["formula"] else "")
        if rec["error"]:
            out += ["", f"{head}: ERROR: {rec['error']}"]
            continue
        out += ["", head]
        if rec["refractive_index"] is not None:
            out.append(f"  refractive index (electronic): {rec['refractive_index']:.4f}")
        for t, v in rec["targets"].items():
            aniso = "n/a" if v["anisotropy"] is None else f"{v['anisotropy']:.3f}"
            eig = " ".join(f"{x:.3f}" for x in v["eigenvalues"])
            out.append(
                f"  {t}: eps_poly {v['eps_poly']:.3f} +- {v['eps_poly_std']:.3f}  "
                f"eigenvalues {eig}  anisotropy {aniso}"
            )
            for row, srow in zip(v["tensor"], v["std"], strict=True):
                cells = "  ".join(f"{x:9.3f} +- {s:6.3f}" for x, s in zip(row, srow, strict=True))
                out.append(f"    [{cells}]")
    return "\n".join(out) + "\n"


def format_csv(records: list[dict], targets) -> str:
    """One row per crystal: tensors flattened row-major (xx, xy, ..., zz)."""
    columns = ["source", "id", "formula", "error", "refractive_index"]
    for t in targets:
        columns += [f"{t}_{c}" for c in _COMPONENTS]
        columns += [f"{t}_std_{c}" for c in _COMPONENTS]
        columns += [f"{t}_eig{i}" for i in (1, 2, 3)]
        columns += [f"{t}_eps_poly", f"{t}_eps_poly_std", f"{t}_anisotropy"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for rec in records:
        row = {k: rec[k] for k in ("source", "id", "formula", "error", "refractive_index")}
        for t, v in rec["targets"].items():
            flat = [x for r in v["tensor"] for x in r]
            flat_std = [x for r in v["std"] for x in r]
            row |= {f"{t}_{c}": x for c, x in zip(_COMPONENTS, flat, strict=True)}
            row |= {f"{t}_std_{c}": x for c, x in zip(_COMPONENTS, flat_std, strict=True)}
            row |= {f"{t}_eig{i + 1}": x for i, x in enumerate(v["eigenvalues"])}
            row |= {f"{t}_{k}": v[k] for k in ("eps_poly", "eps_poly_std", "anisotropy")}

        def cell(x):
            if x is None:
                return ""
            return f"{x:.6g}" if isinstance(x, float) else x

        writer.writerow([cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def _load(model_arg):
    from dtnn_jax.inference import BundleError, load_model

    try:
        return load_model(model_arg)
    except BundleError as err:
        print(f"dtnn: cannot load the model: {err}", file=sys.stderr)
        return None


def run_predict(args: argparse.Namespace) -> int:
    model = _load(args.model)
    if model is None:
        return 2
    if args.target != "all" and args.target not in model.targets:
        print(
            f"dtnn predict: model {model.name} has no {args.target!r} model "
            f"(it has {', '.join(model.targets)})",
            file=sys.stderr,
        )
        return 2
    targets = model.targets if args.target == "all" else (args.target,)
    files = _expand(args.files)
    records = predict_records(
        model, files, targets, progress=args.progress, inversion_average=args.inversion_average
    )
    if args.format == "json":
        text = json.dumps({"model": model.name, "crystals": records}, indent=1) + "\n"
    elif args.format == "csv":
        text = format_csv(records, targets)
    else:
        text = format_table(records, model.name)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    failed = [r for r in records if r["error"]]
    for r in failed:
        print(f"dtnn predict: {r['source']}: {r['error']}", file=sys.stderr)
    if failed:
        print(f"dtnn predict: {len(failed)} of {len(records)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


# --------------------------------------------------------------------------- screen


def run_screen(args: argparse.Namespace) -> int:
    import itertools

    from dtnn_jax.inference.pool import BandGapFileError, pool_items, read_band_gaps
    from dtnn_jax.inference.screening import screen

    if args.top < 1 or args.chunk_size < 1:
        print("dtnn screen: --top and --chunk-size must be >= 1", file=sys.stderr)
        return 2
    if args.pool != "shipped" and not Path(args.pool).is_dir():
        print(
            f"dtnn screen: {args.pool}: not a directory of structure files (or 'shipped')",
            file=sys.stderr,
        )
        return 2
    try:
        band_gaps = read_band_gaps(args.band_gaps) if args.band_gaps else None
    except BandGapFileError as err:
        print(f"dtnn screen: {err}", file=sys.stderr)
        return 2
    model = _load(args.model)
    if model is None:
        return 2
    if args.target not in model.targets:
        print(f"dtnn screen: model {model.name} has no {args.target!r} model", file=sys.stderr)
        return 2
    pool = args.pool
    if args.limit is not None:
        items, _ = pool_items(pool)
        pool = list(itertools.islice(items, args.limit))
    try:
        summary = screen(
            pool,
            model,
            args.out,
            band_gaps=band_gaps,
            top_k=args.top,
            target=args.target,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
        )
    except BandGapFileError as err:
        print(f"dtnn screen: {err}", file=sys.stderr)
        return 2
    print(
        f"screened {summary['n_pool']} crystals with {summary['model']}: "
        f"{summary['n_predicted']} predicted, {summary['n_failed']} failed; "
        f"ranked by {summary['ranking']}"
    )
    if summary["note"]:
        print(f"note: {summary['note']}")
    if band_gaps is not None and summary["n_without_band_gap"]:
        print(f"{summary['n_without_band_gap']} predicted crystals have no band gap (unranked)")
    score_name = "FOM (eV)" if band_gaps is not None else f"eps_poly ({args.target})"
    print(f"  {'rank':>4}  {'id':<24} {'formula':<14} {score_name:>10}")
    for entry in summary["top_k"][:10]:
        score = entry["fom"] if band_gaps is not None else entry[f"eps_poly_{args.target}"]
        print(f"  {entry['rank']:>4}  {entry['id']:<24} {entry['formula']:<14} {score:10.3f}")
    for f in summary["failures"]:
        print(f"dtnn screen: {f['source']}: {f['error']}", file=sys.stderr)
    print(f"ranked CSV, plots and element frequencies in {args.out}/")
    return 1 if summary["n_failed"] else 0
