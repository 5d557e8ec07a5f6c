"""Optical constants: indices, axes, class and sign, and their place in `dtnn predict`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dtnn_jax.optics import optical_constants


def test_classes_signs_and_axes():
    rot = Rotation.from_euler("zyx", [20, 35, -50], degrees=True).as_matrix()
    tensors = [
        np.diag([4.0, 4.0, 4.0]),  # cubic
        np.diag([2.25, 2.25, 2.56]),  # uniaxial, n_e = 1.6 > n_o = 1.5: positive
        np.diag([3.0, 2.0, 3.0]),  # uniaxial, n_e < n_o: negative
        rot @ np.diag([2.0, 2.1, 3.0]) @ rot.T,  # biaxial, beta near alpha: positive
        np.diag([2.0, 2.9, 3.0]),  # biaxial, beta near gamma: negative
        np.full((3, 3), np.nan),
    ]
    oc = optical_constants(tensors)
    assert oc.optic_class == ["isotropic", "uniaxial", "uniaxial", "biaxial", "biaxial", ""]
    assert oc.optic_sign == ["", "+", "-", "+", "-", ""]
    np.testing.assert_allclose(oc.refractive_indices[1], [1.5, 1.5, 1.6])
    assert oc.birefringence[1] == pytest.approx(0.1) and oc.birefringence[0] == 0.0
    # the axes are the rotated frame's: the n_3 axis is rot's third column (up to sign)
    assert abs(oc.principal_axes[3][:, 2] @ rot[:, 2]) == pytest.approx(1.0)
    n1, n2, n3 = np.sqrt([2.0, 2.1, 3.0])
    cos2 = n1**2 * (n3**2 - n2**2) / (n2**2 * (n3**2 - n1**2))
    assert oc.optic_angle_deg[3] == pytest.approx(2 * math.degrees(math.acos(math.sqrt(cos2))))
    assert oc.optic_angle_deg[1] == 0.0 and math.isnan(oc.optic_angle_deg[0])
    assert oc.record(5)["refractive_indices"] == [None] * 3


def test_optics_rotate_with_the_crystal():
    """Indices, class and sign are invariants; the axes turn with the input frame."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    eps = a @ a.T + 2.0 * np.eye(3)
    rot = Rotation.random(random_state=1).as_matrix()
    one, two = optical_constants([eps, rot @ eps @ rot.T]).record(0), None
    two = optical_constants(rot @ eps @ rot.T).record(0)
    np.testing.assert_allclose(one["refractive_indices"], two["refractive_indices"], rtol=1e-12)
    assert (one["optic_class"], one["optic_sign"]) == (two["optic_class"], two["optic_sign"])
    axes_one, axes_two = np.asarray(one["principal_axes"]), np.asarray(two["principal_axes"])
    for u, v in zip(axes_one, axes_two, strict=True):  # rows: one axis per index
        assert abs((rot @ u) @ v) == pytest.approx(1.0)


def test_predict_records_carry_the_optics():
    """A record with an electronic tensor gets the optics in JSON, the table and the CSV."""
    from dtnn_jax.cli.predict import format_csv, format_table
    from dtnn_jax.inference.records import CrystalPrediction, TargetPrediction

    eps = np.diag([2.25, 2.25, 2.56])
    target = TargetPrediction(eps, 0.1 * eps, np.diag(eps), 7.06 / 3, 0.1, 2.56 / 2.25)
    crystal = CrystalPrediction("zno", "zno.cif", "ZnO", ["O", "Zn"], None, {"electronic": target})
    rec = crystal.as_dict()
    optics = rec["optics"]
    np.testing.assert_allclose(optics["refractive_indices"], [1.5, 1.5, 1.6])
    assert (optics["optic_class"], optics["optic_sign"]) == ("uniaxial", "+")
    assert "1.5000 1.5000 1.6000  birefringence 0.1000  uniaxial +" in format_table([rec], "m")
    header, row = format_csv([rec], ["electronic"]).splitlines()
    assert "n_1,n_2,n_3,birefringence,optic_class,optic_sign" in header
    assert ",1.5,1.5,1.6,0.1,uniaxial,+," in row
    no_electronic = CrystalPrediction("x", "x", "X", [], None, {"total": target}).as_dict()
    assert "optics" not in no_electronic
