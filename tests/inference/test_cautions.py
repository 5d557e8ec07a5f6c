"""Honest output (issue 23): unstable modes, likely metals, small gaps and ~0 tensors are said.

Synthetic force constants and tensors, no encoder: the records, the phonon table and the
properties must carry what the numbers hide.
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.config import PhysicsConfig
from dtnn_jax.inference.cautions import (
    EPS_INF_SMALL_GAP,
    crystal_cautions,
    prediction_cautions,
    unstable_modes,
)
from dtnn_jax.physics import gamma_phonons
from dtnn_jax.physics.force_constants import ForceConstants
from dtnn_jax.properties import tensor_properties


def _pair_k(spring: float, n_cells: int = 1) -> np.ndarray:
    """[6, 6] K of two atoms joined by an isotropic spring (negative: an unstable mode)."""
    block = spring * np.eye(3)
    return np.block([[block, -block], [-block, block]])


def _fc(k: np.ndarray) -> ForceConstants:
    n = k.shape[0] // 3
    return ForceConstants(k, np.zeros((n, 3)), 0.0, 0, {})


def _nacl() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_unstable_modes_are_counted_with_the_lowest_frequency():
    masses = np.array([22.99, 35.45])
    modes = unstable_modes(_fc(_pair_k(-2.0)), masses, "drop_negative", 0.01)
    expected = gamma_phonons(_pair_k(-2.0), masses).frequencies_cm1[3:].min()
    assert modes.count == 3 and modes.lowest_frequency_cm1 == pytest.approx(expected)
    assert modes.lowest_frequency_cm1 < 0
    message = modes.message()
    assert "3 unstable (imaginary) Gamma mode(s)" in message and "dropped from eps_ion" in message
    stable = unstable_modes(_fc(_pair_k(2.0)), masses, "drop_negative", 0.01)
    assert stable.count == 0 and stable.lowest_frequency_cm1 > 0 and stable.message() is None


def _fake_physics_model():
    target = types.SimpleNamespace(config=types.SimpleNamespace(physics=PhysicsConfig()))
    return types.SimpleNamespace(
        name="fake",
        targets=("electronic", "ionic", "total"),
        physics_targets=("ionic",),
        bundle=types.SimpleNamespace(targets={"ionic": target}),
    )


def _fake_prediction(k: np.ndarray, eps_inf: float):
    eye = np.eye(3)[None]
    mean = {"electronic": eps_inf * eye, "ionic": 0.0 * eye, "total": eps_inf * eye}
    return types.SimpleNamespace(
        mean=mean,
        std={t: 0.0 * eye for t in mean},
        eps_poly_std={t: np.zeros(1) for t in mean},
        errors=[None],
        born_charges=[np.zeros((2, 3, 3))],
        force_constants=[_fc(k)],
    )


def test_records_carry_the_unstable_modes_as_a_field_and_a_warning():
    """What `dtnn predict` writes (JSON and CSV fields, the warning) and the API warns."""
    from dtnn_jax.inference.records import _records
    from dtnn_jax.inputs import CrystalInput

    crystal = CrystalInput(id="nacl", source="nacl.cif", structure=_nacl())
    model = _fake_physics_model()
    (record,) = _records(model, [crystal], _fake_prediction(_pair_k(-2.0), 2.4), phonons=True)
    data = json.loads(json.dumps(record.as_dict()))
    assert data["n_unstable_modes"] == 3 and data["lowest_frequency_cm1"] < 0
    assert "3 unstable (imaginary) Gamma mode(s)" in data["warning"]
    assert [m["dropped"] for m in data["phonons"]] == [False] * 3 + [True] * 3
    (stable,) = _records(model, [crystal], _fake_prediction(_pair_k(2.0), 2.4))
    assert stable.n_unstable_modes == 0 and stable.warning is None
    (cautions,) = prediction_cautions(model, [crystal], _fake_prediction(_pair_k(-2.0), 2.4))
    assert cautions.unstable.count == 3 and len(cautions.messages) == 1


def test_the_phonon_table_marks_dropped_modes():
    from dtnn_jax.cli.predict import format_csv, format_phonons
    from dtnn_jax.inference.records import _records
    from dtnn_jax.inputs import CrystalInput

    crystal = CrystalInput(id="nacl", source="nacl.cif", structure=_nacl())
    (record,) = _records(
        _fake_physics_model(), [crystal], _fake_prediction(_pair_k(-2.0), 2.4), phonons=True
    )
    rec = record.as_dict()
    lines = format_phonons(rec)[2:]
    assert sum("DROPPED: unstable mode" in line for line in lines) == 3
    assert all(line.split()[1].startswith("-") for line in lines if "DROPPED" in line)
    csv_text = format_csv([rec], ["total"])
    header, row = csv_text.splitlines()[:2]
    assert "n_unstable_modes,lowest_frequency_cm1" in header and ",3," in row


def test_metals_and_small_gaps_are_warned_about():
    assert any("likely a metal" in w for w in crystal_cautions("Cu", {}, 20.0))
    assert crystal_cautions("NaCl", {}, 2.4) == []
    (small,) = crystal_cautions("InAs", {}, EPS_INF_SMALL_GAP + 5)
    assert f"> {EPS_INF_SMALL_GAP:g}" in small and "semimetal" in small
    assert crystal_cautions("InAs", {"band_gap_ev": 0.4}, 40.0) == []  # a known gap decides
    assert crystal_cautions("NaCl", {"band_gap_ev": 0.0}, 2.4)[0].startswith("likely a metal")


def test_anisotropy_of_a_zero_tensor_is_not_reported():
    tensors = np.stack(
        [
            np.diag([1e-4, 2e-4, 2.15e-4]),  # a vanishing eps_ion (Si): noise
            np.diag([1e-31, 0.3, 0.44]),  # a molecule in a box: 4.4e30
            np.diag([2.0, 2.0, 3.0]),
        ]
    )
    aniso = tensor_properties(tensors).anisotropy
    assert np.isnan(aniso[0]) and np.isnan(aniso[1]) and aniso[2] == pytest.approx(1.5)


def test_the_small_gap_threshold_is_the_fit_on_the_shipped_labels():
    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.inference.cautions import fit_small_gap_threshold

    records = load_petousis2017()
    eps_inf = [np.trace(r.target("electronic")) / 3 for r in records]
    fitted = fit_small_gap_threshold(eps_inf, [r.band_gap_ev for r in records])
    assert fitted == EPS_INF_SMALL_GAP


def test_the_python_api_warns_about_a_likely_metal():
    """`DielectricModel.predict` (what ``dtnn_jax.predict`` calls) with a stand-in model
    whose electronic eps is 20 x identity: Cu is a likely metal, NaCl has eps_inf > 15.5."""
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.inference import DielectricModel, Prediction
    from dtnn_jax.inputs import prepare_inputs

    class Stand:
        targets, physics_targets = ("electronic", "total"), ()
        encoder = get_encoder()

        def prepare(self, structures):
            return list(prepare_inputs(structures, self.encoder))

        def predict_inputs(self, crystals, *_, **__):
            n = len(crystals)
            mean = {t: np.tile(20.0 * np.eye(3), (n, 1, 1)) for t in self.targets}
            zero = {t: np.zeros((n, 3, 3)) for t in self.targets}
            return Prediction(mean, zero, {t: np.zeros(n) for t in self.targets},
                              [c.error for c in crystals], [c.source for c in crystals],
                              warnings=[c.warning for c in crystals])  # fmt: skip

    fcc = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    cu = Structure(Lattice.cubic(3.61), ["Cu"] * 4, fcc)
    with pytest.warns(UserWarning) as caught:
        eps = DielectricModel.predict(Stand(), [cu, _nacl()], target="total")
    assert eps.shape == (2, 3, 3)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("#0 (Cu4): likely a metal") for m in messages)
    assert any(m.startswith("#1 (Na1 Cl1): predicted eps_inf 20.0 > 15.5") for m in messages)
