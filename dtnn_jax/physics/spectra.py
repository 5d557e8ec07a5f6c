"""The infrared dielectric function from Gamma phonons and Born charges (numpy, float64).

In the harmonic approximation with a damped oscillator per optical mode m (Gonze & Lee,
PRB 55, 10355 (1997), eq. 54, with a phenomenological damping gamma_m):

    eps(w)[a, b] = eps_inf[a, b] + sum_m S_m[a, b] / (w_m^2 - w^2 - i gamma_m w)

with w_m the TO frequency of mode m and ``S_m = (4 pi e^2 / Omega) Zm Zm^T`` its oscillator
strength, Zm the mode effective charge (`dtnn_jax.physics.phonons`; e / sqrt(amu)). The
modes, Zm and the units come from `gamma_phonons`; the one unit conversion of this module
is in `oscillators`: ``C / Omega * Zm Zm^T`` is in eV / (A^2 amu), the unit of w^2 of the
dynamical matrix, and ``* CM1_PER_SQRT_EV_PER_A2_AMU ** 2`` turns it into cm^-2, so every
frequency below (w, w_m, gamma) is in cm^-1. At w = 0 the mode sum is
``sum_m C / Omega * Zm Zm^T / w_m^2``, the static eps_ion of `gamma_phonons` (its
``contributions`` when no floor acts); eps'' = Im eps > 0 (the e^{-i w t} convention).

An ensemble of Born charges (one Z per member, the same K) gives the mean of the members'
strengths: eps(w) is linear in S_m, so that is the mean of the members' eps(w), and its
static limit the ensemble-mean eps_ion that `dtnn_jax.predict` reports.

Unstable modes (w_m^2 < 0) have no Lorentzian: they are left out (and listed). From eps(w):
normal-incidence reflectivity ``R = |(sqrt(eps) - 1) / (sqrt(eps) + 1)|^2`` and absorption
coefficient ``alpha = 4 pi w kappa`` (cm^-1; kappa = Im sqrt(eps)) along each principal axis,
and the LO frequencies for a wave vector q: the zeros of ``q . eps(w) . q`` without damping
(equivalently, the Gamma modes with the non-analytic term `nonanalytic_force_constants`
added to K, what phonopy's NAC does; tested against each other and against phonopy).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dtnn_jax.physics.dielectric import IONIC_PREFACTOR_EV_ANGSTROM
from dtnn_jax.physics.phonons import CM1_PER_SQRT_EV_PER_A2_AMU, gamma_phonons

DEFAULT_DAMPING_CM1 = 4.0
"""Default damping gamma of every mode (cm^-1): a typical room-temperature phonon linewidth
of a polar crystal (a few cm^-1); the harmonic model has none, so it is a free choice."""


@dataclasses.dataclass(frozen=True)
class Oscillators:
    """The Lorentz oscillators of a crystal's stable optical modes.

    Attributes:
        frequencies_cm1: [M] TO frequencies w_m (> 0), ascending.
        strengths_cm2: [M, 3, 3] oscillator strengths S_m (cm^-2), symmetric PSD.
        mode_index: [M] the index of each oscillator among the `GammaPhonons` modes.
        unstable_cm1: [U] the left-out imaginary modes (negative, as `gamma_phonons` signs
            them).
        n_atoms: N.
    """

    frequencies_cm1: np.ndarray  # [M]
    strengths_cm2: np.ndarray  # [M, 3, 3]
    mode_index: np.ndarray  # [M]
    unstable_cm1: np.ndarray  # [U]
    n_atoms: int

    @property
    def static_contributions(self) -> np.ndarray:
        """[M, 3, 3] each mode's part of the static eps_ion, S_m / w_m^2."""
        return self.strengths_cm2 / self.frequencies_cm1[:, None, None] ** 2


def oscillators(
    k: np.ndarray, masses_amu: np.ndarray, born_charges: np.ndarray, volume_A3: float
) -> Oscillators:
    """The oscillators of the stable optical Gamma modes of K with Born charges Z.

    Args:
        k: [3N, 3N] force constants (eV/A^2).
        masses_amu: [N].
        born_charges: [N, 3, 3] (e; first index the field direction), or [E, N, 3, 3] an
            ensemble: the strengths are then the members' mean.
        volume_A3: cell volume (A^3).
    """
    z = np.asarray(born_charges, np.float64)
    z = z[None] if z.ndim == 3 else z  # [E, N, 3, 3]
    strengths = None
    for member in z:
        ph = gamma_phonons(k, masses_amu, member, volume_A3)
        zm = ph.mode_charges_e_per_sqrt_amu  # [3N, 3] e / sqrt(amu)
        s = zm[:, :, None] * zm[:, None, :]  # [3N, 3, 3]
        strengths = s if strengths is None else strengths + s
    # the unit conversion: C / Omega * Zm Zm^T in eV / (A^2 amu) (a w^2 of D) -> cm^-2
    strengths = strengths / len(z) * IONIC_PREFACTOR_EV_ANGSTROM / float(volume_A3)
    strengths = strengths * CM1_PER_SQRT_EV_PER_A2_AMU**2
    stable = ~ph.acoustic & (ph.eigenvalues_ev_per_a2_amu > 0)
    return Oscillators(
        frequencies_cm1=ph.frequencies_cm1[stable],
        strengths_cm2=strengths[stable],
        mode_index=np.flatnonzero(stable),
        unstable_cm1=ph.frequencies_cm1[ph.imaginary],
        n_atoms=len(np.asarray(masses_amu).reshape(-1)),
    )


def dielectric_function(
    osc: Oscillators,
    eps_inf: np.ndarray,
    frequencies_cm1: np.ndarray,
    damping_cm1: float | np.ndarray = DEFAULT_DAMPING_CM1,
) -> np.ndarray:
    """eps(w) [F, 3, 3] complex at the frequencies [F] (cm^-1).

    Args:
        osc: the crystal's `Oscillators`.
        eps_inf: [3, 3] the electronic (clamped-ion) tensor.
        frequencies_cm1: [F] w >= 0 (cm^-1).
        damping_cm1: gamma, one for all modes or [M] per mode (cm^-1, >= 0).
    """
    w = np.asarray(frequencies_cm1, np.float64).reshape(-1)  # [F]
    gamma = np.broadcast_to(np.asarray(damping_cm1, np.float64), osc.frequencies_cm1.shape)
    if np.any(gamma < 0) or np.any(w < 0):
        raise ValueError("frequencies and damping must be >= 0 (cm^-1)")
    wm = osc.frequencies_cm1  # [M]
    denominator = wm[None] ** 2 - w[:, None] ** 2 - 1j * gamma[None] * w[:, None]  # [F, M]
    modes = np.einsum("fm,mab->fab", 1.0 / denominator, osc.strengths_cm2)  # [F, 3, 3]
    return np.asarray(eps_inf, np.float64)[None] + modes


def static_dielectric(osc: Oscillators, eps_inf: np.ndarray) -> np.ndarray:
    """eps(0) [3, 3] = eps_inf + sum_m S_m / w_m^2."""
    return np.asarray(eps_inf, np.float64) + osc.static_contributions.sum(axis=0)


def principal_axes(tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values [3] ascending, axes [3, 3] as columns) of a real symmetric 3x3 tensor."""
    t = np.asarray(tensor, np.float64)
    return np.linalg.eigh(0.5 * (t + t.T))


def along_axes(eps_w: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """[F, 3] the components u_a . eps(w) . u_a along the columns u_a of ``axes`` [3, 3]."""
    return np.einsum("ia,fij,ja->fa", axes, eps_w, axes)


def reflectivity(eps: np.ndarray) -> np.ndarray:
    """Normal-incidence reflectivity |(n - 1) / (n + 1)|^2, n = sqrt(eps) (Im eps >= 0)."""
    n = np.sqrt(np.asarray(eps, np.complex128))  # principal branch: Re n >= 0
    return np.abs((n - 1.0) / (n + 1.0)) ** 2


def absorption_coefficient_cm1(eps: np.ndarray, frequencies_cm1: np.ndarray) -> np.ndarray:
    """alpha = 4 pi w Im sqrt(eps) (cm^-1); ``eps`` [F, ...] at the frequencies [F]."""
    kappa = np.sqrt(np.asarray(eps, np.complex128)).imag
    w = np.asarray(frequencies_cm1, np.float64).reshape((-1,) + (1,) * (kappa.ndim - 1))
    return 4.0 * np.pi * w * kappa


def lo_frequencies(osc: Oscillators, eps_inf: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """LO frequencies (cm^-1) for a wave vector along ``direction`` [3]: the zeros of
    ``f(w^2) = q . eps(w) . q`` without damping, ascending.

    f rises monotonically in w^2 between consecutive poles (the TO modes with strength along
    q), from -inf to +inf, so each interval holds exactly one zero, and one more lies above
    the highest pole; modes with no strength along q are TO = LO and not returned.

    Raises:
        ValueError: q . eps_inf . q <= 0 (no LO mode is defined).
    """
    from scipy.optimize import brentq

    q = np.asarray(direction, np.float64)
    q = q / np.linalg.norm(q)
    e_inf = float(q @ np.asarray(eps_inf, np.float64) @ q)
    if not e_inf > 0:
        raise ValueError(f"q . eps_inf . q = {e_inf:.3g} <= 0: no LO frequency is defined")
    s = np.einsum("a,mab,b->m", q, osc.strengths_cm2, q)  # [M]
    x = osc.frequencies_cm1**2
    keep = s > 1e-8 * max(float(s.max(initial=0.0)), 1e-300)
    poles, weights = _merged(x[keep], s[keep])
    if len(poles) == 0:
        return np.zeros(0)

    def f(xx):
        return e_inf + np.sum(weights / (poles - xx))

    roots = []
    for i, lo in enumerate(poles):
        pad = 1e-12 * lo
        # above the last pole f >= e_inf / 2 > 0 at the upper end of this bracket
        hi = poles[i + 1] - pad if i + 1 < len(poles) else lo + 2.0 * weights.sum() / e_inf
        if f(lo + pad) >= 0:  # a pole too weak to resolve: its zero sits on it (LO = TO)
            roots.append(lo)
        elif f(hi) <= 0:
            roots.append(hi)
        else:
            roots.append(brentq(f, lo + pad, hi, xtol=1e-10, rtol=1e-14))
    return np.sqrt(np.asarray(roots))


def _merged(x: np.ndarray, s: np.ndarray, rtol: float = 1e-6):
    """Poles within rtol of each other (degenerate modes, split by round-off in K) merged at
    their strength-weighted mean, their weights summed."""
    order = np.argsort(x)
    x, s = x[order], s[order]
    groups: list[list[int]] = []
    for i, xi in enumerate(x):
        if groups and xi - x[groups[-1][0]] <= rtol * xi:
            groups[-1].append(i)
        else:
            groups.append([i])
    weights = np.array([s[g].sum() for g in groups])
    poles = np.array([np.sum(x[g] * s[g]) / s[g].sum() for g in groups])
    return poles, weights


def nonanalytic_force_constants(
    born_charges: np.ndarray, eps_inf: np.ndarray, volume_A3: float, direction: np.ndarray
) -> np.ndarray:
    """[3N, 3N] (eV/A^2) the non-analytic term of K at q -> 0 along ``direction``:

    ``K_na[(k, a), (l, b)] = C / Omega * (q . Z_k)_a (q . Z_l)_b / (q . eps_inf . q)``

    (Z first index the field direction). ``gamma_phonons(K + K_na, ...)`` then gives the LO
    modes, as phonopy's NAC does at Gamma.
    """
    q = np.asarray(direction, np.float64)
    q = q / np.linalg.norm(q)
    z = np.asarray(born_charges, np.float64)  # [N, 3, 3]
    qz = np.einsum("a,nab->nb", q, z).reshape(-1)  # [3N]
    e_inf = float(q @ np.asarray(eps_inf, np.float64) @ q)
    return IONIC_PREFACTOR_EV_ANGSTROM / float(volume_A3) * np.outer(qz, qz) / e_inf
