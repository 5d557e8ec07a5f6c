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

Ranking, the exclusion of likely metals and small-gap crystals, the CSV and the summary
are in `dtnn_jax.inference.screening_rank`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dtnn_jax.distributed import ProcessGroup, shard_indices
from dtnn_jax.errors import InputError
from dtnn_jax.inference.pool import pool_items
from dtnn_jax.inference.records import DEFAULT_CHUNK, predict_crystals
from dtnn_jax.inference.screening_rank import (
    annotate,
    no_match_error,
    primary_score,
    rank_and_report,
    screening_row,
)
from dtnn_jax.metrics import rank_order
from dtnn_jax.shards import ShardError, fingerprint, read_shards, write_shard


def _model_info(model) -> dict[str, Any]:
    return {
        "model": model.name,
        "targets": list(model.targets),
        "ensemble_size": {t: model.ensemble_size(t) for t in model.targets},
    }


REFINE_CHUNK = 1
"""Crystals per refine-model call (see `refine`)."""


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
            raise no_match_error(items[0].id, band_gaps)
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
    primary, _ = primary_score(rows, band_gaps, target)
    order = [i for i in rank_order(primary) if np.isfinite(primary[i])][:refine_top]
    from tqdm.auto import tqdm

    best = [items[rows[i]["position"]] for i in order]
    # one crystal per call: the refine model (physics: ~3N force evaluations per crystal)
    # costs per crystal anyway, and the progress bar then advances crystal by crystal
    predict = {**predict, "chunk_size": REFINE_CHUNK}
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
