"""Infrared spectra of crystals with a physics model: eps(w), reflectivity, absorption, LO.

The model's ensemble gives eps_inf (the electronic tensor), each member's Born charges and
the potential's Gamma force constants K; `dtnn_jax.physics.spectra` turns them into Lorentz
oscillators (the members' mean strengths, so the static limit is the ``eps_total`` that
`dtnn_jax.predict` reports while every mode is stable) and

    eps(w) = eps_inf + sum_m S_m / (w_m^2 - w^2 - i gamma w)       (w, w_m, gamma in cm^-1).

Per crystal an `InfraredSpectrum` holds eps(w) in the Cartesian frame of the input, its
components along the principal axes of the static tensor eps(0) (fixed by symmetry for
orthorhombic and higher; for monoclinic and triclinic crystals the axes of eps(w) turn with
w, and these are the static ones), the normal-incidence reflectivity and absorption
coefficient along them, and the LO frequencies for a wave vector along each axis.

A one-atom crystal has no optical mode: eps(w) = eps_inf (said in ``notes`` and warned).
An unstable mode (imaginary frequency at the given geometry) has no Lorentzian: it is left
out, listed in ``notes`` and warned about; the static limit then differs from eps_total.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np

from dtnn_jax.physics.spectra import (
    DEFAULT_DAMPING_CM1,
    Oscillators,
    absorption_coefficient_cm1,
    along_axes,
    dielectric_function,
    lo_frequencies,
    oscillators,
    principal_axes,
    reflectivity,
    static_dielectric,
)


@dataclasses.dataclass(frozen=True)
class InfraredSpectrum:
    """The infrared response of one crystal.

    Attributes:
        id, source, formula: the crystal's names (as `dtnn_jax.predict` gives them).
        frequencies_cm1: [F] w (cm^-1).
        eps: [F, 3, 3] complex eps(w), Cartesian frame of the input.
        eps_inf: [3, 3] the electronic tensor.
        eps_static: [3, 3] eps(0) = eps_inf + the stable modes' sum.
        axes: [3, 3] the principal axes of eps_static (columns), ascending eigenvalue.
        eps_axes: [F, 3] complex eps(w) along each axis.
        reflectivity: [F, 3] normal-incidence reflectivity, light polarised along each axis.
        absorption_cm1: [F, 3] absorption coefficient alpha (cm^-1) along each axis.
        oscillators: the modes (TO frequencies, strengths, left-out unstable modes).
        lo_cm1: 3 arrays, the LO frequencies for q along each axis (cm^-1).
        damping_cm1: gamma used.
        notes: what the user should know (no optical modes, unstable modes left out).
    """

    id: str
    source: str
    formula: str
    frequencies_cm1: np.ndarray  # [F]
    eps: np.ndarray  # [F, 3, 3] complex
    eps_inf: np.ndarray  # [3, 3]
    eps_static: np.ndarray  # [3, 3]
    axes: np.ndarray  # [3, 3]
    eps_axes: np.ndarray  # [F, 3] complex
    reflectivity: np.ndarray  # [F, 3]
    absorption_cm1: np.ndarray  # [F, 3]
    oscillators: Oscillators
    lo_cm1: tuple[np.ndarray, ...]
    damping_cm1: float
    notes: tuple[str, ...] = ()

    @property
    def eps_static_axes(self) -> np.ndarray:
        """[3] the static tensor's principal values (ascending), axis by axis."""
        return np.einsum("ia,ij,ja->a", self.axes, self.eps_static, self.axes)


def default_grid_cm1(osc: Oscillators, eps_inf: np.ndarray, step_cm1: float = 0.5) -> np.ndarray:
    """[F] 0 .. 1.3 x the highest LO frequency (at least 200 cm^-1) in ``step_cm1`` steps."""
    top = 200.0
    for axis in np.eye(3):
        top = max(top, 1.3 * float(np.max(lo_frequencies(osc, eps_inf, axis), initial=0.0)))
    return np.arange(0.0, top + step_cm1, step_cm1)


def crystal_spectrum(
    structure,
    eps_inf: np.ndarray,
    born_members: np.ndarray,
    k_ev_per_a2: np.ndarray,
    frequencies_cm1: np.ndarray | None = None,
    damping_cm1: float = DEFAULT_DAMPING_CM1,
    names: tuple[str, str] = ("", ""),
) -> InfraredSpectrum:
    """The spectrum of one crystal from its eps_inf [3, 3], Born charges ([E,] N, 3, 3)
    and K [3N, 3N] (eV/A^2); the frequency grid defaults to `default_grid_cm1`."""
    masses = np.array([site.specie.atomic_mass for site in structure], np.float64)
    osc = oscillators(k_ev_per_a2, masses, born_members, structure.volume)
    notes = []
    if len(structure) == 1:
        notes.append("one atom in the cell: no optical modes, eps(w) = eps_inf")
    if len(osc.unstable_cm1):
        listed = ", ".join(f"{abs(w):.1f}i" for w in osc.unstable_cm1)
        notes.append(
            f"{len(osc.unstable_cm1)} unstable mode(s) at the given geometry ({listed} cm^-1) "
            "left out of the spectrum: its static limit then differs from eps_total"
        )
    w = default_grid_cm1(osc, eps_inf) if frequencies_cm1 is None else frequencies_cm1
    w = np.asarray(w, np.float64).reshape(-1)
    eps = dielectric_function(osc, eps_inf, w, damping_cm1)  # [F, 3, 3]
    eps_static = static_dielectric(osc, eps_inf)
    _, axes = principal_axes(eps_static)
    per_axis = along_axes(eps, axes)  # [F, 3]
    return InfraredSpectrum(
        id=names[0],
        source=names[1],
        formula=structure.composition.reduced_formula,
        frequencies_cm1=w,
        eps=eps,
        eps_inf=np.asarray(eps_inf, np.float64),
        eps_static=eps_static,
        axes=axes,
        eps_axes=per_axis,
        reflectivity=reflectivity(per_axis),
        absorption_cm1=absorption_coefficient_cm1(per_axis, w),
        oscillators=osc,
        lo_cm1=tuple(lo_frequencies(osc, eps_inf, axes[:, a]) for a in range(3)),
        damping_cm1=float(damping_cm1),
        notes=tuple(notes),
    )


def _physics_model(model):
    from dtnn_jax.inference.ionic import physics_model

    return physics_model(model, "an infrared spectrum")


def infrared_spectra(
    structures,
    frequencies_cm1=None,
    model=None,
    damping_cm1: float = DEFAULT_DAMPING_CM1,
    errors: str = "raise",
) -> list[InfraredSpectrum | None]:
    """`InfraredSpectrum` of each crystal (None for a failed input with ``errors="nan"``).

    Args:
        structures: as `dtnn_jax.predict` takes them.
        frequencies_cm1: [F] the grid (cm^-1); None: `default_grid_cm1` per crystal.
        model: a physics `DielectricModel`, a bundle name or directory (default: shipped).
        damping_cm1: gamma of every mode (cm^-1).
        errors: "raise" (one `StructureInputError` naming every bad input) or "nan".
    """
    from dtnn_jax.io import StructureInputError

    model = _physics_model(model)
    crystals = model.prepare(structures)
    failed = [(c.source, c.error) for c in crystals if c.error]
    if failed and errors == "raise":
        lines = "; ".join(f"{s}: {e}" for s, e in failed)
        raise StructureInputError(f"{len(failed)} of {len(crystals)} inputs", lines)
    return _spectra(model, crystals, frequencies_cm1, damping_cm1)


def _spectra(model, crystals, frequencies_cm1, damping_cm1) -> list[InfraredSpectrum | None]:
    """One model pass over prepared crystals; notes are warned, failed inputs give None."""
    prediction = model.predict_inputs(crystals)
    out: list[InfraredSpectrum | None] = []
    for k, crystal in enumerate(crystals):
        if crystal.error:
            out.append(None)
            continue
        spectrum = crystal_spectrum(
            crystal.structure,
            prediction.mean["electronic"][k],
            prediction.born_charge_members[k],
            prediction.force_constants[k].k_ev_per_a2,
            frequencies_cm1,
            damping_cm1,
            names=(crystal.id, crystal.source),
        )
        for note in spectrum.notes:
            warnings.warn(f"{crystal.source}: {note}", stacklevel=3)
        out.append(spectrum)
    return out


def infrared_dielectric(
    structures, frequencies_cm1, model=None, damping_cm1: float = DEFAULT_DAMPING_CM1
) -> list[np.ndarray]:
    """One complex eps(w) [n_freq, 3, 3] per crystal (Cartesian frame of the input).

    Args:
        structures: pymatgen Structures, ASE Atoms or structure files.
        frequencies_cm1: [n_freq] w (cm^-1, >= 0).
        model: a physics model (default: the shipped `dtnn-physics-nequixpft-petousis2017`).
        damping_cm1: the damping gamma of every mode (cm^-1).
    """
    spectra = infrared_spectra(structures, frequencies_cm1, model, damping_cm1)
    return [s.eps for s in spectra]


def write_spectrum(spectrum: InfraredSpectrum, directory: str | os.PathLike) -> list[Path]:
    """Writes ``<id>.csv`` (w, eps' and eps'' and R per principal axis), ``<id>.json``
    (axes, eps_inf, eps_static, modes, LO frequencies, notes) and ``<id>.png`` (eps'', R and
    the mode sticks) into ``directory``; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = safe_name(spectrum.id or spectrum.formula)
    paths = [directory / f"{stem}.csv", directory / f"{stem}.json", directory / f"{stem}.png"]
    with open(paths[0], "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        head = ["frequency_cm1"]
        for a in (1, 2, 3):
            head += [f"eps_real_{a}", f"eps_imag_{a}"]
        head += [f"R_{a}" for a in (1, 2, 3)] + [f"alpha_cm1_{a}" for a in (1, 2, 3)]
        writer.writerow(head)
        for i, w in enumerate(spectrum.frequencies_cm1):
            row = [f"{w:.4f}"]
            for a in range(3):
                e = spectrum.eps_axes[i, a]
                row += [f"{e.real:.6g}", f"{e.imag:.6g}"]
            row += [f"{x:.6g}" for x in spectrum.reflectivity[i]]
            row += [f"{x:.6g}" for x in spectrum.absorption_cm1[i]]
            writer.writerow(row)
    osc = spectrum.oscillators
    meta = {
        "id": spectrum.id,
        "formula": spectrum.formula,
        "axes_columns": spectrum.axes.tolist(),
        "eps_inf": spectrum.eps_inf.tolist(),
        "eps_static": spectrum.eps_static.tolist(),
        "damping_cm1": spectrum.damping_cm1,
        "to_cm1": osc.frequencies_cm1.tolist(),
        "mode_eps_static": [float(np.trace(c) / 3) for c in osc.static_contributions],
        "lo_cm1_per_axis": [lo.tolist() for lo in spectrum.lo_cm1],
        "unstable_cm1": osc.unstable_cm1.tolist(),
        "notes": list(spectrum.notes),
    }
    paths[1].write_text(json.dumps(meta, indent=1) + "\n")
    plot_spectrum(spectrum, paths[2])
    return paths


def safe_name(name: str) -> str:
    """A file stem from a crystal id (path separators and '#' replaced)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "crystal"


def plot_spectrum(spectrum: InfraredSpectrum, path: str | os.PathLike) -> None:
    """eps'' per axis with the modes as sticks (height: their part of eps_poly(0)), and R."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = spectrum.frequencies_cm1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    colours = ("tab:blue", "tab:orange", "tab:green")
    for a in range(3):
        label = f"axis {a + 1} (eps(0) = {np.real(spectrum.eps_static_axes[a]):.2f})"
        top.plot(w, spectrum.eps_axes[:, a].imag, color=colours[a], lw=1.2, label=label)
        bottom.plot(w, spectrum.reflectivity[:, a], color=colours[a], lw=1.2)
    osc = spectrum.oscillators
    if len(osc.frequencies_cm1):
        heights = np.trace(osc.static_contributions, axis1=1, axis2=2) / 3.0
        peak = max(float(np.abs(spectrum.eps_axes.imag).max()), 1e-12)
        scale = 0.9 * peak / max(float(heights.max()), 1e-12)
        top.vlines(osc.frequencies_cm1, 0, heights * scale, color="k", lw=1.0, label="TO modes")
    top.set_ylabel("eps''")
    top.set_yscale("symlog", linthresh=1e-2)
    top.legend(fontsize=7)
    title = f"{spectrum.formula} ({spectrum.id})" if spectrum.id else spectrum.formula
    top.set_title(f"{title}, damping {spectrum.damping_cm1:g} cm$^{{-1}}$", fontsize=9)
    bottom.set_ylabel("reflectivity R")
    bottom.set_ylim(0, 1.02)
    bottom.set_xlabel("frequency (cm$^{-1}$)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_spectra(
    model, inputs, directory: str | os.PathLike, damping_cm1: float = DEFAULT_DAMPING_CM1, **prepare
) -> list[tuple[str, str | None]]:
    """`dtnn predict --spectrum DIR`: `write_spectrum` for every crystal of ``inputs``.

    Args:
        model: a physics `DielectricModel`.
        inputs: as `dtnn_jax.predict` takes them.
        directory: where the files go.
        damping_cm1: gamma (cm^-1).
        prepare: options of the input pass (``max_atoms``, ``allow_isolated``).

    Returns:
        (source, None) per crystal written, (source, reason) per input that failed; notes
        (one atom, unstable modes) go to warnings.
    """
    from dtnn_jax.inputs import prepare_inputs

    model = _physics_model(model)
    crystals = list(prepare_inputs(inputs, model.encoder, **prepare))
    done = []
    for crystal, spectrum in zip(
        crystals, _spectra(model, crystals, None, damping_cm1), strict=True
    ):
        if spectrum is not None:
            write_spectrum(spectrum, directory)
        done.append((crystal.source, crystal.error))
    return done
