"""Trained readouts -> a model bundle that `dtnn predict` / `load_model` can use.

`export_bundle` turns the fits of one or more targets (one member per seed or fold) into a
self-describing bundle (`dtnn_jax.inference.bundle`): the readout parameters and target
scalers, the experiment config, the encoder's name and weights sha256, package versions, a
content hash of the training data and each member's metrics.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.training.loop import FitResult


def records_digest(records: Sequence[Any]) -> str:
    """sha256 of labelled records: structures (lattice, positions, elements) and tensors."""
    from dtnn_jax.encoder.cache import structures_digest

    h = hashlib.sha256(structures_digest([r.structure for r in records]).encode())
    for r in records:
        for target in ("electronic", "ionic", "total"):
            value = r.target(target) if r.has_target(target) else None
            h.update(b"-" if value is None else np.asarray(value, np.float64).tobytes())
    return h.hexdigest()


def graphs_digest(graphs: Sequence[Any]) -> str:
    """sha256 of training graphs: lattices, positions, elements and target tensors."""
    h = hashlib.sha256()
    for g in graphs:
        for array in (
            g.globals.get("lattice"),
            g.nodes["positions"],
            g.nodes["species"],
            g.globals.get("target"),
        ):
            h.update(b"-" if array is None else np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the packages a bundle's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("dtnn-jax", "jax", "jaxlib", "flax", "e3nn-jax", "optax", "numpy", "pymatgen"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, float | int)}


def export_bundle(
    path: str | Path,
    runs: Mapping[str, Sequence[tuple[ExperimentConfig, FitResult, Mapping[str, Any]]]],
    data_sha256: str,
    n_records: int,
    description: str,
    training_data: str,
    produced_by: str,
    name: str | None = None,
) -> Path:
    """Writes the fits as one ensemble per target and returns the bundle directory.

    Args:
        path: the bundle directory (created or replaced atomically).
        runs: target -> one (config, fit, test metrics) per member. Members of a target
            must share the config except for the seed.
        data_sha256: a content hash of the labelled data (`records_digest`, `graphs_digest`).
        n_records: how many labelled crystals the data held.
        description: what the model is, for ``bundle.json``.
        training_data: where the records came from (a path or "shipped").
        produced_by: the command that made it.
        name: the bundle name (default: the directory name).
    """
    import dataclasses

    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.inference.bundle import Member, ModelBundle, TargetModel, save_bundle

    path = Path(path)
    targets = {}
    encoder_names = set()
    for target, members in runs.items():
        base = dataclasses.replace(members[0][0], seed=0)
        for config, _, _ in members:
            if dataclasses.replace(config, seed=0) != base:
                raise ValueError(f"{target}: ensemble members were trained with other settings")
        encoder_names.add(base.encoder)
        targets[target] = TargetModel(
            config=base,
            members=tuple(
                Member(
                    params=fit.params,
                    scaler=fit.scaler,
                    seed=config.seed,
                    metrics=_scalar_metrics(metrics),
                )
                for config, fit, metrics in members
            ),
        )
    if len(encoder_names) != 1:
        raise ValueError(f"one bundle serves one encoder, got {sorted(encoder_names)}")
    encoder = get_encoder(encoder_names.pop())
    bundle = ModelBundle(
        name=name or path.name,
        targets=targets,
        metadata={
            "description": description,
            "licence": "MIT (model); see the training data for its licence",
            "encoder": encoder.name,
            "encoder_sha256": encoder.weights_sha256,
            "training_data": training_data,
            "training_data_sha256": data_sha256,
            "n_training_records": n_records,
            "versions": versions(),
            "created": time.strftime("%Y-%m-%d"),
            "produced_by": produced_by,
        },
    )
    return save_bundle(bundle, path)
