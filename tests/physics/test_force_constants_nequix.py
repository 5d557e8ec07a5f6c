"""Force constants of Nequix-OAM-1-PFT in float64: finite differences, symmetry, batching.

One compiled float64 force-constant pass (the shape of `TEST_BUDGET`) serves every test of
the module, and of ``test_cache.py``; the finite differences use the encoder's own forward
pass (``encoder.forward``), so they also check that the Hessian's energy function
(``nequix_forward(..., contract=True)``) is Nequix's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtnn_jax.encoder import get_encoder
from dtnn_jax.graph import pad_to_bucket
from dtnn_jax.physics.force_constants import (
    crystal_graphs,
    encoder_energy_fn,
    encoder_params,
    force_constants,
    precision,
)
from dtnn_jax.physics.symmetry import symmetry_map
from tests.physics.conftest import TEST_BUDGET

ENCODER = "nequix-oam-1-pft"
STEP_ANGSTROM = 1e-4
# central differences at h = 1e-4 A in float64: truncation ~ h^2/6 * d^3F ~ 1e-7 eV/A^2
FD_TOL_EV_PER_A2 = 1e-5


@pytest.fixture(scope="module")
def crystals(cu, nacl_rattled, sio2_rattled, caf2):
    return [sio2_rattled, cu, caf2, nacl_rattled]  # mixed sizes, not sorted


@pytest.fixture(scope="module")
def batch_fc(crystals, tmp_path_factory):
    """Force constants of all test crystals in one batch (float64, every atom displaced)."""
    return force_constants(
        crystals,
        ENCODER,
        dtype="float64",
        cache_dir=tmp_path_factory.mktemp("fc"),
        symmetry=False,
        budget=TEST_BUDGET,
    )


@pytest.fixture(scope="module")
def reference_forces(crystals):
    """f(displacement [n_node, 3]) -> forces [n_node, 3] of the padded batch, float64, by
    ``encoder.forward`` (not the Hessian's energy function)."""
    encoder = get_encoder(ENCODER)
    reference = encoder_energy_fn(encoder, reference=True)
    graphs = crystal_graphs(crystals, encoder, "float64")
    batch = pad_to_bucket(graphs, TEST_BUDGET)

    @jax.jit
    def forces(params, g, displacement):
        def total(x):
            return jnp.sum(reference(params, g._replace(nodes={**g.nodes, "positions": x})))

        x = g.nodes["positions"] + displacement
        return total(x), -jax.grad(total)(x)

    def run(displacement):
        with precision("float64"):
            params = encoder_params(encoder, "float64")
            energy, f = forces(params, batch, jnp.asarray(displacement, jnp.float64))
            return float(energy), np.asarray(f)

    return batch, run


def _offsets(crystals):
    return np.concatenate([[0], np.cumsum([len(s) for s in crystals])])


def test_k_equals_central_differences_of_forces(crystals, batch_fc, reference_forces):
    """K = -dF/dx by central differences of the reference forces, every crystal at once
    (one displacement moves atom a of every crystal: they do not interact)."""
    batch, forces = reference_forces
    offsets = _offsets(crystals)
    n_node = batch.nodes["positions"].shape[0]
    m = max(len(s) for s in crystals)
    fd = [np.zeros((3 * len(s), 3 * len(s))) for s in crystals]
    for a in range(m):
        for d in range(3):
            step = np.zeros((n_node, 3))
            for g, s in enumerate(crystals):
                if a < len(s):
                    step[offsets[g] + a, d] = STEP_ANGSTROM
            df = (forces(step)[1] - forces(-step)[1]) / (2 * STEP_ANGSTROM)  # [n_node, 3]
            for g, s in enumerate(crystals):
                if a < len(s):
                    fd[g][:, 3 * a + d] = -df[offsets[g] : offsets[g + 1]].reshape(-1)
    for g, fc in enumerate(batch_fc):
        assert fc.k_ev_per_a2.dtype == np.float64
        np.testing.assert_allclose(fc.k_ev_per_a2, fd[g], atol=FD_TOL_EV_PER_A2)
    assert max(np.abs(fc.k_ev_per_a2).max() for fc in batch_fc) > 1.0  # K has teeth


def test_forces_and_energies_match_the_encoder(crystals, batch_fc, reference_forces):
    batch, forces = reference_forces
    energy, f = forces(np.zeros_like(batch.nodes["positions"]))
    offsets = _offsets(crystals)
    for g, fc in enumerate(batch_fc):
        np.testing.assert_allclose(fc.forces_ev_per_a, f[offsets[g] : offsets[g + 1]], atol=1e-9)
    np.testing.assert_allclose(sum(fc.energy_ev for fc in batch_fc), energy, rtol=1e-12)
    assert max(fc.max_force_ev_per_a for fc in batch_fc) > 0.1  # rattled: real forces


def test_k_symmetric_and_acoustic_sum_rule(batch_fc):
    for fc in batch_fc:
        assert fc.asymmetry_ev_per_a2 < 1e-9
        assert fc.sum_rule_violation_ev_per_a2 < 1e-9
        assert fc.provenance["dtype"] == "float64" and fc.provenance["symmetrised"] is False


def test_one_atom_cell_has_zero_k(crystals, batch_fc):
    """Moving the only atom moves its periodic images with it: nothing changes."""
    (cu,) = [fc for s, fc in zip(crystals, batch_fc, strict=True) if len(s) == 1]
    assert cu.k_ev_per_a2.shape == (3, 3)
    assert np.abs(cu.k_ev_per_a2).max() < 1e-10
    assert cu.optical_pseudo_inverse().eigenvalues_ev_per_a2.shape == (0,)


def test_crystal_alone_equals_crystal_in_batch(crystals, batch_fc, tmp_path):
    """The shared tangents do not mix crystals: alone, a crystal gives what it gives in the
    batch with a 1-, a 2- (or 3-) and a 3-atom crystal."""
    for s, in_batch in list(zip(crystals, batch_fc, strict=True))[::3]:  # SiO2 and NaCl
        (alone,) = force_constants(
            [s], ENCODER, "float64", cache_dir=tmp_path, symmetry=False, budget=TEST_BUDGET
        )
        np.testing.assert_allclose(alone.k_ev_per_a2, in_batch.k_ev_per_a2, atol=1e-10)
        np.testing.assert_allclose(alone.forces_ev_per_a, in_batch.forces_ev_per_a, atol=1e-12)


def test_symmetry_reduced_k_equals_full_k(crystals, batch_fc, tmp_path):
    """Fluorite: F2 rotated from F1's columns equals F2 displaced (2 of 3 atoms displaced)."""
    i = [len(symmetry_map(s).representatives) < len(s) for s in crystals].index(True)
    (sym,) = force_constants(
        [crystals[i]], ENCODER, "float64", cache_dir=tmp_path, budget=TEST_BUDGET
    )
    assert sym.n_displaced == 2 and batch_fc[i].n_displaced == 3
    assert sym.provenance["symprec_angstrom"] == pytest.approx(1e-5)
    np.testing.assert_allclose(sym.k_ev_per_a2, batch_fc[i].k_ev_per_a2, atol=1e-9)
