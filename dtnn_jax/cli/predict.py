"""``dtnn predict FILES...``: dielectric tensors of structure files with a trained model.

Prints, per crystal, the predicted tensor(s) with their ensemble spread, eigenvalues,
eps_poly, anisotropy ratio lambda_max / lambda_min and the refractive index sqrt(eps_poly)
of the electronic tensor, as a table, JSON or CSV. Directories are read for structure files
(known suffixes, POSCAR/CONTCAR); a file with several crystals (multi-frame extxyz,
multi-block CIF) gives one result per crystal, named FILE#k or FILE#BLOCK. An input that
cannot be used gets an error record naming it and the reason; the others are still
predicted and printed. Under N processes (--coordinator/--num-processes/--process-id, JAX's
variables or a SLURM step) every process predicts its round-robin share of the files and
writes it to shards/ beside --output (else ./dtnn-predict-shards/shards/); process 0 prints
or writes the merged result, in input order.

Exit status: 0 all inputs predicted, 1 some input failed, 2 unusable arguments or model.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from dtnn_jax.cli.common import plain
from dtnn_jax.cli.featurize import add_input_arguments
from dtnn_jax.constants import TARGETS
from dtnn_jax.distributed import add_arguments as add_distributed_arguments

FORMATS = ("table", "json", "csv")
_COMPONENTS = ("xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="dielectric tensors of structure files with a trained model",
        description=plain(__doc__),
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
    p.add_argument(
        "--model", default=None, help="bundle name or directory, e.g. a dtnn train --workdir"
    )
    p.add_argument("--output", "-o", default=None, help="write here instead of stdout")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr")
    p.add_argument(
        "--phonons",
        action="store_true",
        help="with a physics model: the Gamma-point frequencies (cm^-1) with each mode's IR "
        "activity and its part of eps_ion (table and JSON)",
    )
    p.add_argument(
        "--inversion-average",
        action="store_true",
        help="average over the crystal and its inverted image (O(3)-equivariant; 2x cost)",
    )
    add_input_arguments(p)
    add_distributed_arguments(p)
    p.set_defaults(func=run)


def expand_inputs(paths: list[str]) -> tuple[list, list[dict]]:
    """Files and directories -> (inputs to predict, error records for empty directories).

    Notes on stderr name what a directory held besides structure files.
    """
    from dtnn_jax.inputs import scan_directory

    inputs, empty = [], []
    for p in map(Path, paths):
        if not p.is_dir():
            inputs.append(p)
            continue
        scan = scan_directory(p)
        if scan.skipped:
            names = ", ".join(x.name for x in scan.skipped[:5])
            more = f" and {len(scan.skipped) - 5} more" if len(scan.skipped) > 5 else ""
            print(
                f"note: {p}: skipped {len(scan.skipped)} file(s) that are not structure "
                f"files ({names}{more})",
                file=sys.stderr,
            )
        if scan.subdirectories:
            names = ", ".join(x.name + "/" for x in scan.subdirectories[:5])
            print(
                f"note: {p}: {len(scan.subdirectories)} subdirectory(ies) not read ({names}); "
                "pass them explicitly",
                file=sys.stderr,
            )
        if not scan.files:
            empty.append(_error_record(str(p), "the directory holds no structure files"))
        inputs.extend(scan.files)
    return inputs, empty


def _error_record(source: str, error: str) -> dict:
    return {
        "source": source,
        "id": Path(source).name,
        "formula": None,
        "error": error,
        "warning": None,
        "position": -1,
        "refractive_index": None,
        "targets": {},
    }


def predict_records(
    model,
    inputs,
    targets,
    progress: bool = False,
    inversion_average: bool = False,
    phonons: bool = False,
    **prepare,
) -> list[dict]:
    """One JSON-ready record per input crystal: tensors and derived scalars, or the error."""
    from tqdm.auto import tqdm

    from dtnn_jax.inference.records import predict_crystals

    records = []
    with tqdm(total=len(inputs), disable=not progress, desc="predict", unit="crystal") as bar:
        stream = predict_crystals(
            model,
            inputs,
            inversion_average=inversion_average,
            phonons=phonons,
            targets=targets,
            progress=progress,
            **prepare,
        )
        for record in stream:
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
        if rec["warning"]:
            out.append(f"  WARNING: {rec['warning']}")
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
        if rec.get("phonons"):
            out += format_phonons(rec)
    return "\n".join(out) + "\n"


def format_phonons(rec: dict) -> list[str]:
    """The Gamma modes of a record: frequency, IR activity, part of eps_ion."""
    force = rec.get("max_force_ev_per_a")
    lines = [
        "  Gamma phonons (the potential's K and the predicted Born charges; imaginary "
        "frequencies negative"
        + (f"; largest residual force {force:.3f} eV/A" if force is not None else "")
        + "):",
        "    mode  frequency/cm^-1  IR activity/(e^2/amu)  eps_ion,poly",
    ]
    for m, mode in enumerate(rec["phonons"]):
        if mode["acoustic"]:
            lines.append(f"    {m + 1:4d}  {0.0:15.1f}  {'acoustic':>21}")
            continue
        lines.append(
            f"    {m + 1:4d}  {mode['frequency_cm1']:15.1f}  "
            f"{mode['ir_activity_e2_per_amu']:21.4f}  {mode['eps_ionic_poly']:12.4f}"
        )
    return lines


def format_csv(records: list[dict], targets) -> str:
    """One row per crystal: tensors flattened row-major (xx, xy, ..., zz)."""
    columns = ["source", "id", "formula", "error", "warning", "refractive_index"]
    for t in targets:
        columns += [f"{t}_{c}" for c in _COMPONENTS]
        columns += [f"{t}_std_{c}" for c in _COMPONENTS]
        columns += [f"{t}_eig{i}" for i in (1, 2, 3)]
        columns += [f"{t}_eps_poly", f"{t}_eps_poly_std", f"{t}_anisotropy"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for rec in records:
        row = {
            k: rec[k] for k in ("source", "id", "formula", "error", "warning", "refractive_index")
        }
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


def load_model_or_fail(model_arg):
    """The model bundle, or a `CommandError` saying why it cannot be used."""
    from dtnn_jax.cli.common import CommandError
    from dtnn_jax.inference import BundleError, load_model

    try:
        return load_model(model_arg)
    except BundleError as err:
        raise CommandError(f"cannot load the model: {err}") from err


def run(args: argparse.Namespace) -> int:
    from dtnn_jax.cli.common import CommandError, positive, writable_file

    positive("--max-atoms", args.max_atoms)
    output = writable_file(args.output, "--output") if args.output else None
    inputs, empty = expand_inputs(args.files)
    if not inputs:
        raise CommandError(
            "nothing to predict: " + "; ".join(f"{r['source']}: {r['error']}" for r in empty)
        )
    from dtnn_jax import distributed, shards

    group = distributed.initialize_from_args(args)
    shard_dir = output.parent if output is not None else Path("dtnn-predict-shards")
    identity = {"n_items": len(inputs), "fingerprint": shards.fingerprint(map(str, inputs))}
    from dtnn_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    model = load_model_or_fail(args.model)
    if args.target != "all" and args.target not in model.targets:
        raise CommandError(
            f"model {model.name} has no {args.target!r} model (it has {', '.join(model.targets)})"
        )
    targets = model.targets if args.target == "all" else (args.target,)
    if args.phonons and not model.physics_targets:
        raise CommandError(
            f"--phonons needs a physics model (Born charges x force constants); {model.name} "
            "reads eps off the features (train one with dtnn train --physics)"
        )
    mine = inputs
    if group.count > 1:  # each process its round-robin shard; process 0 merges
        from dtnn_jax.inputs import input_item

        mine = [input_item(inputs[i], i) for i in distributed.shard_indices(len(inputs))]
    records = predict_records(
        model,
        mine,
        targets,
        progress=args.progress,
        inversion_average=args.inversion_average,
        phonons=args.phonons,
        max_atoms=args.max_atoms,
        allow_isolated=args.allow_isolated,
    )
    if group.count > 1:
        meta = {**identity, "model": model.name}
        shards.write_shard(shard_dir, "predict", group.index, group.count, meta, records)
        distributed.barrier("dtnn-predict-shards-written", args.distributed_timeout)
        if not group.is_main:
            return 0
        parts = shards.read_shards(shard_dir, "predict", {**identity, "model": model.name})
        records = [r for part in parts for r in part["payload"]]
        records.sort(key=lambda r: r["position"])  # stable: a file's crystals in file order
    records = empty + records
    if args.format == "json":
        text = json.dumps({"model": model.name, "crystals": records}, indent=1) + "\n"
    elif args.format == "csv":
        text = format_csv(records, targets)
    else:
        text = format_table(records, model.name)
    if output is not None:
        output.write_text(text)
    else:
        sys.stdout.write(text)
    for r in records:
        if r["warning"]:
            print(f"dtnn predict: warning: {r['source']}: {r['warning']}", file=sys.stderr)
    failed = [r for r in records if r["error"]]
    for r in failed:
        print(f"dtnn predict: {r['source']}: {r['error']}", file=sys.stderr)
    if failed:
        print(f"dtnn predict: {len(failed)} of {len(records)} inputs failed", file=sys.stderr)
    return 1 if failed else 0
