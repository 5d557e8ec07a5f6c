"""eps_ion from K and Z: a hand-derived cell, the projection, treatments, the jnp version."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtnn_jax.physics import (
    COULOMB_EV_ANGSTROM,
    IONIC_PREFACTOR_EV_ANGSTROM,
    TREATMENTS,
    ionic_dielectric,
    ionic_dielectric_jnp,
    optical_pseudo_inverse,
)
from dtnn_jax.physics.dielectric import project_translations, translation_basis


def two_atom_k(springs_ev_per_a2) -> np.ndarray:
    """K of two atoms joined by springs A = diag(k) (eV/A^2): [[A, -A], [-A, A]]."""
    a = np.diag(springs_ev_per_a2)
    return np.block([[a, -a], [-a, a]])


def random_k(rng, n_atoms: int, negative: int = 0) -> np.ndarray:
    """A translation-invariant symmetric K with ``negative`` negative optical modes."""
    q = np.linalg.svd(translation_basis(n_atoms), full_matrices=True)[0][:, 3:]
    lam = rng.uniform(0.5, 8.0, 3 * n_atoms - 3)
    lam[:negative] *= -0.1
    v = np.linalg.qr(rng.normal(size=(3 * n_atoms - 3,) * 2))[0]
    return (q @ v) @ np.diag(lam) @ (q @ v).T


def asr_charges(rng, n_atoms: int) -> np.ndarray:
    z = rng.normal(size=(n_atoms, 3, 3))
    return z - z.mean(axis=0)


def test_prefactor():
    assert IONIC_PREFACTOR_EV_ANGSTROM == pytest.approx(4 * math.pi * 14.399645)
    assert COULOMB_EV_ANGSTROM == 14.399645


def test_two_atom_cell_by_hand():
    """Two atoms, springs A = diag(k) between them, charges Z_1 = Q = -Z_2.

    The one optical mode per direction is the relative displacement u = (v, -v) / sqrt(2),
    eigenvalue 2A, so Kinv = (1/4) [[A^-1, -A^-1], [-A^-1, A^-1]] and
    Zs^T Kinv Zs = (1/4) * 4 Q A^-1 Q^T: eps_ion = C / Omega * Q A^-1 Q^T. For Q = q I and an
    isotropic spring k it is C q^2 / (Omega k): the Born formula 4 pi Z^2 e^2 / (Omega mu w^2)
    with mu w^2 = k, masses cancelled.
    """
    volume = 45.0
    q, k = 1.1, 5.0
    z = np.stack([q * np.eye(3), -q * np.eye(3)])
    eps = ionic_dielectric(z, optical_pseudo_inverse(two_atom_k([k] * 3)).kinv_a2_per_ev, volume)
    expected = IONIC_PREFACTOR_EV_ANGSTROM * q**2 / (volume * k)
    np.testing.assert_allclose(eps, expected * np.eye(3), rtol=1e-12, atol=1e-14)
    assert expected == pytest.approx(0.97312, abs=1e-5)  # 4 pi 14.4 * 1.21 / 225
    # anisotropic springs and a general charge tensor
    rng = np.random.default_rng(0)
    springs = np.array([2.0, 5.0, 11.0])
    charge = rng.normal(size=(3, 3))
    inv = optical_pseudo_inverse(two_atom_k(springs))
    np.testing.assert_allclose(inv.eigenvalues_ev_per_a2, np.sort(2 * springs))
    eps = ionic_dielectric(np.stack([charge, -charge]), inv.kinv_a2_per_ev, volume)
    expected = IONIC_PREFACTOR_EV_ANGSTROM / volume * charge @ np.diag(1 / springs) @ charge.T
    np.testing.assert_allclose(eps, expected, rtol=1e-12)


def test_one_atom_cell_gives_zero():
    inv = optical_pseudo_inverse(np.zeros((3, 3)))
    assert inv.kinv_a2_per_ev.shape == (3, 3) and np.all(inv.kinv_a2_per_ev == 0)
    assert inv.eigenvalues_ev_per_a2.shape == (0,) and inv.n_negative == 0
    eps = ionic_dielectric(np.eye(3)[None] * 2.0, inv.kinv_a2_per_ev, 12.0)
    assert np.all(eps == 0)


def test_translations_are_projected_out_and_asr_imposed():
    """Kinv annihilates uniform translations, so Z -> Z + c (one c for all atoms, an ASR
    violation) leaves eps_ion unchanged: only Z - mean(Z) enters."""
    rng = np.random.default_rng(1)
    n = 4
    k = random_k(rng, n)
    k_noisy = k + 1e-3 * rng.normal(size=k.shape)  # neither symmetric nor ASR-exact
    for kk in (k, k_noisy):
        inv = optical_pseudo_inverse(kk)
        np.testing.assert_allclose(inv.kinv_a2_per_ev @ translation_basis(n), 0, atol=1e-12)
        np.testing.assert_allclose(inv.kinv_a2_per_ev, inv.kinv_a2_per_ev.T, atol=1e-14)
    z = asr_charges(rng, n)
    shifted = z + rng.normal(size=(3, 3))  # breaks sum_k Z_k = 0
    assert np.abs(shifted.sum(axis=0)).max() > 0.1
    kinv = optical_pseudo_inverse(k).kinv_a2_per_ev
    np.testing.assert_allclose(
        ionic_dielectric(shifted, kinv, 60.0), ionic_dielectric(z, kinv, 60.0), atol=1e-12
    )
    # with exact K and ASR charges it is the plain pseudo-inverse
    np.testing.assert_allclose(kinv, np.linalg.pinv(k, rcond=1e-10, hermitian=True), atol=1e-10)


def test_treatments_of_negative_modes():
    rng = np.random.default_rng(2)
    k = random_k(rng, 3, negative=2)
    lam = optical_pseudo_inverse(k).eigenvalues_ev_per_a2
    z = asr_charges(rng, 3)
    for treatment in TREATMENTS:
        inv = optical_pseudo_inverse(k, treatment, floor=0.01)
        assert inv.n_negative == 2 and list(inv.negative) == [True, True] + [False] * 4
        np.testing.assert_allclose(
            inv.kinv_a2_per_ev, (inv.modes * inv.weights_a2_per_ev) @ inv.modes.T, atol=1e-12
        )
        eps_eig = np.linalg.eigvalsh(ionic_dielectric(z, inv.kinv_a2_per_ev, 50.0))
        if treatment != "signed":  # PSD by construction
            assert eps_eig.min() > -1e-12
    drop = optical_pseudo_inverse(k, "drop_negative").weights_a2_per_ev
    absolute = optical_pseudo_inverse(k, "abs").weights_a2_per_ev
    signed = optical_pseudo_inverse(k, "signed", floor=0.0).weights_a2_per_ev
    np.testing.assert_allclose(drop, np.where(lam < 0, 0, 1 / lam))
    np.testing.assert_allclose(absolute, 1 / np.abs(lam))
    np.testing.assert_allclose(signed, 1 / lam)
    with pytest.raises(ValueError, match="treatment"):
        optical_pseudo_inverse(k, "clip")


def test_floor():
    """A soft positive mode (0.001 eV/A^2) enters with 1 / floor, not 1 / 0.001."""
    k = two_atom_k([0.0005, 5.0, 5.0])  # eigenvalues 2k: 0.001, 10, 10
    inv = optical_pseudo_inverse(k, "drop_negative", floor=0.01)
    np.testing.assert_allclose(inv.weights_a2_per_ev, [100.0, 0.1, 0.1])
    assert not inv.negative.any()


def test_projection_helper_imposes_sum_rule():
    rng = np.random.default_rng(3)
    k = rng.normal(size=(9, 9))
    p = project_translations(k)
    np.testing.assert_allclose(p.reshape(9, 3, 3).sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(p, p.T, atol=1e-14)


def test_jnp_version_matches_and_differentiates():
    rng = np.random.default_rng(4)
    ks = [random_k(rng, 3), random_k(rng, 3, negative=1)]
    kinv = np.stack([optical_pseudo_inverse(k).kinv_a2_per_ev for k in ks])  # [2, 9, 9]
    z = np.stack([asr_charges(rng, 3), asr_charges(rng, 3)])  # [2, 3, 3, 3]
    volume = np.array([40.0, 70.0])
    expected = np.stack([ionic_dielectric(z[i], kinv[i], volume[i]) for i in range(2)])
    with jax.enable_x64(True):
        got = ionic_dielectric_jnp(jnp.asarray(z), jnp.asarray(kinv), jnp.asarray(volume))
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)

        def loss(charges):
            return jnp.sum(ionic_dielectric_jnp(charges, kinv, volume) ** 2)

        grad = jax.grad(loss)(jnp.asarray(z))
        assert grad.shape == z.shape and bool(jnp.all(jnp.isfinite(grad)))
    # float32 in, float32 out (a loss on predicted charges)
    got32 = ionic_dielectric_jnp(jnp.asarray(z, jnp.float32), kinv.astype(np.float32), volume)
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got32), expected, rtol=1e-4)
