"""What a prediction may not mean: dropped unstable modes, likely metals, small gaps.

A dielectric tensor is a property of a stable insulator. The models predict one for any
crystal, so `crystal_cautions` says, per crystal, when the number deserves doubt:

* **Unstable modes.** The physics ionic model inverts the potential's force constants K on
  the optical modes. A negative eigenvalue of K is an unstable (imaginary) phonon: the
  structure is a saddle of the potential (cubic BaTiO3, SrTiO3), and eps_ion has no
  harmonic value. The default treatment (``"drop_negative"``,
  `dtnn_jax.physics.TREATMENTS`) leaves those modes out of eps_ion, which is then finite but
  too small by an unknown amount. The caution counts them (``n_unstable_modes``: the
  negative optical eigenvalues of K that the inversion met, as many as the imaginary
  phonons) and gives the lowest phonon frequency (``lowest_frequency_cm1``, negative =
  imaginary, from the mass-weighted K).
* **Likely metals.** `metal_verdict`, the screen's rule (`dtnn_jax.data.records.likely_metal`:
  a known band gap decides, else the composition): a metal has no static dielectric tensor.
* **Small gaps.** A predicted eps_inf (the electronic eps_poly) above
  `EPS_INF_SMALL_GAP` marks a likely metal, semimetal or gap below 0.5 eV, where a static
  eps means little (it diverges as the gap closes). The threshold is fitted on the 1,056
  labelled DFPT crystals of Petousis et al., whose PBE gaps are known
  (`benchmarks/gap_proxy.py`, `benchmarks/results/gap_proxy.md`): it is the lowest eps_inf
  above which at most 2 % of the crystals with a gap >= 0.5 eV lie. The screen uses the same
  test as its band-gap proxy where no band gap is known (`small_gap_verdict`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

EPS_INF_SMALL_GAP = 15.5
"""eps_inf (electronic eps_poly) above which a crystal is likely a metal, a semimetal or of
gap < 0.5 eV: `fit_small_gap_threshold` on the shipped labelled data (module docstring)."""

SMALL_GAP_EV = 0.5
"""The band gap (eV) below which the small-gap proxy is meant to catch a crystal."""

MAX_FALSE_EXCLUSION = 0.02
"""The fraction of labelled crystals with a gap >= `SMALL_GAP_EV` the fit lets the proxy flag."""


def fit_small_gap_threshold(eps_inf, band_gap_ev, step: float = 0.5) -> float:
    """The lowest multiple of ``step`` above which at most `MAX_FALSE_EXCLUSION` of the
    crystals with a gap >= `SMALL_GAP_EV` lie: how `EPS_INF_SMALL_GAP` is fitted.

    Args:
        eps_inf: [n] electronic eps_poly of labelled crystals.
        band_gap_ev: [n] their band gaps.
    """
    eps_inf, gap = np.asarray(eps_inf, np.float64), np.asarray(band_gap_ev, np.float64)
    insulators = eps_inf[gap >= SMALL_GAP_EV]
    threshold = step
    while np.mean(insulators > threshold) > MAX_FALSE_EXCLUSION:
        threshold += step
    return threshold


@dataclasses.dataclass(frozen=True)
class UnstableModes:
    """The unstable optical modes met by the ionic inversion of one crystal.

    Attributes:
        count: optical eigenvalues of K below 0 (= imaginary Gamma phonons).
        lowest_frequency_cm1: the lowest optical Gamma frequency (cm^-1; negative:
            imaginary); NaN for a one-atom cell.
        treatment: how the inversion treated them (`dtnn_jax.physics.TREATMENTS`).
    """

    count: int
    lowest_frequency_cm1: float
    treatment: str

    def message(self) -> str | None:
        """A warning when there are unstable modes, else None."""
        if not self.count:
            return None
        fate = {
            "drop_negative": "dropped from eps_ion, which is therefore too small by an unknown "
            "amount",
            "abs": "entered eps_ion with |w^2| (a guess)",
            "signed": "entered eps_ion with a negative weight",
        }.get(self.treatment, f"treated as {self.treatment!r}")
        return (
            f"{self.count} unstable (imaginary) Gamma mode(s), lowest "
            f"{self.lowest_frequency_cm1:.1f} cm^-1: the structure is not a minimum of the "
            f"potential; the mode(s) were {fate}"
        )


def unstable_modes(
    force_constants, masses_amu: np.ndarray, treatment: str, floor: float
) -> UnstableModes:
    """The unstable modes of a crystal's `ForceConstants` under the model's inversion."""
    from dtnn_jax.physics import gamma_phonons

    inverse = force_constants.optical_pseudo_inverse(treatment, floor)
    phonons = gamma_phonons(force_constants.k_ev_per_a2, masses_amu)
    optical = phonons.frequencies_cm1[~phonons.acoustic]
    lowest = float(optical.min()) if optical.size else float("nan")
    return UnstableModes(inverse.n_negative, lowest, treatment)


def metal_verdict(
    formula: str, band_gap_ev: float = float("nan"), balanced: bool | None = None
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


def small_gap_verdict(eps_inf: float, band_gap_ev: float = float("nan")) -> tuple[bool, str]:
    """(likely metal, semimetal or gap < 0.5 eV by the eps_inf proxy?, why).

    A known band gap decides (the proxy is for crystals without one): never flagged then.
    """
    if math.isfinite(band_gap_ev) or not math.isfinite(eps_inf):
        return False, ""
    if eps_inf <= EPS_INF_SMALL_GAP:
        return False, ""
    return True, (
        f"predicted eps_inf {eps_inf:.1f} > {EPS_INF_SMALL_GAP:g}: likely a metal, a semimetal "
        f"or a gap < {SMALL_GAP_EV} eV, where a static eps means little"
    )


def crystal_cautions(
    formula: str,
    info,
    eps_inf: float = float("nan"),
    unstable: UnstableModes | None = None,
) -> list[str]:
    """The warnings of one predicted crystal (see the module docstring), possibly none.

    Args:
        formula: its reduced formula.
        info: what the input knew (``band_gap_ev``, ``charge_balanced``), a mapping.
        eps_inf: the predicted electronic eps_poly (NaN: not predicted).
        unstable: its `UnstableModes` with a physics ionic model, else None.
    """
    gap = info.get("band_gap_ev")
    gap = float("nan") if gap is None else float(gap)
    out = []
    metal, why = metal_verdict(formula, gap, info.get("charge_balanced"))
    if metal:
        out.append(f"likely a metal ({why}): a metal has no static dielectric tensor")
    else:
        small, why = small_gap_verdict(eps_inf, gap)
        if small:
            out.append(why)
    if unstable is not None and unstable.message():
        out.append(unstable.message())
    return out


def joined(*warnings: str | None) -> str | None:
    """Warnings joined into one message ("; "), or None if there are none."""
    kept = [w for w in warnings if w]
    return "; ".join(kept) if kept else None


@dataclasses.dataclass(frozen=True)
class Cautions:
    """One crystal's cautions: its warnings and, with a physics model, its unstable modes."""

    messages: list[str]
    unstable: UnstableModes | None = None


def prediction_cautions(model, crystals, prediction) -> list[Cautions]:
    """`Cautions` per crystal of a `Prediction` of ``model`` for ``crystals`` (the input pass
    results it was made from; failed inputs get none)."""
    physics = None
    if getattr(model, "physics_targets", ()):
        physics = model.bundle.targets[model.physics_targets[0]].config.physics
    electronic = prediction.mean.get("electronic")
    out = []
    for k, crystal in enumerate(crystals):
        if prediction.errors[k] is not None or crystal.structure is None:
            out.append(Cautions([]))
            continue
        unstable = None
        fc = prediction.force_constants[k] if prediction.force_constants else None
        if fc is not None and physics is not None:
            masses = np.array([site.specie.atomic_mass for site in crystal.structure], np.float64)
            unstable = unstable_modes(fc, masses, physics.treatment, physics.floor)
        eps_inf = float("nan") if electronic is None else float(np.trace(electronic[k]) / 3.0)
        out.append(
            Cautions(crystal_cautions(crystal.formula, crystal.info, eps_inf, unstable), unstable)
        )
    return out
