"""Fit a bundle's uncertainty calibration on validation crystals and store it in bundle.json.

    python experiments/calibrate.py BUNDLE_DIR [--from FIT_BUNDLE] [--cache members.npz]
                                   [--dry-run] [--report calibration.json]

Every member of FIT_BUNDLE (default: BUNDLE_DIR itself) predicts every crystal of the
bundle's training data (the shipped Petousis set unless ``--data``); the members' splits are
rebuilt from their seeds (``dtnn train --seeds``: 80/10/10 `split_indices`; ``--folds K``:
`fold_indices`, recognised by their ``val_*`` metrics). Each crystal then gets the ensemble
of the members that never trained on it (`held_out_ensembles`); the fit uses the crystals
that every such member (at least 2) held out for *validation*, and the coverage is checked on
those every such member held out for *test*. The fitted `Calibration` is written into
BUNDLE_DIR/bundle.json (key ``calibration``), so `predict(..., return_std=True)` returns the
calibrated 1-sigma from then on.

A ``--folds`` bundle (the shipped physics model) cannot calibrate itself: every crystal is in
the training set of all members but one. Fit it on a ``dtnn train --seeds 0 1 2 3 4`` run of
the same settings: ``--from RUN_DIR``.

Cost: one prediction of the whole training set per member (the member dimension is vmapped,
so about one ensemble prediction): a few minutes on 2 CPU cores for the fast SevenNet-0
model; for a physics model add the force constants of every crystal (cached after the first
run; about 0.5 s per 10-atom crystal). ``--cache`` keeps the members' predictions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from dtnn_jax.data import fold_indices, split_indices
from dtnn_jax.inference.calibration import (
    METADATA_KEY,
    Calibration,
    coverage,
    fit_target,
    held_out_ensembles,
)


def member_splits(bundle, target: str, n: int) -> list[tuple]:
    """(train, validation, test) per member of ``target`` (a served total: electronic's)."""
    t = target if target in bundle.targets else "electronic"
    members = bundle.targets[t].members
    folds = any(k.startswith("val_") for k in members[0].metrics)
    out = []
    for j, member in enumerate(members):
        if folds:
            train, val = fold_indices(n, j, len(members))
            out.append((train, val, np.zeros(0, np.int64)))
        else:
            out.append(split_indices(n, member.seed))
    return out


def labelled_records(bundle, data: str | None):
    from dtnn_jax.data import load_labelled, load_petousis2017

    if data:
        return load_labelled(data)
    if "petousis" not in str(bundle.metadata.get("training_data", "petousis")).lower():
        raise SystemExit("the bundle was not trained on the shipped data: pass --data FILE")
    return load_petousis2017()


def predict_members(model, records, cache: str | None) -> dict[str, np.ndarray]:
    """target -> [n, M, 3, 3] every member's prediction (from ``cache`` when it holds them)."""
    if cache and Path(cache).exists():
        with np.load(cache) as f:
            return {k: f[k] for k in f.files}
    prediction = model.predict_detailed([r.structure for r in records], progress=True)
    failed = [e for e in prediction.errors if e]
    if failed:
        raise SystemExit(f"{len(failed)} training crystals failed to predict: {failed[:3]}")
    members = {t: np.asarray(v) for t, v in prediction.members.items()}
    if cache:
        np.savez_compressed(cache, **members)
    return members


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="the bundle directory to calibrate")
    parser.add_argument("--from", dest="fit_bundle", default=None, help="fit on this bundle")
    parser.add_argument("--data", default=None, help="labelled data (default: shipped)")
    parser.add_argument("--cache", default=None, help="npz of the members' predictions")
    parser.add_argument("--report", default=None, help="write the coverage report here")
    parser.add_argument("--dry-run", action="store_true", help="fit and report, write nothing")
    args = parser.parse_args(argv)

    from dtnn_jax.inference import load_bundle
    from dtnn_jax.inference.predictor import DielectricModel

    start = time.time()
    target_dir = Path(args.bundle)
    fit_bundle = load_bundle(args.fit_bundle or target_dir)
    fit_bundle = type(fit_bundle)(
        fit_bundle.name,
        fit_bundle.targets,
        {k: v for k, v in fit_bundle.metadata.items() if k != METADATA_KEY},  # raw spread
    )
    model = DielectricModel(fit_bundle)
    records = labelled_records(fit_bundle, args.data)
    for t in model.targets:  # before any prediction: can these members calibrate at all?
        splits = member_splits(fit_bundle, t, len(records))
        probe = held_out_ensembles(np.zeros((len(records), len(splits), 3, 3)), splits)
        if len(probe.fit) == 0:
            raise SystemExit(
                f"{t}: no crystal is held out for validation by 2 or more members of "
                f"{fit_bundle.name} (a --folds bundle?): fit on a dtnn train --seeds run of the "
                "same settings with --from RUN_DIR"
            )
    members = predict_members(model, records, args.cache)
    report = {"fit_bundle": fit_bundle.name, "targets": {}}
    fits = {}
    for t, pred in members.items():
        true = np.stack([np.asarray(r.target(t), np.float64) for r in records])
        held = held_out_ensembles(pred, member_splits(fit_bundle, t, len(records)))
        cal = fit_target(
            held.mean,
            held.std,
            true,
            held.fit,
            note=f"{len(held.fit)} validation crystals held out by >= 2 members of "
            f"{fit_bundle.name}",
        )
        fits[t] = cal
        row = {"fit": cal.as_dict(), "n_fit_crystals": len(held.fit), "n_test": len(held.test)}
        one = fit_target(held.mean, held.std, true, held.fit, exponents=np.zeros(1))
        for part, idx in (("validation", held.fit), ("test", held.test)):
            if len(idx) == 0:
                continue
            m, s, y = held.mean[idx], held.std[idx], true[idx]
            magnitude = np.abs(np.trace(m, axis1=1, axis2=2) / 3)
            scaled = s * cal.scale(magnitude)[:, None, None]
            row[part] = {
                "before": coverage(m, s, y),
                "after": coverage(m, scaled, y),
                "one_scale": coverage(m, s * one.scale(magnitude)[:, None, None], y),
            }
        report["targets"][t] = row
        print(t, json.dumps(row), flush=True)
    calibration = Calibration(fits)
    report["seconds"] = round(time.time() - start, 1)
    report["load_average"] = list(os.getloadavg())
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
        Path(args.report).with_suffix(".md").write_text(markdown(report))
    if not args.dry_run:
        meta_path = target_dir / "bundle.json"
        meta = json.loads(meta_path.read_text())
        meta[METADATA_KEY] = calibration.to_metadata(
            fitted_on=report["fit_bundle"],
            produced_by="experiments/calibrate.py",
            coverage={
                t: {k: v for k, v in r.items() if k in ("validation", "test")}
                for t, r in report["targets"].items()
            },
        )
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, meta_path)
        print(f"calibration written to {meta_path}")
    return report


def markdown(report: dict) -> str:
    """The coverage table of a report."""
    lines = [
        f"# Uncertainty calibration of {report['fit_bundle']}",
        "",
        "Fraction of the diagonal components of held-out crystals within 1 and 2 sigma of the",
        "held-out ensemble mean, before (raw member spread) and after the calibration fitted on",
        "the validation crystals (`experiments/calibrate.py`; goal 60-75 % and 90-97 %).",
        f"Load average {report['load_average']}, {report['seconds']:.0f} s.",
        "",
        "| target | exp(a) | b | m_0 | part | 1 sigma before -> after | 2 sigma before -> after "
        "| one scale (b = 0): 1 / 2 sigma |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t, r in report["targets"].items():
        f = r["fit"]
        for part in ("validation", "test"):
            if part not in r:
                continue
            (b1, b2), (a1, a2) = r[part]["before"], r[part]["after"]
            n = r["n_fit_crystals"] if part == "validation" else r["n_test"]
            c1, c2 = r[part]["one_scale"]
            lines.append(
                f"| {t} | {math.exp(f['log_scale']):.2f} | {f['exponent']:+.1f} | "
                f"{f['reference']:.2f} | {part} ({n} crystals) | "
                f"{b1:.0%} -> {a1:.0%} | {b2:.0%} -> {a2:.0%} | {c1:.0%} / {c2:.0%} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
