"""Self-describing model bundles: readout ensembles + config + provenance, loadable by name.

A bundle is a directory with

* ``bundle.json``: format version, name, description, licence, versions (dtnn-jax, encoder
  weights sha256), training-data hash, and per target: the experiment config, and for each
  ensemble member its target scaler, seed and test metrics;
* ``params.npz``: every member's readout parameters, keys ``"<target>/<member>/<path>"``.

The encoder weights are not in the bundle (they ship once, in ``dtnn_jax/weights``); the
bundle records their sha256 and refuses to load against other weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util

from dtnn_jax.config import TARGETS, ExperimentConfig
from dtnn_jax.models.scaling import TargetScaler

BUNDLE_FORMAT = "dtnn_jax.bundle"
BUNDLE_VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_MODEL = "dtnn-sevennet0-petousis2017"


class BundleError(ValueError):
    """A model bundle is missing, corrupt or incompatible (the message says which)."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One trained readout of an ensemble.

    Attributes:
        params: Flax parameter pytree of the readout.
        scaler: maps the network output to eps.
        seed: split/initialisation seed it was trained with.
        metrics: test metrics on its own split (may be empty).
    """

    params: Any
    scaler: TargetScaler
    seed: int
    metrics: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TargetModel:
    """The ensemble for one target; all members share one experiment config."""

    config: ExperimentConfig
    members: tuple[Member, ...]


@dataclasses.dataclass(frozen=True)
class ModelBundle:
    """A set of per-target ensembles plus provenance.

    Attributes:
        name: bundle name (directory name for shipped bundles).
        targets: target name -> its ensemble.
        metadata: free-form provenance (description, licence, versions, data hash, ...).
    """

    name: str
    targets: dict[str, TargetModel]
    metadata: dict = dataclasses.field(default_factory=dict)


def save_bundle(bundle: ModelBundle, path: str | os.PathLike) -> Path:
    """Writes ``bundle`` to directory ``path`` atomically (a temp dir renamed into place)."""
    from dtnn_jax import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    targets_meta = {}
    for target, model in bundle.targets.items():
        members_meta = []
        for m, member in enumerate(model.members):
            flat = traverse_util.flatten_dict(_to_numpy(member.params), sep="/")
            for key, value in flat.items():
                arrays[f"{target}/{m}/{key}"] = np.asarray(value, np.float32)
            members_meta.append(
                {"scaler": member.scaler.as_dict(), "seed": member.seed, "metrics": member.metrics}
            )
        targets_meta[target] = {"config": model.config.to_dict(), "members": members_meta}
    meta = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "name": bundle.name,
        "dtnn_jax_version": __version__,
        **bundle.metadata,
        "targets": targets_meta,
    }
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=path.parent))
    np.savez_compressed(tmp / "params.npz", **arrays)
    (tmp / "bundle.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
    if path.exists():
        backup = path.with_name(path.name + ".old")
        os.replace(path, backup)
        os.replace(tmp, path)
        for f in backup.iterdir():
            f.unlink()
        backup.rmdir()
    else:
        os.replace(tmp, path)
    return path


def _to_numpy(tree):
    import jax

    return jax.tree.map(np.asarray, jax.device_get(tree))


def resolve_bundle_path(name_or_path: str | os.PathLike | None) -> Path:
    """A shipped bundle name (see `available_models`) or a directory path."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    shipped = PRETRAINED_DIR / str(name_or_path)
    if shipped.is_dir():
        return shipped
    raise BundleError(
        f"no model bundle {str(name_or_path)!r}: not a directory, and not a shipped model "
        f"(shipped: {', '.join(available_models()) or 'none'})"
    )


def available_models() -> list[str]:
    """Names of the bundles shipped inside the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "bundle.json").exists())


def load_bundle(name_or_path: str | os.PathLike | None = None) -> ModelBundle:
    """Reads and validates a bundle; raises `BundleError` naming what is wrong."""
    path = resolve_bundle_path(name_or_path)
    meta_path, params_path = path / "bundle.json", path / "params.npz"
    for p in (meta_path, params_path):
        if not p.exists():
            raise BundleError(f"{path}: missing {p.name}; the bundle is incomplete")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{meta_path}: corrupt JSON ({err})") from err
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{meta_path}: not a dtnn-jax model bundle")
    if meta.get("format_version") != BUNDLE_VERSION:
        raise BundleError(
            f"{meta_path}: bundle format version {meta.get('format_version')} is not supported "
            f"by this dtnn-jax (expects {BUNDLE_VERSION}); re-export the model or upgrade"
        )
    try:
        with np.load(params_path) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:  # zip/pickle/IO errors all mean the same to the user
        raise BundleError(f"{params_path}: cannot read parameters ({err})") from err
    targets = {}
    for target, tmeta in meta.get("targets", {}).items():
        if target not in TARGETS:
            raise BundleError(f"{meta_path}: unknown target {target!r}")
        config = ExperimentConfig.from_dict(tmeta["config"])
        members = []
        for m, mmeta in enumerate(tmeta["members"]):
            prefix = f"{target}/{m}/"
            flat = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            if not flat:
                raise BundleError(f"{params_path}: no parameters for {target} member {m}")
            params = traverse_util.unflatten_dict(flat, sep="/")
            members.append(
                Member(
                    params=params,
                    scaler=TargetScaler.from_dict(mmeta["scaler"], config.readout.output_map),
                    seed=int(mmeta.get("seed", m)),
                    metrics=mmeta.get("metrics", {}),
                )
            )
        targets[target] = TargetModel(config=config, members=tuple(members))
    if not targets:
        raise BundleError(f"{meta_path}: the bundle holds no trained target")
    for model in targets.values():
        _check_encoder(meta, path, model.config.encoder)
    metadata = {k: v for k, v in meta.items() if k not in ("targets",)}
    return ModelBundle(name=meta.get("name", path.name), targets=targets, metadata=metadata)


def _check_encoder(meta: dict, path: Path, encoder_name: str) -> None:
    expected = meta.get("encoder_sha256")
    if not expected:
        return
    from dtnn_jax.encoder import get_encoder

    encoder = get_encoder(encoder_name)
    if encoder.weights_sha256 != expected:
        raise BundleError(
            f"{path}: trained on encoder weights {expected[:12]}..., but the installed "
            f"{encoder.name} weights are {encoder.weights_sha256[:12]}...; incompatible"
        )
