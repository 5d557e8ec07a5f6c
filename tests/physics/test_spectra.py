"""The infrared dielectric function: static limit, ensembles, reflectivity, LO frequencies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtnn_jax.physics import gamma_phonons
from dtnn_jax.physics.spectra import (
    absorption_coefficient_cm1,
    along_axes,
    dielectric_function,
    lo_frequencies,
    nonanalytic_force_constants,
    oscillators,
    principal_axes,
    reflectivity,
    static_dielectric,
)
from tests.physics.test_dielectric import asr_charges, random_k, two_atom_k


def _crystal(seed: int, n: int = 4, negative: int = 0):
    rng = np.random.default_rng(seed)
    k = random_k(rng, n, negative=negative)
    masses = rng.uniform(5.0, 150.0, n)
    z = asr_charges(rng, n)
    a = rng.normal(size=(3, 3))
    eps_inf = np.eye(3) * 2.0 + 0.2 * (a @ a.T)
    return k, masses, z, eps_inf, 60.0


def test_static_limit_is_eps_inf_plus_the_mode_sum():
    """eps(w -> 0) = eps_inf + eps_ion of gamma_phonons (no floor acts: all modes stable)."""
    k, masses, z, eps_inf, volume = _crystal(0)
    osc = oscillators(k, masses, z, volume)
    ph = gamma_phonons(k, masses, z, volume)
    assert osc.frequencies_cm1.min() > 20.0 and len(osc.frequencies_cm1) == 9
    eps0 = dielectric_function(osc, eps_inf, [0.0])[0]
    np.testing.assert_allclose(eps0.imag, 0.0, atol=1e-14)
    np.testing.assert_allclose(eps0.real, eps_inf + ph.ionic_dielectric, rtol=1e-10)
    np.testing.assert_allclose(static_dielectric(osc, eps_inf), eps0.real, rtol=1e-12)
    # far above every mode only the electrons respond
    np.testing.assert_allclose(dielectric_function(osc, eps_inf, [1e7])[0].real, eps_inf, atol=1e-5)


def test_an_ensemble_gives_the_mean_of_its_members_spectra():
    k, masses, _, eps_inf, volume = _crystal(1)
    rng = np.random.default_rng(5)
    members = np.stack([asr_charges(rng, 4) for _ in range(3)])  # [3, N, 3, 3]
    w = np.linspace(0.0, 1500.0, 31)
    mean = dielectric_function(oscillators(k, masses, members, volume), eps_inf, w)
    each = [dielectric_function(oscillators(k, masses, z, volume), eps_inf, w) for z in members]
    np.testing.assert_allclose(mean, np.mean(each, axis=0), rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), damping=st.floats(0.5, 50.0))
def test_reflectivity_in_unit_interval_and_loss_positive(seed, damping):
    k, masses, z, eps_inf, volume = _crystal(seed, n=3)
    osc = oscillators(k, masses, z, volume)
    w = np.linspace(0.0, 2500.0, 400)
    eps = dielectric_function(osc, eps_inf, w, damping)
    _, axes = principal_axes(static_dielectric(osc, eps_inf))
    per_axis = along_axes(eps, axes)  # [F, 3]
    r = reflectivity(per_axis)
    assert np.all(r >= 0.0) and np.all(r <= 1.0)
    assert np.all(per_axis.imag >= -1e-12)  # absorption, never gain
    assert np.all(absorption_coefficient_cm1(per_axis, w) >= -1e-9)
    # a passive medium: eps(w) - eps(w)^H is anti-Hermitian with a PSD imaginary part
    loss = (eps - np.conj(np.swapaxes(eps, 1, 2))) / 2j
    assert np.linalg.eigvalsh(loss).min() > -1e-9


def test_lo_frequencies_are_the_nonanalytic_modes():
    """Zeros of q . eps(w) . q == Gamma modes of K + K_na (phonopy's NAC), for any q."""
    k, masses, z, eps_inf, volume = _crystal(2)
    osc = oscillators(k, masses, z, volume)
    for q in ([1, 0, 0], [0, 0, 1], [0.3, -0.5, 0.8]):
        lo = lo_frequencies(osc, eps_inf, q)
        nac = gamma_phonons(k + nonanalytic_force_constants(z, eps_inf, volume, q), masses)
        optical = np.sort(nac.frequencies_cm1[~nac.acoustic])
        assert len(lo) == 9  # no degeneracy in a random crystal: every mode shifts
        np.testing.assert_allclose(lo, optical, rtol=1e-7)
        # each LO lies above its TO (interlaced poles and zeros)
        assert np.all(lo >= osc.frequencies_cm1 - 1e-9)


def test_cubic_diatomic_lyddane_sachs_teller_and_equal_axes():
    """Rock-salt-like: one triply degenerate TO, w_LO^2 / w_TO^2 = eps_0 / eps_inf, and the
    three principal axes carry the same spectrum."""
    q, masses, volume = 1.2, [24.3, 16.0], 19.0
    z = np.stack([q * np.eye(3), -q * np.eye(3)])
    eps_inf = 3.0 * np.eye(3)
    osc = oscillators(two_atom_k([6.0] * 3), masses, z, volume)
    eps0 = static_dielectric(osc, eps_inf)
    (w_to,) = set(np.round(osc.frequencies_cm1, 9))
    for direction in ([1, 0, 0], [1, 1, 1]):
        (w_lo,) = lo_frequencies(osc, eps_inf, direction)
        assert w_lo**2 / w_to**2 == pytest.approx(eps0[0, 0] / 3.0, rel=1e-9)
    _values, axes = principal_axes(eps0)
    per_axis = along_axes(dielectric_function(osc, eps_inf, np.linspace(1, 900, 50)), axes)
    np.testing.assert_allclose(per_axis, per_axis[:, :1].repeat(3, 1), rtol=1e-10)
    # R = 1 between TO and LO without damping (the reststrahlen band)
    r = reflectivity(dielectric_function(osc, eps_inf, [0.5 * (w_to + w_lo)], 0.0)[0, 0, 0])
    assert r == pytest.approx(1.0, abs=1e-12)


def test_unstable_modes_are_left_out_and_listed():
    k, masses, z, _eps_inf, volume = _crystal(3, negative=2)
    osc = oscillators(k, masses, z, volume)
    assert len(osc.unstable_cm1) == 2 and np.all(osc.unstable_cm1 < 0)
    assert len(osc.frequencies_cm1) == 7 and np.all(osc.frequencies_cm1 > 0)


def test_one_atom_cell_has_no_oscillators():
    osc = oscillators(np.zeros((3, 3)), [63.5], np.zeros((1, 3, 3)), 11.8)
    assert len(osc.frequencies_cm1) == 0
    eps = dielectric_function(osc, 2.0 * np.eye(3), [0.0, 100.0])
    np.testing.assert_allclose(eps, np.broadcast_to(2.0 * np.eye(3), (2, 3, 3)))
    assert len(lo_frequencies(osc, 2.0 * np.eye(3), [1, 0, 0])) == 0
