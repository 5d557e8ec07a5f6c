"""Ranking a screened pool: rows, band gaps, exclusions, the score, the CSV and the summary.

`screening_row` flattens a predicted crystal into a row; `annotate` adds its band gap, its
metal verdict, whether it is excluded from the ranking and its FOM; `rank_and_report` ranks
the rows and writes what `dtnn_jax.inference.screening_report` formats.

Metals are not dielectrics: a metal has no band gap and no static dielectric tensor, while
a readout trained on insulators still predicts one (large, since metallic screening looks
like a soft insulator to it), so a screen without band gaps would put elemental metals,
intermetallics and semimetals on top. Unless ``rank_metals=True``, two kinds of crystals are
therefore *not ranked* (kept in the CSV with the reason in its ``excluded`` column, and
counted in the summary):

* **likely metals**, by the rule of `dtnn_jax.data.records.likely_metal`
  (`dtnn_jax.inference.cautions.metal_verdict`): a known band gap decides (from the
  band-gap table or the pool's records; <= 0 eV is a metal); else a formula with no
  charge-balanced ionic assignment of oxidation states (elements, intermetallics), or a
  balanced one without an ordinary anion but with an open-shell metal (HfSi, Ti2C, ZrSb),
  is a likely metal. The rule is a composition heuristic: on the 1,056 DFPT insulators of
  the shipped training set it calls 11.0% likely metals (peroxides, polyhalides,
  half-Heuslers, ...) and it misses charge-balanced metals and semimetals (TiN, NbN, RuO2,
  HgTe, ...);
* **the band-gap proxy**: where no band gap is known, a predicted eps_inf (the electronic
  eps_poly) above `dtnn_jax.inference.cautions.EPS_INF_SMALL_GAP` marks a likely metal,
  semimetal or gap < 0.5 eV (`small_gap_verdict`; how often it is wrong on labelled
  crystals: `benchmarks/results/gap_proxy.md`). It catches what the composition rule
  misses (HgTe, InAs, Ag3Sb, Cu2Sb). A model without an electronic tensor gets no proxy.

Give band gaps whenever they are known: they decide over both rules. Excluding rather than
ranking is the cautious choice: an excluded insulator is still listed with its tensor,
while a ranked metal would sit at the top of the candidates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dtnn_jax.inference import screening_report as report
from dtnn_jax.inference.cautions import EPS_INF_SMALL_GAP, metal_verdict, small_gap_verdict
from dtnn_jax.inference.pool import BandGapFileError
from dtnn_jax.inference.records import CrystalPrediction
from dtnn_jax.metrics import rank_order


def screening_row(record: CrystalPrediction) -> dict[str, Any]:
    """One flat row (scalars only) of the ranked table for a predicted crystal."""
    info = record.info
    row: dict[str, Any] = {
        "id": record.id,
        "source": record.source,
        "formula": record.formula,
        "elements": record.elements,
        "aliases": list(record.aliases),
        "error": record.error,
        "warning": record.warning,
        "e_above_hull_ev": float(info.get("e_above_hull_ev", float("nan"))),
        "sources": " ".join(info.get("sources", ())),
        "record_band_gap_ev": float(info.get("band_gap_ev", float("nan"))),
        "charge_balanced": info.get("charge_balanced"),
        "position": record.position,
    }
    for t, p in record.targets.items():
        row[f"eps_poly_{t}"] = p.eps_poly
        row[f"eps_poly_{t}_std"] = p.eps_poly_std
        row[f"anisotropy_{t}"] = p.anisotropy
        if t == "electronic":
            row["refractive_index"] = record.refractive_index
    return row


def primary_score(rows: list[dict], band_gaps, target: str) -> tuple[np.ndarray, bool]:
    """[n] the ranking score of annotated rows (FOM with band gaps, else eps_poly; NaN: not
    ranked) and whether it is the FOM."""
    ok = np.array([r["error"] is None and r["excluded"] is None for r in rows])
    use_fom = band_gaps is not None or bool(np.isfinite([r["band_gap_ev"] for r in rows]).any())
    score = [r["fom"] if use_fom else r.get(f"eps_poly_{target}", np.nan) for r in rows]
    return np.where(ok, np.asarray(score, np.float64), np.nan), use_fom


def annotate(rows: list[dict], band_gaps, target: str, rank_metals: bool) -> None:
    """Band gap, metal verdict, exclusion and FOM of every row, in place."""
    for row in rows:
        gap = row["record_band_gap_ev"]
        if band_gaps is not None:
            gap = next(
                (float(band_gaps[n]) for n in (row["id"], *row["aliases"]) if n in band_gaps),
                gap,
            )
        row["band_gap_ev"] = gap
        row["likely_metal"], reason = metal_verdict(row["formula"], gap, row["charge_balanced"])
        eps_inf = row.get("eps_poly_electronic", float("nan"))
        row["small_gap_proxy"], proxy = small_gap_verdict(eps_inf, gap)
        excluded = None
        if row["likely_metal"]:
            excluded = f"likely metal: {reason}"
        elif row["small_gap_proxy"]:
            excluded = f"band-gap proxy: {proxy}"
        row["excluded"] = None if rank_metals else excluded
        poly = row.get(f"eps_poly_{target}", float("nan"))
        row["fom"] = gap * poly if row["error"] is None else float("nan")
        row["fom_std"] = gap * row.get(f"eps_poly_{target}_std", float("nan"))


def rank_and_report(
    rows: list[dict],
    info: dict[str, Any],
    out_dir: Path,
    band_gaps: Mapping[str, float] | None,
    top_k: int,
    target: str,
    rank_metals: bool,
) -> dict:
    """Ranks predicted rows (input order) and writes the CSV, plots and summary."""
    annotate(rows, band_gaps, target, rank_metals)
    matched = sum(
        1 for r in rows if band_gaps and any(n in band_gaps for n in (r["id"], *r["aliases"]))
    )
    if band_gaps is not None and matched == 0:
        raise no_match_error(rows[0]["id"], band_gaps)
    targets = info["targets"]
    ok = np.array([r["error"] is None for r in rows])
    ranked_ok = ok & np.array([r["excluded"] is None for r in rows])
    aniso = np.array([r.get(f"anisotropy_{target}", np.nan) for r in rows])
    primary, use_fom = primary_score(rows, band_gaps, target)
    order = rank_order(primary)
    refined = np.array([r.get("stage") == "refined" for r in rows]) & np.isfinite(primary)
    if refined.any():  # the refined crystals first, each tier by its own score
        order = np.concatenate([order[refined[order]], order[~refined[order]]])
    aniso_order = rank_order(np.where(ranked_ok, aniso, np.nan))
    aniso_rank = np.empty(len(rows), int)
    aniso_rank[aniso_order] = np.arange(1, len(rows) + 1)
    for position, i in enumerate(order, start=1):
        rows[i]["rank"] = position if np.isfinite(primary[i]) else None
        finite = np.isfinite(aniso[i]) and ranked_ok[i]
        rows[i]["rank_anisotropy"] = int(aniso_rank[i]) if finite else None
    ranked = [rows[i] for i in order]
    report.write_ranked_csv(ranked, targets, out_dir / "ranked.csv")

    ranked_ok_rows = [r for r in ranked if r["rank"] is not None]
    top = ranked_ok_rows[:top_k]
    pool_ok = [r for r in rows if r["error"] is None]
    frequency = report.element_frequency(top, pool_ok)
    (out_dir / "element_frequency.json").write_text(json.dumps(frequency, indent=1) + "\n")
    report.plot_element_frequency(frequency, out_dir / "element_frequency.png")
    plots = ["element_frequency.png"]
    if use_fom:
        report.plot_eps_vs_band_gap(rows, targets, out_dir / "eps_vs_band_gap.png")
        plots.append("eps_vs_band_gap.png")
    report.plot_score_distribution(
        primary[np.isfinite(primary)],
        "FOM = band gap x eps_poly (eV)" if use_fom else f"eps_poly ({target})",
        [r["fom"] if use_fom else r[f"eps_poly_{target}"] for r in top],
        out_dir / "fom_distribution.png",
    )
    plots.append("fom_distribution.png")

    ranking_key = f"FOM = band_gap_ev x eps_poly_{target}" if use_fom else f"eps_poly_{target}"
    n_metals = sum(1 for r in rows if r["likely_metal"] and r["error"] is None)
    n_proxy = sum(1 for r in rows if r["small_gap_proxy"] and r["error"] is None)
    notes = []
    if not use_fom:
        notes.append(
            f"no band gaps: this ranks eps_poly ({target}) only, not the figure of merit "
            "FOM = band gap x eps_poly, which needs band gaps (--band-gaps CSV with columns "
            "id, band_gap_ev)"
        )
    if (n_metals or n_proxy) and not rank_metals:
        notes.append(
            f"{n_metals} likely metal(s) and {n_proxy} crystal(s) with a predicted eps_inf "
            f"> {EPS_INF_SMALL_GAP:g} and no known band gap (likely metals, semimetals or "
            "gaps < 0.5 eV) are not ranked as dielectrics (column 'excluded'; the rules are "
            "in dtnn_jax.inference.screening_rank; --rank-metals ranks them too)"
        )
    summary = {
        **info,
        "ranking": ranking_key,
        "uses_fom": use_fom,
        "note": "; ".join(notes) or None,
        "n_pool": len(rows),
        "n_predicted": int(ok.sum()),
        "n_failed": int((~ok).sum()),
        "n_likely_metals": n_metals,
        "n_small_gap_proxy": n_proxy,
        "eps_inf_small_gap": EPS_INF_SMALL_GAP,
        "metals_ranked": rank_metals,
        "n_ranked": len(ranked_ok_rows),
        "n_without_band_gap": int(np.sum(ranked_ok & np.isnan([r["band_gap_ev"] for r in rows])))
        if use_fom
        else None,
        "top_k": [
            {k: r.get(k) for k in ("rank", "id", "formula", "band_gap_ev", "fom", "stage")}
            | {f"eps_poly_{target}": r[f"eps_poly_{target}"]}
            for r in top
        ],
        "top_anisotropy": [
            {"rank_anisotropy": rows[i]["rank_anisotropy"], "id": rows[i]["id"]}
            | {"formula": rows[i]["formula"], f"anisotropy_{target}": float(aniso[i])}
            for i in aniso_order[:top_k]
            if np.isfinite(aniso[i])
        ],
        "failures": [{"source": r["source"], "error": r["error"]} for r in rows if r["error"]],
        "files": ["ranked.csv", "element_frequency.json", *plots],
    }
    (out_dir / "summary.json").write_text(json.dumps(report.jsonable(summary), indent=1) + "\n")
    return summary


def no_match_error(example_id: str, band_gaps: Mapping[str, float]) -> BandGapFileError:
    return BandGapFileError(
        "no crystal of the pool has a band gap in the band-gap table: its ids must be "
        f"material ids or file names/stems (pool ids look like {example_id!r}; table "
        f"ids look like {next(iter(band_gaps))!r})"
    )
