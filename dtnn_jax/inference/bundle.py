"""Self-describing model bundles: readout ensembles + config + provenance, loadable by name.

A bundle is a directory with

* ``bundle.json``: format version, name, description, licence, versions (dtnn-jax, encoder
  weights sha256), training-data hash, and per target: the experiment config, and for each
  ensemble member its target scaler, seed and test metrics; optionally ``calibration``, the
  fitted uncertainty calibration (`dtnn_jax.inference.calibration`);
* ``params.npz``: every member's readout parameters, keys ``"<target>/<member>/<path>"``.

The encoder weights are not in the bundle (they ship once, in ``dtnn_jax/weights``); the
bundle records their sha256 and refuses to load against other weights.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util

from dtnn_jax.config import TARGETS, ExperimentConfig
from dtnn_jax.errors import InputError
from dtnn_jax.models.scaling import TargetScaler

BUNDLE_FORMAT = "dtnn_jax.bundle"
BUNDLE_VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
# The default: electronic readout + physics ionic (Born charges x Nequix-OAM-1-PFT's force
# constants), total = electronic + ionic. FAST_MODEL reads all three off SevenNet-0 features
# (one forward pass per crystal): `dtnn screen`'s pre-screen.
DEFAULT_MODEL = "dtnn-physics-nequixpft-petousis2017"
FAST_MODEL = "dtnn-sevennet0-petousis2017"


class BundleError(InputError):
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
    """Writes ``bundle`` into directory ``path`` (``bundle.json`` + ``params.npz``).

    Raises:
        BundleError: the bundle has no encoder identity (``metadata["encoder_sha256"]``).
    """
    from dtnn_jax import __version__

    path = Path(path)
    if not bundle.metadata.get("encoder_sha256"):
        raise BundleError("a bundle needs metadata['encoder_sha256'] (the encoder's identity)")
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
    # Each file is written to a temporary name and renamed into place, parameters first:
    # a crash never leaves a half-written file, and the directory may hold other things (a
    # training run directory keeps its checkpoints and metrics beside its bundle).
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".params-", suffix=".npz", delete=False) as f:
        np.savez_compressed(f, **arrays)
    os.replace(f.name, path / "params.npz")
    tmp = path / ".bundle.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path / "bundle.json")
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
    problems = _schema_problems(meta)
    if problems:
        raise BundleError(_listing(meta_path, problems))
    targets = {}
    for target, tmeta in meta["targets"].items():
        try:
            config = ExperimentConfig.from_dict(tmeta["config"])
        except (TypeError, ValueError, KeyError) as err:
            problems.append(f"targets.{target}.config: {err}")
            continue
        members = []
        for m, mmeta in enumerate(tmeta["members"]):
            prefix = f"{target}/{m}/"
            flat = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            problems += _param_problems(flat, config, f"{target} member {m}")
            try:
                scaler = TargetScaler.from_dict(mmeta["scaler"], config.readout.output_map)
            except (TypeError, ValueError, KeyError) as err:
                problems.append(f"targets.{target}.members[{m}].scaler: {err}")
                continue
            members.append(
                Member(
                    params=traverse_util.unflatten_dict(flat, sep="/"),
                    scaler=scaler,
                    seed=int(mmeta.get("seed", m)),
                    metrics=mmeta.get("metrics", {}),
                )
            )
        targets[target] = TargetModel(config=config, members=tuple(members))
    if problems:
        raise BundleError(_listing(params_path.parent, problems))
    for model in targets.values():
        _check_encoder(meta, path, model.config.encoder)
    metadata = {k: v for k, v in meta.items() if k not in ("targets",)}
    return ModelBundle(name=meta.get("name", path.name), targets=targets, metadata=metadata)


def _listing(where: Path, problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"{where}: not a usable bundle ({len(problems)} problem(s)):\n{lines}"


def _schema_problems(meta: dict) -> list[str]:
    """What ``bundle.json`` lacks or has wrong, one line each (empty when it is fine)."""
    problems = []
    if not meta.get("encoder_sha256"):
        problems.append(
            "encoder_sha256: missing; without the encoder's identity the readouts could be "
            "applied to features they were not trained on (re-export the bundle)"
        )
    if meta.get("calibration"):  # issue 22: the fitted uncertainty calibration
        from dtnn_jax.inference.calibration import Calibration

        try:
            Calibration.from_metadata(meta)
        except (TypeError, KeyError, AttributeError) as err:
            problems.append(f"calibration: unreadable ({err}); refit with experiments/calibrate.py")
    targets = meta.get("targets")
    if not isinstance(targets, dict) or not targets:
        return [*problems, "targets: missing or empty (the bundle holds no trained target)"]
    for target, tmeta in targets.items():
        if target not in TARGETS:
            problems.append(f"targets.{target}: unknown target (use one of {TARGETS})")
            continue
        if not isinstance(tmeta, dict):
            problems.append(f"targets.{target}: expected an object")
            continue
        if not isinstance(tmeta.get("config"), dict):
            problems.append(f"targets.{target}.config: missing")
        members = tmeta.get("members")
        if not isinstance(members, list) or not members:
            problems.append(f"targets.{target}.members: missing or empty")
            continue
        for m, mmeta in enumerate(members):
            if not isinstance(mmeta, dict) or not isinstance(mmeta.get("scaler"), dict):
                problems.append(f"targets.{target}.members[{m}].scaler: missing")
    return problems


def _param_problems(flat: dict[str, np.ndarray], config: ExperimentConfig, name: str) -> list[str]:
    """Missing, unexpected or misshapen arrays of one member, against its readout's shapes."""
    if not flat:
        return [f"params.npz: no parameters for {name}"]
    expected = _expected_shapes(config)
    problems = [f"params.npz: {name}: missing array {k}" for k in sorted(set(expected) - set(flat))]
    problems += [
        f"params.npz: {name}: unexpected array {k}" for k in sorted(set(flat) - set(expected))
    ]
    for key in sorted(set(flat) & set(expected)):
        if tuple(flat[key].shape) != expected[key]:
            problems.append(
                f"params.npz: {name}: {key} has shape {tuple(flat[key].shape)}, the readout "
                f"config needs {expected[key]}"
            )
    return problems


@functools.cache
def _expected_shapes(config: ExperimentConfig) -> dict[str, tuple[int, ...]]:
    """Flattened parameter names and shapes of the config's network (no compute:
    eval_shape; the physics model is initialised through its Born-charge head)."""
    import jax

    from dtnn_jax.graph import pad_to_bucket, with_features
    from dtnn_jax.graph.batching import BatchBudget
    from dtnn_jax.models.factory import model_for
    from dtnn_jax.training.synthetic import synthetic_graphs

    readout = config.readout
    graphs = synthetic_graphs(1, readout.input_irreps, n_radial=readout.n_radial, seed=0)
    model = model_for(config)
    kwargs = {}
    if config.physics is not None:
        n = int(graphs[0].n_node[0])
        graphs = [with_features(graphs[0], nodes={"charge_nominal": np.zeros(n, np.float32)})]
        kwargs = {"method": type(model).charges}
    batch = pad_to_bucket(graphs, BatchBudget(max_graphs=1))
    shapes = jax.eval_shape(functools.partial(model.init, **kwargs), jax.random.key(0), batch)
    flat = traverse_util.flatten_dict(shapes, sep="/")
    return {k: tuple(v.shape) for k, v in flat.items()}


def _check_encoder(meta: dict, path: Path, encoder_name: str) -> None:
    expected = meta["encoder_sha256"]
    from dtnn_jax.encoder import get_encoder

    try:
        encoder = get_encoder(encoder_name)
    except ValueError as err:
        raise BundleError(f"{path}: {err}") from err
    if encoder.weights_sha256 != expected:
        raise BundleError(
            f"{path}: trained on encoder weights {expected[:12]}..., but the installed "
            f"{encoder.name} weights are {encoder.weights_sha256[:12]}...; incompatible"
        )
