"""Gamma phonons: frequencies, the sign convention, mode charges and eps_ion per mode."""

from __future__ import annotations

import numpy as np
import pytest

from dtnn_jax.physics import (
    CM1_PER_SQRT_EV_PER_A2_AMU,
    IONIC_PREFACTOR_EV_ANGSTROM,
    TREATMENTS,
    gamma_phonons,
    ionic_dielectric,
    optical_pseudo_inverse,
)
from tests.physics.test_dielectric import asr_charges, random_k, two_atom_k


def test_conversion_constant():
    assert CM1_PER_SQRT_EV_PER_A2_AMU == pytest.approx(521.47, abs=0.01)


def test_diatomic_cell_by_hand():
    """w^2 = k (1/m1 + 1/m2) for each direction; the TO mode carries all of eps_ion."""
    k, m1, m2, q, volume = 5.0, 22.99, 35.45, 1.1, 45.0
    ph = gamma_phonons(
        two_atom_k([k] * 3), [m1, m2], np.stack([q * np.eye(3), -q * np.eye(3)]), volume
    )
    assert list(ph.acoustic) == [True] * 3 + [False] * 3
    assert np.all(ph.frequencies_cm1[:3] == 0)
    expected = np.sqrt(k * (1 / m1 + 1 / m2)) * CM1_PER_SQRT_EV_PER_A2_AMU
    np.testing.assert_allclose(ph.frequencies_cm1[3:], expected, rtol=1e-12)
    # |Zm|^2 = q^2 / mu per mode
    mu = m1 * m2 / (m1 + m2)
    np.testing.assert_allclose(ph.ir_activity_e2_per_amu[3:], q**2 / mu, rtol=1e-12)
    np.testing.assert_allclose(ph.ir_activity_e2_per_amu[:3], 0, atol=1e-14)
    eps = IONIC_PREFACTOR_EV_ANGSTROM * q**2 / (volume * k)
    np.testing.assert_allclose(ph.ionic_dielectric, eps * np.eye(3), rtol=1e-10, atol=1e-14)
    # eigenvectors orthonormal, acoustic = mass-weighted translations
    np.testing.assert_allclose(ph.eigenvectors.T @ ph.eigenvectors, np.eye(6), atol=1e-12)


def test_negative_eigenvalue_is_a_negative_frequency():
    """Sign convention: w^2 < 0 (an unstable mode) is reported as a negative frequency."""
    ph = gamma_phonons(two_atom_k([-0.5, 4.0, 4.0]), [10.0, 10.0])
    assert ph.imaginary.sum() == 1
    w2 = -0.5 * (2 / 10.0)
    assert ph.frequencies_cm1[3] == pytest.approx(-np.sqrt(-w2) * CM1_PER_SQRT_EV_PER_A2_AMU)
    assert ph.frequencies_cm1[4] > 0 and ph.mode_charges_e_per_sqrt_amu is None


@pytest.mark.parametrize("treatment", TREATMENTS)
def test_mode_contributions_sum_to_eps_ion(treatment):
    """For every treatment: sum over modes = ionic_dielectric(Z, phonons' Kinv)."""
    rng = np.random.default_rng(0)
    n = 4
    k = random_k(rng, n, negative=2)
    masses = rng.uniform(1.0, 200.0, n)
    z = asr_charges(rng, n) + 0.3  # an ASR violation: the projection removes it
    ph = gamma_phonons(k, masses, z, 55.0, treatment=treatment, floor_cm1=5.0)
    assert ph.imaginary.sum() == 2
    np.testing.assert_allclose(
        ph.contributions.sum(axis=0), ionic_dielectric(z, ph.kinv_a2_per_ev, 55.0), atol=1e-12
    )
    if treatment == "drop_negative":
        assert np.all(ph.contributions[ph.imaginary] == 0)


@pytest.mark.parametrize("treatment", TREATMENTS)
def test_masses_cancel_without_negative_modes(treatment):
    """All optical modes positive, above the floors: the mode sum equals eps_ion from the
    optical pseudo-inverse of K, whatever the masses (the same treatment on both)."""
    rng = np.random.default_rng(1)
    n = 5
    k = random_k(rng, n)
    z = asr_charges(rng, n) + rng.normal(size=(3, 3))  # ASR violated
    eps = ionic_dielectric(z, optical_pseudo_inverse(k, treatment).kinv_a2_per_ev, 80.0)
    for masses in (np.full(n, 16.0), rng.uniform(1.0, 200.0, n)):
        ph = gamma_phonons(k, masses, z, 80.0, treatment=treatment)
        np.testing.assert_allclose(ph.contributions.sum(axis=0), eps, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ph.kinv_a2_per_ev, optical_pseudo_inverse(k).kinv_a2_per_ev)


def test_masses_cancel_with_negative_modes_for_the_exact_inverse():
    """'signed' with zero floors: both are generalised inverses of the projected K."""
    rng = np.random.default_rng(2)
    n = 3
    k = random_k(rng, n, negative=1)
    z = asr_charges(rng, n)
    exact = optical_pseudo_inverse(k, "signed", floor=0.0).kinv_a2_per_ev
    ph = gamma_phonons(k, rng.uniform(1, 100, n), z, 30.0, treatment="signed", floor_cm1=0.0)
    np.testing.assert_allclose(
        ph.contributions.sum(axis=0), ionic_dielectric(z, exact, 30.0), rtol=1e-9, atol=1e-12
    )


def test_one_atom_cell():
    ph = gamma_phonons(np.zeros((3, 3)), [63.5], 2 * np.eye(3)[None], 12.0)
    assert np.all(ph.acoustic) and np.all(ph.frequencies_cm1 == 0)
    assert np.all(ph.contributions == 0) and np.all(ph.kinv_a2_per_ev == 0)
