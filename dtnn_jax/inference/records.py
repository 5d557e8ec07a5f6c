"""One typed record per predicted crystal, streamed: what `dtnn predict` and `dtnn screen` use.

`predict_crystals` runs the single input pass and the model over inputs in chunks (so only
one chunk of structures and graphs is alive at a time) and yields a `CrystalPrediction` per
crystal: its names, formula and elements, the per-target tensors with their ensemble
spread and derived properties, or the reason it could not be predicted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from dtnn_jax.inputs import CrystalInput, prepare_inputs
from dtnn_jax.properties import tensor_properties

DEFAULT_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class TargetPrediction:
    """One target's predicted tensor and what follows from it.

    Attributes:
        tensor: [3, 3] ensemble-mean tensor.
        std: [3, 3] ensemble standard deviation per component.
        eigenvalues: [3] principal permittivities, ascending.
        eps_poly: tr / 3.
        eps_poly_std: ensemble standard deviation of eps_poly.
        anisotropy: lambda_max / lambda_min (NaN, n/a, where the tensor is ~0; see
            `dtnn_jax.properties.ANISOTROPY_MIN_EIGENVALUE`).
    """

    tensor: np.ndarray
    std: np.ndarray
    eigenvalues: np.ndarray
    eps_poly: float
    eps_poly_std: float
    anisotropy: float


@dataclasses.dataclass(frozen=True)
class CrystalPrediction:
    """The prediction for one crystal, or why there is none.

    Attributes:
        id: row id (file stem, ``file#k``, material id or ``#index``).
        source: how messages name it (path or ``#index (formula)``).
        formula: reduced formula ("" if the input could not be read).
        elements: sorted element symbols.
        error: None, or the reason it could not be predicted.
        targets: target -> `TargetPrediction` (empty on error).
        refractive_index: sqrt(eps_poly) of the electronic tensor (NaN if not predicted).
        aliases: other names a side table may use for it (e.g. its file name).
        info: what the input already knew (band gap, e_above_hull, sources, ...).
        warning: None, or why the prediction may not mean what it seems (e.g. a slab).
        position: the index of the input it came from (see `dtnn_jax.inputs.CrystalInput`).
        born_charges: [N, 3, 3] ensemble-mean Born effective charges (e; first index the
            field direction), with a physics ionic model; else None.
        phonons: the Gamma phonons (`dtnn_jax.physics.GammaPhonons`: frequencies, IR
            activity, each mode's part of eps_ion) from the potential's K and the Born
            charges, with a physics ionic model and ``phonons=True``; else None.
        max_force_ev_per_a: with a physics ionic model, the largest residual force of the
            potential at the given geometry (eV/A; large: not a minimum of the potential,
            so K and eps_ion are less reliable); else NaN.
        n_unstable_modes: with a physics ionic model, how many unstable (imaginary) optical
            modes the eps_ion inversion met (dropped by the default treatment; see
            `dtnn_jax.inference.cautions`); else None.
        lowest_frequency_cm1: with a physics ionic model, the lowest optical Gamma
            frequency (cm^-1; negative: imaginary); else NaN.

    ``warning`` also carries the cautions of `dtnn_jax.inference.cautions` (unstable modes,
    a likely metal, a predicted eps_inf above `EPS_INF_SMALL_GAP`).
    """

    id: str
    source: str
    formula: str
    elements: list[str]
    error: str | None
    targets: dict[str, TargetPrediction]
    refractive_index: float = float("nan")
    aliases: tuple[str, ...] = ()
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    warning: str | None = None
    position: int = -1
    born_charges: np.ndarray | None = None
    phonons: Any = None
    max_force_ev_per_a: float = float("nan")
    n_unstable_modes: int | None = None
    lowest_frequency_cm1: float = float("nan")

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self, targets: Sequence[str] | None = None) -> dict:
        """A JSON-ready dict (NaN as None), with ``targets`` (default: all) only."""
        names = list(self.targets) if targets is None else [t for t in targets if t in self.targets]
        extra: dict = {}
        if self.born_charges is not None:
            extra["born_charges"] = self.born_charges.astype(float).round(6).tolist()
            extra["max_force_ev_per_a"] = _finite_or_none(self.max_force_ev_per_a)
        if self.n_unstable_modes is not None:
            extra["n_unstable_modes"] = self.n_unstable_modes
            extra["lowest_frequency_cm1"] = _finite_or_none(self.lowest_frequency_cm1)
        if self.phonons is not None:
            extra["phonons"] = phonon_modes(self.phonons)
        if "electronic" in self.targets:  # issue 22: optical constants of eps_inf
            from dtnn_jax.optics import optical_constants

            extra["optics"] = optical_constants(self.targets["electronic"].tensor).record(0)
        return extra | {
            "source": self.source,
            "id": self.id,
            "formula": self.formula or None,
            "error": self.error,
            "warning": self.warning,
            "position": self.position,
            "refractive_index": _finite_or_none(self.refractive_index),
            "targets": {
                t: {
                    "tensor": self.targets[t].tensor.astype(float).tolist(),
                    "std": self.targets[t].std.astype(float).tolist(),
                    "eigenvalues": self.targets[t].eigenvalues.astype(float).tolist(),
                    "eps_poly": float(self.targets[t].eps_poly),
                    "eps_poly_std": float(self.targets[t].eps_poly_std),
                    "anisotropy": _finite_or_none(self.targets[t].anisotropy),
                }
                for t in names
            },
        }


def phonon_modes(phonons) -> list[dict]:
    """JSON-ready Gamma modes: frequency (cm^-1; negative = imaginary), IR activity
    (e^2/amu) and the mode's part of eps_ion (its tensor and eps_poly), acoustic ones and
    unstable ones dropped from eps_ion flagged."""
    modes = []
    for m, freq in enumerate(phonons.frequencies_cm1):
        part = None if phonons.contributions is None else phonons.contributions[m]
        modes.append(
            {
                "frequency_cm1": float(freq),
                "acoustic": bool(phonons.acoustic[m]),
                # an unstable mode left out of eps_ion by the treatment ("drop_negative")
                "dropped": bool(phonons.imaginary[m] and phonons.weights_a2_amu_per_ev[m] == 0),
                "ir_activity_e2_per_amu": None
                if phonons.ir_activity_e2_per_amu is None
                else float(phonons.ir_activity_e2_per_amu[m]),
                "eps_ionic_poly": None if part is None else float(np.trace(part) / 3.0),
                "eps_ionic": None if part is None else part.astype(float).tolist(),
            }
        )
    return modes


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _phonons(model, crystal: CrystalInput, born: np.ndarray, fc):
    """Gamma phonons of a crystal from the potential's K and the predicted Born charges."""
    from dtnn_jax.physics import gamma_phonons

    structure = crystal.structure
    physics = model.bundle.targets[model.physics_targets[0]].config.physics
    return gamma_phonons(
        fc.k_ev_per_a2,
        np.array([site.specie.atomic_mass for site in structure], np.float64),
        born,
        structure.volume,
        treatment=physics.treatment,
    )


def _records(
    model, crystals: list[CrystalInput], prediction, phonons: bool = False
) -> list[CrystalPrediction]:
    from dtnn_jax.inference.cautions import joined, prediction_cautions

    props = {t: tensor_properties(prediction.mean[t]) for t in prediction.mean}
    cautions = prediction_cautions(model, crystals, prediction)
    out = []
    for k, crystal in enumerate(crystals):
        error = prediction.errors[k]
        born = prediction.born_charges[k] if prediction.born_charges else None
        fc = prediction.force_constants[k] if prediction.force_constants else None
        targets = {}
        if error is None:
            targets = {
                t: TargetPrediction(
                    tensor=prediction.mean[t][k],
                    std=prediction.std[t][k],
                    eigenvalues=props[t].eigenvalues[k],
                    eps_poly=float(props[t].eps_poly[k]),
                    eps_poly_std=float(prediction.eps_poly_std[t][k]),
                    anisotropy=float(props[t].anisotropy[k]),
                )
                for t in prediction.mean
            }
        n = props["electronic"].refractive_index[k] if "electronic" in props else np.nan
        unstable = cautions[k].unstable
        out.append(
            CrystalPrediction(
                id=crystal.id,
                source=crystal.source,
                formula=crystal.formula,
                elements=crystal.elements,
                error=error,
                targets=targets,
                refractive_index=float(n) if error is None else float("nan"),
                aliases=crystal.aliases,
                info=crystal.info,
                warning=joined(crystal.warning, *cautions[k].messages),
                position=crystal.position,
                born_charges=born,
                phonons=_phonons(model, crystal, born, fc) if phonons and fc is not None else None,
                max_force_ev_per_a=fc.max_force_ev_per_a if fc is not None else float("nan"),
                n_unstable_modes=None if unstable is None else unstable.count,
                lowest_frequency_cm1=float("nan")
                if unstable is None
                else unstable.lowest_frequency_cm1,
            )
        )
    return out


def predict_crystals(
    model,
    inputs: Iterable | Any,
    chunk_size: int = DEFAULT_CHUNK,
    inversion_average: bool = False,
    budget=None,
    max_atoms: int | None = None,
    allow_isolated: bool = False,
    phonons: bool = False,
    targets: Sequence[str] | None = None,
    progress: bool = False,
) -> Iterator[CrystalPrediction]:
    """Streams a `CrystalPrediction` per crystal of ``inputs``, in input order.

    Args:
        model: a `DielectricModel`.
        inputs: Structures, ASE Atoms, paths, `dtnn_jax.inputs.InputItem`s or records with
            ``.structure`` and ``.material_id`` (any iterable; consumed lazily).
        chunk_size: crystals per model call (bounds memory).
        inversion_average: see `DielectricModel.predict_detailed`.
        budget: padded-batch limits (default: the encoder's).
        max_atoms, allow_isolated: options of the input pass (`dtnn_jax.inputs`).
        phonons: with a physics ionic model, also each crystal's Gamma phonons.
        targets: the targets wanted (default all of the model's); only what they need is
            computed (e.g. no force constants for electronic alone, unless ``phonons``).
        progress: progress bars of the model's passes (the force constants per crystal).
    """
    if phonons and not model.physics_targets:
        raise ValueError(
            f"model {model.name} has no physics ionic model: phonons need the potential's "
            "force constants and Born charges (a bundle from dtnn train --physics)"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    crystals = prepare_inputs(inputs, model.encoder, max_atoms, allow_isolated)
    computed = None  # the electronic tensor (the refractive index) costs no Hessian: always
    if targets is not None:
        extra = ("electronic",) if "electronic" in model.targets else ()
        computed = tuple(dict.fromkeys([*targets, *extra]))
    while chunk := list(itertools.islice(crystals, chunk_size)):
        prediction = model.predict_inputs(
            chunk,
            budget,
            progress=progress,
            inversion_average=inversion_average,
            targets=computed,
            born_charges=phonons or targets is None or set(targets) != {"electronic"},
            force_constants=phonons,
        )
        yield from _records(model, chunk, prediction, phonons)
