"""High-throughput screening: predicted tensors -> scalar properties -> ranked candidates.

The paper's screen (DESIGN section 2): predict the total tensor of unlabeled crystals, take
its polycrystalline average eps_poly = tr(eps) / 3 (the mean eigenvalue), and rank by the
figure of merit FOM = band_gap (eV) x eps_poly, which rewards large-gap, high-permittivity
dielectrics; a second screen ranks by the anisotropy ratio lambda_max / lambda_min.

`screen` streams a pool (`dtnn_jax.inference.pool`) through a model in chunks
(`dtnn_jax.inference.records.predict_crystals`), so only one chunk of structures and graphs
is alive at a time, ranks it and writes the ranked CSV, ``summary.json`` and the plots of
`dtnn_jax.inference.screening_report` under ``out_dir``.

Cost-aware screening: a physics model (Born charges x the potential's force constants) costs
~3N force evaluations per crystal, a feature readout one forward pass. With ``refine_model``
and ``refine_top=K`` the pool is ranked with the fast ``model`` first (the pre-screen), the K
best ranked crystals are predicted again with ``refine_model`` and ranked by that, ahead of
the rest, which keep their pre-screen tensors (column ``stage``: "refined" or "pre-screen";
``prescreen_rank`` and ``prescreen_eps_poly_<target>`` keep where the pre-screen put them).
`benchmarks/screen_refine.py` measures how much of the physics model's top 10 % a
pre-screen of a given size keeps.

Metals are not dielectrics: a metal has no band gap and no static dielectric tensor, while
a readout trained on insulators still predicts one (large, since metallic screening looks
like a soft insulator to it), so a screen without band gaps would put elemental metals and
intermetallics on top. Unless ``rank_metals=True``, crystals that are likely metals are
therefore *not ranked* (kept in the CSV with the reason in its ``excluded`` column, and
counted in the summary), by the rule of `dtnn_jax.data.records.likely_metal`: a known band
gap decides (from the band-gap table or the pool's records; <= 0 eV is a metal); else a
formula with no charge-balanced ionic assignment of oxidation states (elements,
intermetallics), or a balanced one without an ordinary anion but with an open-shell metal
(HfSi, Ti2C, ZrSb), is a likely metal. The rule is a composition heuristic: on the 1,056
DFPT insulators of the shipped training set it calls 11.0% likely metals (peroxides,
polyhalides, half-Heuslers, ...) and it misses charge-balanced metals and semimetals (TiN,
NbN, RuO2, HgTe, ...), so give band gaps whenever they are known. Excluding rather than
ranking is the cautious choice: an excluded insulator is still listed with its tensor, while
a ranked metal would sit at the top of the candidates.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dtnn_jax.distributed import ProcessGroup, shard_indices
from dtnn_jax.errors import InputError
from dtnn_jax.inference import screening_report as report
from dtnn_jax.inference.pool import BandGapFileError, pool_items
from dtnn_jax.inference.records import DEFAULT_CHUNK, CrystalPrediction, predict_crystals
from dtnn_jax.metrics import rank_order
from dtnn_jax.shards import ShardError, fingerprint, read_shards, write_shard


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


def _model_info(model) -> dict[str, Any]:
    return {
        "model": model.name,
        "targets": list(model.targets),
        "ensemble_size": {t: model.ensemble_size(t) for t in model.targets},
    }


def screen(
    pool,
    model,
    out_dir: str | os.PathLike,
    band_gaps: Mapping[str, float] | None = None,
    top_k: int = 50,
    target: str = "total",
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool = False,
    budget=None,
    rank_metals: bool = False,
    max_atoms: int | None = None,
    allow_isolated: bool = False,
    shard: tuple[int, int] | None = None,
    refine_model=None,
    refine_top: int = 0,
) -> dict:
    """Predicts a pool in chunks, ranks it and writes the ranked CSV, plots and summaries.

    Args:
        pool: see `pool_items` (directory, ``"shipped"``, or an iterable of crystals).
        model: a `DielectricModel` (``dtnn_jax.load_model(...)``).
        out_dir: output directory (created).
        band_gaps: id (or file name) -> band gap in eV; without it the ranking is by
            eps_poly and FOM is left empty (it needs band gaps).
        top_k: size of the candidate list for the element statistics and the summary.
        target: tensor whose eps_poly and anisotropy rank the pool (paper: "total").
        chunk_size: crystals predicted per model call (bounds memory).
        progress: show a progress bar.
        budget: optional `BatchBudget` for the model.
        rank_metals: also rank crystals that are likely metals (see the module docstring).
        max_atoms, allow_isolated: options of the input pass (`dtnn_jax.inputs`).
        shard: ``(I, N)``: predict only the I-th of N round-robin shards of the pool and
            write its rows to ``out_dir/shards`` (`dtnn_jax.shards`); `merge_screen` then
            ranks the whole pool. The result equals an unsharded run.
        refine_model, refine_top: predict the ``refine_top`` best pre-screened crystals
            again with ``refine_model`` (e.g. the physics model) and rank them first (see
            the module docstring); with ``shard``, `merge_screen` refines.

    Returns:
        The summary dict also written to ``summary.json`` (with ``shard``: the shard's
        counts).
    """
    from tqdm.auto import tqdm

    if target not in model.targets:
        raise ValueError(f"target {target!r} is not in model {model.name} ({model.targets})")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items, size = pool_items(pool)
    refining = refine_model is not None and refine_top > 0 and shard is None
    if (band_gaps is not None or shard is not None or refining) and size is not None:
        items = list(items)  # items only reference structures/paths: cheap
    elif refining:
        items = list(items)  # the refine stage needs the best crystals again
    if band_gaps is not None and size is not None:
        # a sized pool's ids are known before any prediction: fail fast on a wrong table
        names = {name for item in items for name in (item.id, *item.aliases)}
        if items and not names & set(band_gaps):
            raise _no_match_error(items[0].id, band_gaps)
    if shard is not None:
        if size is None:
            raise ValueError("a sharded screen needs a pool of known size (a directory, a list)")
        items = [items[i] for i in shard_indices(len(items), ProcessGroup(*shard))]
        size = len(items)
    rows: list[dict] = []
    with tqdm(total=size, disable=not progress, desc="screen", unit="crystal") as bar:
        records = predict_crystals(
            model,
            items,
            chunk_size,
            budget=budget,
            max_atoms=max_atoms,
            allow_isolated=allow_isolated,
        )
        for record in records:
            rows.append(screening_row(record))
            bar.update(1)
    if shard is not None:
        meta = {**_model_info(model), **_pool_identity(pool)}
        write_shard(out_dir, "screen", *shard, meta, rows)
        return {"shard": list(shard), "n_rows": len(rows), **meta}
    if not rows:
        raise InputError(f"the pool {pool!s:.200} holds no structures")
    info = _model_info(model)
    if refining:
        info = refine(
            rows, items, info, refine_model, refine_top, band_gaps, target, rank_metals,
            chunk_size=chunk_size, progress=progress, max_atoms=max_atoms,
            allow_isolated=allow_isolated,
        )  # fmt: skip
    return rank_and_report(rows, info, out_dir, band_gaps, top_k, target, rank_metals)


def refine(
    rows: list[dict],
    items,
    info: dict[str, Any],
    refine_model,
    refine_top: int,
    band_gaps,
    target: str,
    rank_metals: bool,
    progress: bool = False,
    **predict,
) -> dict[str, Any]:
    """Re-predicts the ``refine_top`` best ranked rows with ``refine_model``, in place.

    Args:
        rows: the pre-screen rows, in input order (``row["position"]`` indexes ``items``).
        items: the pool's items (`pool_items`), in input order.
        info: the pre-screen model's `_model_info`.
        predict: options of `predict_crystals`.

    Returns:
        ``info`` with the refine model, its ensemble sizes and ``refine_top`` added.
    """
    if target not in refine_model.targets:
        raise ValueError(f"target {target!r} is not in the refine model {refine_model.name}")
    items = list(items)
    annotate(rows, band_gaps, target, rank_metals)
    primary, _ = _primary(rows, band_gaps, target)
    order = [i for i in rank_order(primary) if np.isfinite(primary[i])][:refine_top]
    from tqdm.auto import tqdm

    best = [items[rows[i]["position"]] for i in order]
    refined = tqdm(
        predict_crystals(refine_model, best, **predict),
        total=len(best),
        disable=not progress,
        desc="refine",
        unit="crystal",
    )
    for rank, (i, record) in enumerate(zip(order, refined, strict=True), start=1):
        row = screening_row(record) | {"position": rows[i]["position"]}
        row |= {"stage": "refined", "prescreen_rank": rank}
        row[f"prescreen_eps_poly_{target}"] = rows[i].get(f"eps_poly_{target}")
        rows[i] = row
    for row in rows:
        row.setdefault("stage", "pre-screen")
    from dtnn_jax.config import TARGETS

    both = {*info["targets"], *refine_model.targets}
    return info | {
        "targets": [t for t in TARGETS if t in both],
        "refine_model": refine_model.name,
        "refine_top": refine_top,
        "n_refined": len(order),
        "refine_ensemble_size": {t: refine_model.ensemble_size(t) for t in refine_model.targets},
    }


def _pool_identity(pool) -> dict[str, Any]:
    """What every shard of one pool agrees on: its size and a hash of its names."""
    items = list(pool_items(pool)[0])
    return {"n_items": len(items), "fingerprint": fingerprint(i.source for i in items)}


def merge_screen(
    out_dir: str | os.PathLike,
    pool,
    band_gaps: Mapping[str, float] | None = None,
    top_k: int = 50,
    target: str = "total",
    rank_metals: bool = False,
    refine_model=None,
    refine_top: int = 0,
    **predict,
) -> dict:
    """Ranks the rows of every shard written by ``screen(..., shard=(I, N))``.

    With ``refine_model`` and ``refine_top`` the best ``refine_top`` are re-predicted here
    (by this process) before ranking, as in `screen`.

    Raises:
        ShardError: a shard is missing, duplicated, or of another pool or model.
    """
    expect = _pool_identity(pool)
    shards = read_shards(out_dir, "screen", expect, uniform=("model", "targets"))
    info = {k: shards[0][k] for k in ("model", "targets", "ensemble_size")}
    rows = [r for s in shards for r in s["payload"]]  # each shard in input order
    rows.sort(key=lambda r: r["position"])  # stable: a file's crystals stay in file order
    if sorted(set(r["position"] for r in rows)) != list(range(expect["n_items"])):
        raise ShardError(f"{out_dir}: the shards do not cover the pool exactly once")
    if refine_model is not None and refine_top > 0:
        items = pool_items(pool)[0]
        info = refine(
            rows, items, info, refine_model, refine_top, band_gaps, target, rank_metals, **predict
        )
    return rank_and_report(rows, info, Path(out_dir), band_gaps, top_k, target, rank_metals)


def _primary(rows: list[dict], band_gaps, target: str) -> tuple[np.ndarray, bool]:
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
        excluded = row["likely_metal"] and not rank_metals
        row["excluded"] = f"likely metal: {reason}" if excluded else None
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
        raise _no_match_error(rows[0]["id"], band_gaps)
    targets = info["targets"]
    ok = np.array([r["error"] is None for r in rows])
    ranked_ok = ok & np.array([r["excluded"] is None for r in rows])
    aniso = np.array([r.get(f"anisotropy_{target}", np.nan) for r in rows])
    primary, use_fom = _primary(rows, band_gaps, target)
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
    notes = []
    if not use_fom:
        notes.append(
            f"no band gaps: this ranks eps_poly ({target}) only, not the figure of merit "
            "FOM = band gap x eps_poly, which needs band gaps (--band-gaps CSV with columns "
            "id, band_gap_ev)"
        )
    if n_metals and not rank_metals:
        notes.append(
            f"{n_metals} likely metal(s) are not ranked as dielectrics (column 'excluded'; "
            "the rule is in dtnn_jax.inference.screening; --rank-metals ranks them too)"
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


def metal_verdict(
    formula: str, band_gap_ev: float, balanced: bool | None = None
) -> tuple[bool, str]:
    """(likely metal?, why) for a crystal, by `dtnn_jax.data.records.likely_metal`."""
    from dtnn_jax.data.records import likely_metal

    if not formula:
        return False, ""
    if math.isfinite(band_gap_ev):
        return band_gap_ev <= 0, f"band gap {band_gap_ev:g} eV"
    metal = likely_metal(formula, balanced=balanced)
    return metal, (
        "no band gap known, and no charge-balanced ionic formula with an N/O/F/Cl/Br/I/S/Se/"
        "Te/H anion or a closed-shell metal"
    )


def _no_match_error(example_id: str, band_gaps: Mapping[str, float]) -> BandGapFileError:
    return BandGapFileError(
        "no crystal of the pool has a band gap in the band-gap table: its ids must be "
        f"material ids or file names/stems (pool ids look like {example_id!r}; table "
        f"ids look like {next(iter(band_gaps))!r})"
    )
