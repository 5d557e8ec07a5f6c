"""phonopy BORN files: the round trip through phonopy's reader, and LO frequencies at Gamma
from phonopy's NAC against ours, with the DFT force constants and Z* of wurtzite ZnO
(phonondb mp-2133, `fixtures/zno_mp2133`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure

from dtnn_jax.physics import gamma_phonons
from dtnn_jax.physics.born_file import born_file_text, phonopy_cell, write_born_file
from dtnn_jax.physics.spectra import lo_frequencies, nonanalytic_force_constants, oscillators

FIXTURE = Path(__file__).parent / "fixtures" / "zno_mp2133"
THZ_TO_CM1 = 33.35640951981521


@pytest.fixture(scope="module")
def zno():
    return Structure.from_file(FIXTURE / "POSCAR-unitcell")


@pytest.fixture(scope="module")
def dft_born(zno):
    from phonopy.file_IO import parse_BORN

    nac = parse_BORN(phonopy_cell(zno), filename=FIXTURE / "BORN")
    return nac["born"], nac["dielectric"]


def test_round_trip_through_phonopy(zno, dft_born, tmp_path):
    """What we write, phonopy reads back as the symmetrised charges and tensor."""
    from phonopy.file_IO import parse_BORN
    from phonopy.structure.symmetry import symmetrize_borns_and_epsilon

    z_dft, eps_dft = dft_born
    rng = np.random.default_rng(0)
    z = z_dft + 0.03 * rng.normal(size=z_dft.shape)  # a prediction: symmetric only nearly
    eps = eps_dft + 0.05 * rng.normal(size=(3, 3))
    path = write_born_file(zno, z, eps, tmp_path)
    assert path.name == "BORN" and path.read_text().startswith("# epsilon and Z* of atoms 1 3")
    back = parse_BORN(phonopy_cell(zno), filename=path)
    z_sym, eps_sym = symmetrize_borns_and_epsilon(z, 0.5 * (eps + eps.T), phonopy_cell(zno))
    np.testing.assert_allclose(back["born"], z_sym, atol=1e-7)
    np.testing.assert_allclose(back["dielectric"], eps_sym, atol=1e-7)
    # symmetric input comes back unchanged: the DFT file itself
    back = parse_BORN(phonopy_cell(zno), filename=write_born_file(zno, z_dft, eps_dft, tmp_path))
    np.testing.assert_allclose(back["born"], z_dft, atol=1e-7)
    np.testing.assert_allclose(back["dielectric"], eps_dft, atol=1e-7)
    with pytest.raises(ValueError, match=r"\[4, 3, 3\]"):
        born_file_text(zno, z[:2], eps)


def _phonopy(zno, born_path=None):
    import phonopy

    ph = phonopy.load(
        supercell_matrix=[[4, 0, 0], [0, 4, 0], [0, 0, 2]],
        unitcell=phonopy_cell(zno),
        force_sets_filename=FIXTURE / "FORCE_SETS",
        born_filename=born_path,
        is_nac=born_path is not None,
        produce_fc=True,
        log_level=0,
    )
    ph.symmetrize_force_constants()  # the sum rule, as gamma_phonons imposes it
    return ph


def test_lo_frequencies_match_phonopys_nac(zno, dft_born):
    """Gamma with the DFT K and Z*: our zeros of q.eps(w).q and our K + K_na give phonopy's
    NAC frequencies for q along c and in the plane."""
    z_dft, eps_dft = dft_born
    plain = _phonopy(zno)
    plain.dynamical_matrix.run([0, 0, 0])
    d = plain.dynamical_matrix.dynamical_matrix.real  # [3N, 3N] eV / (A^2 amu)
    masses = plain.primitive.masses
    sqrt_m = np.repeat(np.sqrt(masses), 3)
    k = sqrt_m[:, None] * d * sqrt_m[None, :]  # eV / A^2
    osc = oscillators(k, masses, z_dft, zno.volume)
    nac = _phonopy(zno, FIXTURE / "BORN")
    reciprocal = zno.lattice.reciprocal_lattice.matrix  # rows
    for frac in ([0, 0, 1], [1, 0, 0]):
        nac.run_qpoints([[0, 0, 0]], nac_q_direction=frac)
        ref = np.sort(nac.qpoints.frequencies[0] * THZ_TO_CM1)[3:]  # optical
        q = np.asarray(frac, float) @ reciprocal
        lo = lo_frequencies(osc, eps_dft, q)
        assert len(lo) >= 1 and all(np.abs(ref - w).min() < 0.01 for w in lo)
        ours = gamma_phonons(k + nonanalytic_force_constants(z_dft, eps_dft, zno.volume, q), masses)
        np.testing.assert_allclose(np.sort(ours.frequencies_cm1[3:]), ref, atol=0.01)
