"""``dtnn predict FILES...``: dielectric tensors of structure files with a trained model.

Prints, per crystal, the predicted tensor(s) with their ensemble spread, eigenvalues,
eps_poly, anisotropy ratio lambda_max / lambda_min and the refractive index sqrt(eps_poly)
of the electronic tensor, as a table, JSON or CSV. Directories are read for structure files
(known suffixes, POSCAR/CONTCAR); a file with several crystals (multi-frame extxyz,
multi-block CIF) gives one result per crystal, named FILE#k or FILE#BLOCK. An input that
cannot be used gets an error record naming it and the reason; the others are still
predicted and printed. Warnings (stderr, the table, the JSON/CSV field "warning") say when
a number deserves doubt: a likely metal, a predicted eps_inf above 15.5 (a metal, semimetal
or gap < 0.5 eV), unstable Gamma modes dropped from eps_ion by a physics model (fields
n_unstable_modes, lowest_frequency_cm1; --phonons marks the dropped modes), a slab-like
vacuum gap; see dtnn_jax.inference.cautions. Under N processes
(--coordinator/--num-processes/--process-id, JAX's variables or a SLURM step) every process
predicts its round-robin share of the files and writes it to shards/ beside --output (else
./dtnn-predict-shards/shards/); process 0 prints or writes the merged result, in input
order.

Exit status: 0 all inputs predicted (warnings included), 1 some input failed, 2 unusable
arguments, a missing file or an unusable model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dtnn_jax.cli.common import plain
from dtnn_jax.cli.featurize import add_input_arguments
from dtnn_jax.cli.predict_format import format_csv, format_phonons, format_table
from dtnn_jax.constants import TARGETS
from dtnn_jax.distributed import add_arguments as add_distributed_arguments

FORMATS = ("table", "json", "csv")
__all__ = ["format_csv", "format_phonons", "format_table", "predict_records", "run"]


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
    # issue 22: the infrared spectrum and phonopy BORN files (physics model)
    p.add_argument(
        "--spectrum",
        metavar="DIR",
        default=None,
        help="with a physics model: write the infrared dielectric function per crystal to DIR "
        "(<id>.csv: w in cm^-1, eps' and eps'' and reflectivity R and absorption along each "
        "principal axis; <id>.json: axes, TO and LO modes; <id>.png: eps'', R, mode sticks)",
    )
    p.add_argument(
        "--damping",
        metavar="CM1",
        type=float,
        default=None,
        help="damping gamma of every mode in the spectrum (cm^-1; default 4)",
    )
    p.add_argument(
        "--born-file",
        metavar="DIR",
        default=None,
        help="with a physics model: write phonopy's non-analytic-correction input "
        "DIR/<id>/BORN (predicted eps_inf and Z*, symmetrised, independent atoms)",
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

    Notes on stderr name what a directory held besides structure files. A path that does
    not exist is a user error (`CommandError`, exit status 2), raised before any work.
    """
    from dtnn_jax.cli.common import CommandError
    from dtnn_jax.inputs import scan_directory

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CommandError(f"{missing[0]}: file not found{more}")
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

    from dtnn_jax.cli.common import as_flags
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
            records[-1]["error"] = as_flags(records[-1]["error"])
            bar.update(1)
    return records


def load_model_or_fail(model_arg):
    """The model bundle, or a `CommandError` saying why it cannot be used."""
    from dtnn_jax.cli.common import CommandError
    from dtnn_jax.inference import BundleError, load_model

    try:
        return load_model(model_arg)
    except BundleError as err:
        raise CommandError(f"cannot load the model: {err}") from err


def run(args: argparse.Namespace) -> int:
    from dtnn_jax.cli.common import CommandError, bars_wanted, positive, writable_file

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
    spectrum_dir, born_dir = _physics_outputs(args, model)
    mine = inputs
    if group.count > 1:  # each process its round-robin shard; process 0 merges
        from dtnn_jax.inputs import input_item

        mine = [input_item(inputs[i], i) for i in distributed.shard_indices(len(inputs))]
    records = predict_records(
        model,
        mine,
        targets,
        progress=bars_wanted(args.progress),
        inversion_average=args.inversion_average,
        phonons=args.phonons,
        max_atoms=args.max_atoms,
        allow_isolated=args.allow_isolated,
    )
    prepare = {"max_atoms": args.max_atoms, "allow_isolated": args.allow_isolated}
    write_physics_outputs(model, mine, spectrum_dir, born_dir, args.damping, prepare)
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
        text = format_table(records, model.name, min(map(model.ensemble_size, targets)))
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


def _physics_outputs(args, model):
    """The --spectrum and --born-file directories, checked (and created) before the work."""
    from dtnn_jax.cli.common import CommandError, writable_dir

    wanted = [f for f, v in (("--spectrum", args.spectrum), ("--born-file", args.born_file)) if v]
    if wanted and not model.physics_targets:
        raise CommandError(
            f"{' and '.join(wanted)} need(s) a physics model (Born charges x force constants); "
            f"{model.name} reads eps off the features (train one with dtnn train --physics)"
        )
    if args.damping is not None and not args.damping >= 0:
        raise CommandError(f"--damping must be >= 0 cm^-1, got {args.damping}")
    spectrum = writable_dir(args.spectrum, "--spectrum") if args.spectrum else None
    born = writable_dir(args.born_file, "--born-file") if args.born_file else None
    return spectrum, born


def write_physics_outputs(model, inputs, spectrum_dir, born_dir, damping, prepare) -> None:
    """--spectrum and --born-file: the files of every crystal that can be predicted (the
    failed ones get their error record from the main prediction); notes to stderr."""
    import warnings

    if spectrum_dir is None and born_dir is None:
        return
    from dtnn_jax.physics.spectra import DEFAULT_DAMPING_CM1
    from dtnn_jax.spectra import safe_name, write_spectra

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if spectrum_dir is not None:
            gamma = DEFAULT_DAMPING_CM1 if damping is None else damping
            write_spectra(model, inputs, spectrum_dir, gamma, **prepare)
        if born_dir is not None:
            from dtnn_jax.physics.born_file import write_born_files

            write_born_files(model, inputs, born_dir, name=safe_name, **prepare)
    for w in caught:
        print(f"dtnn predict: note: {w.message}", file=sys.stderr)
