"""The outputs of ``dtnn predict``: a human-readable table (with the Gamma-phonon table of
``--phonons``) and a CSV with one row per crystal, from the JSON-ready records of
`dtnn_jax.cli.predict.predict_records`."""

from __future__ import annotations

import csv
import io

_COMPONENTS = ("xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz")


def format_table(records: list[dict], model_name: str, ensemble_size: int | None = None) -> str:
    """Human-readable: one block per crystal (no +- spread for a one-member ensemble)."""
    spread = ensemble_size is None or ensemble_size > 1
    note = "+- is the ensemble standard deviation over members" if spread else "one member: no "
    note += "" if spread else "ensemble spread"
    out = [f"model: {model_name}  ({note})"]
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
        if rec.get("optics") and rec["optics"]["optic_class"]:
            o = rec["optics"]
            sign = f" {o['optic_sign']}" if o["optic_sign"] else ""
            out.append(
                "  principal refractive indices "
                + " ".join(f"{x:.4f}" for x in o["refractive_indices"])
                + f"  birefringence {o['birefringence']:.4f}  {o['optic_class']}{sign}"
            )
        for t, v in rec["targets"].items():
            aniso = "n/a" if v["anisotropy"] is None else f"{v['anisotropy']:.3f}"
            eig = " ".join(f"{x:.3f}" for x in v["eigenvalues"])
            std = f" +- {v['eps_poly_std']:.3f}" if spread else ""
            out.append(
                f"  {t}: eps_poly {v['eps_poly']:.3f}{std}  eigenvalues {eig}  anisotropy {aniso}"
            )
            for row, srow in zip(v["tensor"], v["std"], strict=True):
                cells = "  ".join(
                    f"{x:9.3f} +- {s:6.3f}" if spread else f"{x:9.3f}"
                    for x, s in zip(row, srow, strict=True)
                )
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
        mark = "  DROPPED: unstable mode, not in eps_ion" if mode.get("dropped") else ""
        lines.append(
            f"    {m + 1:4d}  {mode['frequency_cm1']:15.1f}  "
            f"{mode['ir_activity_e2_per_amu']:21.4f}  {mode['eps_ionic_poly']:12.4f}{mark}"
        )
    return lines


def format_csv(records: list[dict], targets) -> str:
    """One row per crystal: tensors flattened row-major (xx, xy, ..., zz)."""
    head = ["source", "id", "formula", "error", "warning", "refractive_index"]
    if any("n_unstable_modes" in rec for rec in records):  # a physics model
        head += ["n_unstable_modes", "lowest_frequency_cm1"]
    optics = ["n_1", "n_2", "n_3", "birefringence", "optic_class", "optic_sign"]
    columns = head + optics
    for t in targets:
        columns += [f"{t}_{c}" for c in _COMPONENTS]
        columns += [f"{t}_std_{c}" for c in _COMPONENTS]
        columns += [f"{t}_eig{i}" for i in (1, 2, 3)]
        columns += [f"{t}_eps_poly", f"{t}_eps_poly_std", f"{t}_anisotropy"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for rec in records:
        row = {k: rec.get(k) for k in head}
        if rec.get("optics"):
            o = rec["optics"]
            row |= dict(zip(optics[:3], o["refractive_indices"], strict=True))
            row |= {k: o[k] for k in optics[3:]}
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
