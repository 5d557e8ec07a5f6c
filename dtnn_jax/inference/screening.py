"""High-throughput screening: predicted tensors -> scalar properties -> ranked candidates.

The paper's screen (DESIGN section 2): predict the total tensor of unlabeled crystals, take
its polycrystalline average eps_poly = tr(eps) / 3 (the mean eigenvalue), and rank by the
figure of merit FOM = band_gap (eV) x eps_poly, which rewards large-gap, high-permittivity
dielectrics; a second screen ranks by the anisotropy ratio lambda_max / lambda_min.

`screen` streams a pool (a directory of structure files, the shipped unlabeled pool, or any
iterable of structures) through a model in chunks, so only one chunk of structures and
graphs is alive at a time, and writes under ``out_dir``:

* ``ranked.csv``: one row per crystal, best first (failed inputs last, with the reason);
* ``summary.json``: counts, ranking key, failures, the top-K;
* ``element_frequency.json`` / ``.png``: how often each element occurs in the top-K against
  the whole pool (paper Fig. 6c);
* ``eps_vs_band_gap.png``: predicted eps vs band gap as density contours (Fig. 6a/b;
  needs band gaps);
* ``fom_distribution.png``: the FOM distribution (Fig. 6d), or eps_poly without band gaps.

The screening metrics (`recall_at_top_fraction`, `spearman`) score a ranking against the
truth on labelled test sets (``benchmarks/screening_eval.py``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Suffixes stripped to turn a structure file name into an id ("mp-149.cif" -> "mp-149").
STRUCTURE_SUFFIXES = (".json.gz", ".json", ".cif", ".vasp", ".poscar", ".extxyz", ".xyz")
DEFAULT_CHUNK = 256


class BandGapFileError(ValueError):
    """A band-gap CSV is unusable; the message names the file, the line and the problem."""


# --------------------------------------------------------------------------- properties


@dataclasses.dataclass(frozen=True)
class TensorProperties:
    """Scalar properties of n dielectric tensors (NaN rows stay NaN).

    Attributes:
        eigenvalues: [n, 3] principal permittivities, ascending.
        eps_poly: [n] polycrystalline average tr(eps) / 3 (= mean eigenvalue).
        anisotropy: [n] lambda_max / lambda_min; NaN where lambda_min <= 0 (unphysical).
        refractive_index: [n] sqrt(eps_poly), meaningful for the electronic tensor only;
            NaN where eps_poly < 0.
    """

    eigenvalues: np.ndarray  # [n, 3]
    eps_poly: np.ndarray  # [n]
    anisotropy: np.ndarray  # [n]
    refractive_index: np.ndarray  # [n]


def tensor_properties(eps) -> TensorProperties:
    """Eigenvalues, eps_poly, anisotropy ratio and refractive index of [n, 3, 3] tensors.

    The tensor is symmetrised first ((T + T^T) / 2), as a dielectric tensor is symmetric.
    """
    eps = np.asarray(eps, np.float64)
    if eps.ndim != 3 or eps.shape[1:] != (3, 3):
        raise ValueError(f"expected tensors of shape [n, 3, 3], got {eps.shape}")
    sym = 0.5 * (eps + np.swapaxes(eps, 1, 2))  # [n, 3, 3]
    finite = np.all(np.isfinite(sym), axis=(1, 2))  # [n]
    eigenvalues = np.full((len(eps), 3), np.nan)  # [n, 3]
    if finite.any():
        eigenvalues[finite] = np.linalg.eigvalsh(sym[finite])
    eps_poly = np.trace(sym, axis1=1, axis2=2) / 3.0  # [n]
    lam_min, lam_max = eigenvalues[:, 0], eigenvalues[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        anisotropy = np.where(lam_min > 0, lam_max / lam_min, np.nan)
        refractive = np.where(eps_poly >= 0, np.sqrt(np.abs(eps_poly)), np.nan)
    return TensorProperties(eigenvalues, eps_poly, anisotropy, refractive)


def figure_of_merit(band_gap_ev, eps_poly) -> np.ndarray:
    """FOM = band gap (eV) x eps_poly, the paper's screening score (NaN where unknown)."""
    return np.asarray(band_gap_ev, np.float64) * np.asarray(eps_poly, np.float64)


# --------------------------------------------------------------------------- rankings


def rank_order(scores) -> np.ndarray:
    """Indices sorting ``scores`` [n] from best (largest) to worst; NaN last, ties stable."""
    scores = np.asarray(scores, np.float64)
    key = np.where(np.isnan(scores), np.inf, -scores)
    return np.argsort(key, kind="stable")


def rank(primary, secondary=None) -> np.ndarray:
    """Order of candidates: by ``primary`` descending, ties broken by ``secondary`` descending.

    Args:
        primary: [n] main score (FOM, or eps_poly without band gaps); NaN ranks last.
        secondary: [n] optional tie-break score (e.g. the anisotropy ratio).

    Returns:
        [n] indices, best first.
    """
    primary = np.asarray(primary, np.float64)
    keys = [np.where(np.isnan(primary), np.inf, -primary)]
    if secondary is not None:
        secondary = np.asarray(secondary, np.float64)
        keys.insert(0, np.where(np.isnan(secondary), np.inf, -secondary))
    return np.lexsort(keys)  # last key is the primary one


def top_k_size(n: int, fraction: float) -> int:
    """Number of crystals in the top ``fraction`` of ``n`` (at least 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * n))


def recall_at_top_fraction(true_scores, predicted_scores, fraction: float = 0.1) -> float:
    """Share of the truly best ``fraction`` of crystals found in the predicted best ``fraction``.

    Both sets have k = round(fraction * n) members, so this is also the precision. A random
    ranking scores ``fraction`` in expectation; the perfect one scores 1.
    """
    true_scores = np.asarray(true_scores, np.float64)
    predicted_scores = np.asarray(predicted_scores, np.float64)
    if true_scores.shape != predicted_scores.shape or true_scores.ndim != 1:
        raise ValueError(
            f"expected two [n] score arrays, got {true_scores.shape} and {predicted_scores.shape}"
        )
    k = top_k_size(len(true_scores), fraction)
    true_top = set(rank_order(true_scores)[:k].tolist())
    predicted_top = set(rank_order(predicted_scores)[:k].tolist())
    return len(true_top & predicted_top) / k


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    ranks = np.empty(len(x))
    # tied values share the mean of the ranks they span
    boundaries = np.flatnonzero(np.diff(sorted_x) != 0) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = 0.5 * (s + e - 1)
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation of two [n] arrays (average ranks for ties).

    Returns NaN when either array is constant (the correlation is undefined).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"expected two [n] arrays with n >= 2, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("spearman: non-finite values")
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / denom) if denom > 0 else float("nan")


# --------------------------------------------------------------------------- inputs


def structure_id(path: str | os.PathLike) -> str:
    """The id of a structure file: its name without a known structure suffix."""
    name = Path(path).name
    for suffix in STRUCTURE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def structure_files(directory: str | os.PathLike) -> list[Path]:
    """Regular, non-hidden files of ``directory`` in name order (each one crystal)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not a directory of structure files")
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def read_band_gaps(path: str | os.PathLike) -> dict[str, float]:
    """Band gaps from a CSV with columns ``id`` and ``band_gap_ev`` (other columns ignored).

    ``id`` is a material id or a structure file's name or stem. Raises `BandGapFileError`
    for a missing file or column, an empty table, a duplicate id, or a gap that is not a
    finite number >= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise BandGapFileError(f"{path}: band-gap file not found")
    gaps: dict[str, float] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("id", "band_gap_ev") if c not in columns]
        if missing:
            raise BandGapFileError(
                f"{path}: missing column(s) {', '.join(missing)}; expected a header with "
                f"'id' and 'band_gap_ev', got {columns or 'no header'}"
            )
        reader.fieldnames = columns
        for line, row in enumerate(reader, start=2):
            ident = (row.get("id") or "").strip()
            raw = (row.get("band_gap_ev") or "").strip()
            if not ident:
                raise BandGapFileError(f"{path}, line {line}: empty id")
            try:
                gap = float(raw)
            except ValueError:
                raise BandGapFileError(
                    f"{path}, line {line} ({ident}): band_gap_ev {raw!r} is not a number"
                ) from None
            if not math.isfinite(gap) or gap < 0:
                raise BandGapFileError(
                    f"{path}, line {line} ({ident}): band_gap_ev must be a finite number >= 0 "
                    f"(eV), got {raw}"
                )
            if ident in gaps:
                raise BandGapFileError(f"{path}, line {line}: duplicate id {ident!r}")
            gaps[ident] = gap
    if not gaps:
        raise BandGapFileError(f"{path}: no band gaps (the table is empty)")
    return gaps


@dataclasses.dataclass(frozen=True)
class PoolItem:
    """One crystal of a screening pool before prediction.

    Attributes:
        id: material id or file stem (matched against the band-gap CSV).
        source: where it came from (file path, or the id).
        structure: a pymatgen Structure, or a file path read in its chunk.
        formula: reduced formula when already known.
        aliases: other names the band-gap CSV may use for it (e.g. the file name).
    """

    id: str
    source: str
    structure: Any
    formula: str = ""
    aliases: tuple[str, ...] = ()


def pool_items(pool) -> tuple[Iterator[PoolItem], int | None]:
    """Iterates a pool lazily; returns (items, size if known).

    ``pool`` is a directory of structure files, ``"shipped"`` (the shipped unlabeled pool),
    or an iterable of `PoolRecord`/`DielectricRecord`-like objects (``.structure`` and
    ``.material_id``), `PoolItem`, pymatgen Structures or file paths.
    """
    if isinstance(pool, str) and pool == "shipped":
        from dtnn_jax.data import load_screening_pool

        pool = load_screening_pool()
    elif isinstance(pool, str | os.PathLike):
        files = structure_files(pool)
        items = (
            PoolItem(id=structure_id(p), source=str(p), structure=p, aliases=(p.name,))
            for p in files
        )
        return items, len(files)
    size = len(pool) if hasattr(pool, "__len__") else None

    def generate():
        for i, obj in enumerate(pool):
            if isinstance(obj, PoolItem):
                yield obj
            elif hasattr(obj, "structure") and hasattr(obj, "material_id"):
                yield PoolItem(
                    id=str(obj.material_id),
                    source=str(obj.material_id),
                    structure=obj.structure,
                    formula=getattr(obj, "formula", ""),
                )
            elif isinstance(obj, str | os.PathLike):
                path = Path(obj)
                yield PoolItem(structure_id(path), str(path), path, aliases=(path.name,))
            else:
                formula = getattr(obj, "formula", "")
                yield PoolItem(f"#{i}", f"#{i} ({formula})", obj, formula=formula)

    return generate(), size


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------- screening


def predict_rows(model, items: list[PoolItem], budget=None) -> list[dict]:
    """Predicts one chunk; one flat row (scalars only) per item, failures carry ``error``.

    Each file is read here first, so a parse error names the file and the other items of
    the chunk still get predictions; elements and formula come from the parsed structure.
    """
    from dtnn_jax.io import StructureInputError, as_structure

    structures, rows = [], []
    for item in items:
        row: dict[str, Any] = {
            "id": item.id,
            "source": item.source,
            "formula": item.formula,
            "elements": [],
            "aliases": item.aliases,
            "error": None,
        }
        try:
            s = as_structure(item.structure)
            row["formula"] = row["formula"] or s.composition.reduced_formula
            row["elements"] = sorted({el.symbol for el in s.composition.elements})
            structures.append(s)
        except StructureInputError as err:
            row["error"] = err.reason
            structures.append(None)
        rows.append(row)
    good = [i for i, s in enumerate(structures) if s is not None]
    if good:
        kwargs = {} if budget is None else {"budget": budget}
        pred = model.predict_detailed([structures[i] for i in good], **kwargs)
        for t in model.targets:
            props = tensor_properties(pred.mean[t])
            spread = pred.eps_poly_std[t]
            for k, i in enumerate(good):
                rows[i][f"eps_poly_{t}"] = float(props.eps_poly[k])
                rows[i][f"eps_poly_{t}_std"] = float(spread[k])
                rows[i][f"anisotropy_{t}"] = float(props.anisotropy[k])
                if t == "electronic":
                    rows[i]["refractive_index"] = float(props.refractive_index[k])
        for k, i in enumerate(good):
            if pred.errors[k] is not None:
                rows[i]["error"] = pred.errors[k]
    return rows


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
        chunk_size: crystals predicted per `predict_detailed` call (bounds memory).
        progress: show a progress bar.
        budget: optional `BatchBudget` for the model.

    Returns:
        The summary dict also written to ``summary.json``.
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
    if band_gaps is not None and size is not None:
        # a sized pool's ids are known before any prediction: fail fast on a wrong table
        items = list(items)  # PoolItems only reference structures/paths: cheap
        names = {name for item in items for name in (item.id, *item.aliases)}
        if items and not names & set(band_gaps):
            raise _no_match_error(items[0].id, band_gaps)
    rows: list[dict] = []
    with tqdm(total=size, disable=not progress, desc="screen", unit="crystal") as bar:
        for chunk in _chunks(items, chunk_size):
            rows.extend(predict_rows(model, chunk, budget))
            bar.update(len(chunk))
    if not rows:
        raise ValueError(f"the pool {pool!s:.200} holds no structures")

    matched = 0
    for row in rows:
        gap = float("nan")
        if band_gaps is not None:
            for name in (row["id"], *row["aliases"]):
                if name in band_gaps:
                    gap = float(band_gaps[name])
                    matched += 1
                    break
        row["band_gap_ev"] = gap
        poly = row.get(f"eps_poly_{target}", float("nan"))
        row["fom"] = gap * poly if row["error"] is None else float("nan")
        row["fom_std"] = gap * row.get(f"eps_poly_{target}_std", float("nan"))
    if band_gaps is not None and matched == 0:
        raise _no_match_error(rows[0]["id"], band_gaps)

    ok = np.array([r["error"] is None for r in rows])
    poly = np.array([r.get(f"eps_poly_{target}", np.nan) for r in rows])
    aniso = np.array([r.get(f"anisotropy_{target}", np.nan) for r in rows])
    fom = np.array([r["fom"] for r in rows])
    use_fom = band_gaps is not None
    primary = np.where(ok, fom if use_fom else poly, np.nan)
    order = rank(primary)
    aniso_order = rank_order(np.where(ok, aniso, np.nan))
    aniso_rank = np.empty(len(rows), int)
    aniso_rank[aniso_order] = np.arange(1, len(rows) + 1)
    for position, i in enumerate(order, start=1):
        rows[i]["rank"] = position if np.isfinite(primary[i]) else None
        rows[i]["rank_anisotropy"] = int(aniso_rank[i]) if np.isfinite(aniso[i]) else None
    ranked = [rows[i] for i in order]
    _write_ranked_csv(ranked, model.targets, out_dir / "ranked.csv")

    ranked_ok = [r for r in ranked if r["rank"] is not None]
    top = ranked_ok[:top_k]
    pool_ok = [r for r in rows if r["error"] is None]
    frequency = element_frequency(top, pool_ok)
    (out_dir / "element_frequency.json").write_text(json.dumps(frequency, indent=1) + "\n")
    plot_element_frequency(frequency, out_dir / "element_frequency.png")
    plots = ["element_frequency.png"]
    if use_fom:
        plot_eps_vs_band_gap(rows, model.targets, out_dir / "eps_vs_band_gap.png")
        plots.append("eps_vs_band_gap.png")
    plot_score_distribution(
        primary[np.isfinite(primary)],
        "FOM = band gap x eps_poly (eV)" if use_fom else f"eps_poly ({target})",
        [r["fom"] if use_fom else r[f"eps_poly_{target}"] for r in top],
        out_dir / "fom_distribution.png",
    )
    plots.append("fom_distribution.png")

    ranking_key = f"FOM = band_gap_ev x eps_poly_{target}" if use_fom else f"eps_poly_{target}"
    summary = {
        "model": model.name,
        "targets": list(model.targets),
        "ensemble_size": {t: model.ensemble_size(t) for t in model.targets},
        "ranking": ranking_key,
        "note": None
        if use_fom
        else "no band gaps given: ranked by eps_poly; FOM = band gap x eps_poly needs band "
        "gaps (--band-gaps CSV with columns id, band_gap_ev)",
        "n_pool": len(rows),
        "n_predicted": int(ok.sum()),
        "n_failed": int((~ok).sum()),
        "n_ranked": len(ranked_ok),
        "n_without_band_gap": int(np.sum(ok & np.isnan([r["band_gap_ev"] for r in rows])))
        if use_fom
        else None,
        "top_k": [
            {k: r.get(k) for k in ("rank", "id", "formula", "band_gap_ev", "fom")}
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
    (out_dir / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1) + "\n")
    return summary


def _no_match_error(example_id: str, band_gaps: Mapping[str, float]) -> BandGapFileError:
    return BandGapFileError(
        "no crystal of the pool has a band gap in the band-gap table: its ids must be "
        f"material ids or file names/stems (pool ids look like {example_id!r}; table "
        f"ids look like {next(iter(band_gaps))!r})"
    )


def _jsonable(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def _write_ranked_csv(ranked: list[dict], targets, path: Path) -> None:
    columns = ["rank", "id", "source", "formula", "band_gap_ev", "fom", "fom_std"]
    for t in targets:
        columns += [f"eps_poly_{t}", f"eps_poly_{t}_std", f"anisotropy_{t}"]
    columns += ["rank_anisotropy", "refractive_index", "error"]

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.6g}"
        return v

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in ranked:
            writer.writerow([fmt(row.get(c)) for c in columns])


def element_frequency(top: list[dict], pool: list[dict]) -> dict:
    """Element occurrence in the top candidates against the pool (paper Fig. 6c).

    A crystal counts once per element it contains. Fractions are over crystals, so they
    need not sum to 1; ``enrichment`` = top fraction / pool fraction.
    """
    top_counts = Counter(el for r in top for el in r["elements"])
    pool_counts = Counter(el for r in pool for el in r["elements"])
    n_top, n_pool = len(top), len(pool)
    elements = {}
    for el, count in sorted(top_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        pool_fraction = pool_counts[el] / n_pool
        elements[el] = {
            "top_count": count,
            "top_fraction": count / n_top,
            "pool_count": pool_counts[el],
            "pool_fraction": pool_fraction,
            "enrichment": (count / n_top) / pool_fraction,
        }
    return {"n_top": n_top, "n_pool": n_pool, "elements": elements}


def plot_element_frequency(frequency: dict, path: Path, max_elements: int = 30) -> Path:
    """Bar chart: share of top-K crystals containing each element vs the pool share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(frequency["elements"])[:max_elements]
    top = [frequency["elements"][e]["top_fraction"] for e in names]
    pool = [frequency["elements"][e]["pool_fraction"] for e in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(names) + 1.5), 3.5))
    ax.bar(x - 0.2, top, 0.4, label=f"top {frequency['n_top']}")
    ax.bar(x + 0.2, pool, 0.4, label=f"pool ({frequency['n_pool']})", alpha=0.6)
    ax.set_xticks(x, names, rotation=90)
    ax.set_ylabel("fraction of crystals containing it")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _density_contours(ax, x: np.ndarray, y: np.ndarray, bins: int = 40) -> None:
    """Filled contours of a Gaussian-smoothed 2D histogram, points on top when few."""
    if len(x) >= 20:
        h, xe, ye = np.histogram2d(x, y, bins=bins)
        kernel = np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)
        kernel /= kernel.sum()
        h = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 0, h)
        h = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 1, h)
        xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
        if h.max() > 0:
            levels = np.linspace(0.02 * h.max(), h.max(), 8)
            ax.contourf(xc, yc, h.T, levels=levels, cmap="Blues")
            ax.contour(xc, yc, h.T, levels=levels, colors="k", linewidths=0.3)
    ax.scatter(x, y, s=4 if len(x) >= 20 else 16, c="C1", alpha=0.5, lw=0)


def plot_eps_vs_band_gap(rows: list[dict], targets, path: Path) -> Path:
    """Predicted eps_poly vs band gap, one panel per target (paper Fig. 6a/b)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), squeeze=False)
    for ax, t in zip(axes[0], targets, strict=True):
        pts = [
            (r["band_gap_ev"], r[f"eps_poly_{t}"])
            for r in rows
            if r["error"] is None and np.isfinite(r["band_gap_ev"])
        ]
        if pts:
            x, y = np.array(pts).T
            _density_contours(ax, x, y)
        ax.set_xlabel("band gap (eV)")
        ax.set_ylabel(f"predicted eps_poly ({t})")
        ax.set_title(f"{t}: {len(pts)} crystals")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_score_distribution(scores, label: str, top_scores, path: Path) -> Path:
    """Histogram of the ranking score over the pool with the top-K marked (paper Fig. 6d)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, np.float64)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if len(scores):
        ax.hist(scores, bins=min(60, max(5, len(scores) // 5)), color="C0", alpha=0.8)
    if top_scores:
        ax.axvline(min(top_scores), color="C3", ls="--", label=f"top {len(top_scores)} cut")
        ax.legend()
    ax.set_xlabel(label)
    ax.set_ylabel("crystals")
    ax.set_yscale("log" if len(scores) > 200 else "linear")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
