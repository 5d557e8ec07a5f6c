"""The shipped fast model keeps the physics the default keeps (issue 23): total = electronic
+ ionic, the ionic tensor positive semi-definite, and exactly 0 for a one-atom cell (no
optical mode). Before issue 23 it read all three tensors off separate readouts: one-atom Cu
got eps_ion 6.76, and Si's total differed from its electronic + ionic by 0.3."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.inference import available_models, load_model
from dtnn_jax.inference.bundle import FAST_MODEL

FCC = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
CRYSTALS = {
    "Cu": Structure(Lattice(FCC * 3.61), ["Cu"], [[0, 0, 0]]),
    "Si": Structure(Lattice(FCC * 5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "BaTiO3": Structure(
        Lattice.cubic(4.0),
        ["Ba", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    ),
    "rutile": Structure(
        Lattice.tetragonal(4.594, 2.959),
        ["Ti", "Ti", "O", "O", "O", "O"],
        [
            [0, 0, 0],
            [0.5, 0.5, 0.5],
            [0.3053, 0.3053, 0],
            [0.6947, 0.6947, 0],
            [0.8053, 0.1947, 0.5],
            [0.1947, 0.8053, 0.5],
        ],
    ),
}

pytestmark = pytest.mark.skipif(
    FAST_MODEL not in available_models(), reason="the fast model is not shipped"
)


@functools.cache
def predictions() -> dict[str, np.ndarray]:
    return load_model(FAST_MODEL).predict(list(CRYSTALS.values()), target="all")


def test_total_is_electronic_plus_ionic():
    eps = predictions()
    np.testing.assert_allclose(eps["total"], eps["electronic"] + eps["ionic"], rtol=1e-5, atol=1e-5)


def test_ionic_is_psd_and_zero_for_one_atom():
    ionic = predictions()["ionic"]
    assert np.all(ionic[0] == 0.0)  # Cu, one atom per cell
    for eps in ionic:
        values = np.linalg.eigvalsh(eps.astype(np.float64))
        assert values.min() >= -1e-6 * max(values.max(), 1.0)
    assert ionic[2].trace() > 1.0  # BaTiO3 is strongly polar: not trivially zero
