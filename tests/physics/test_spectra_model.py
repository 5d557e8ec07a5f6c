"""`dtnn_jax.infrared_dielectric` / `infrared_spectra` with a (tiny, random) physics model:
the static limit is predict's eps_total, a one-atom crystal gives eps_inf, files are written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import dtnn_jax
from dtnn_jax.inference import DielectricModel
from dtnn_jax.spectra import infrared_spectra, write_spectra
from tests.physics.test_physics_model import _cu, _mgo_strained, _nacl, physics_bundle


@pytest.fixture(scope="module")
def model() -> DielectricModel:
    return DielectricModel(physics_bundle())


def test_static_limit_is_predicts_eps_total(model):
    crystals = [_nacl(), _cu(), _mgo_strained()]  # the padded shape of test_physics_model
    total = model.predict(crystals, "all")
    with pytest.warns(UserWarning, match="no optical modes"):
        eps = dtnn_jax.infrared_dielectric(crystals, [0.0, 150.0, 400.0], model=model)
    assert [e.shape for e in eps] == [(3, 3, 3)] * 3 and eps[0].dtype == np.complex128
    for k in (0, 2):  # stable crystals: every mode in the spectrum
        np.testing.assert_allclose(eps[k][0].real, total["total"][k], rtol=2e-5, atol=1e-5)
        np.testing.assert_allclose(eps[k][0].imag, 0.0, atol=1e-12)
    # one atom: no optical modes, eps(w) = eps_inf at every frequency
    np.testing.assert_allclose(
        eps[1], np.broadcast_to(total["electronic"][1], (3, 3, 3)), atol=1e-6
    )


def test_spectrum_files_and_isotropic_axes(model, tmp_path):
    crystals = [_nacl(), _cu(), _mgo_strained()]
    with pytest.warns(UserWarning, match="no optical modes"):
        done = write_spectra(model, crystals, tmp_path)
    assert [error for _, error in done] == [None] * 3
    assert len(list(tmp_path.glob("*.png"))) == 3
    (first,) = sorted(tmp_path.glob("*NaCl*.csv")) or sorted(tmp_path.glob("*0*.csv"))[:1]
    rows = list(csv.DictReader(first.open()))
    r = np.array([[float(row[f"R_{a}"]) for a in (1, 2, 3)] for row in rows])
    assert len(rows) > 100 and np.all((r >= 0) & (r <= 1))
    # rock salt: the three axes carry the same spectrum
    np.testing.assert_allclose(r, r[:, :1].repeat(3, 1), atol=1e-4)
    meta = json.loads(first.with_suffix(".json").read_text())
    assert len(meta["to_cm1"]) == 3 and all(len(lo) == 1 for lo in meta["lo_cm1_per_axis"])
    (spectrum,) = infrared_spectra([_mgo_strained()], [0.0, 300.0], model=model)
    assert all(np.all(lo > 0) for lo in spectrum.lo_cm1) and not spectrum.notes


def test_born_files_read_back_by_phonopy(model, tmp_path):
    """`dtnn predict --born-file` (its writer, with the fixture's model) and
    `dtnn_jax.write_phonopy_born`: phonopy reads eps_inf and the (symmetrised) Z* back."""
    from phonopy.file_IO import parse_BORN
    from phonopy.structure.symmetry import symmetrize_borns_and_epsilon

    from dtnn_jax.cli.predict import write_physics_outputs
    from dtnn_jax.physics.born_file import phonopy_cell

    crystals = [_nacl(), _cu(), _mgo_strained()]
    mean, born = model.predict(crystals, "electronic", return_born_charges=True)
    write_physics_outputs(model, crystals, None, tmp_path / "nac", None, {})
    files = sorted((tmp_path / "nac").glob("*/BORN"))
    assert len(files) == 3
    for k in (0, 2):
        cell = phonopy_cell(crystals[k])
        back = parse_BORN(cell, filename=files[k])
        z, eps = symmetrize_borns_and_epsilon(born[k], mean[k], cell)
        np.testing.assert_allclose(back["born"], z, atol=1e-6)
        np.testing.assert_allclose(back["dielectric"], eps, atol=1e-6)
    path = dtnn_jax.write_phonopy_born(_nacl(), tmp_path / "one", model=model)
    assert path == tmp_path / "one" and "epsilon and Z*" in path.read_text()
