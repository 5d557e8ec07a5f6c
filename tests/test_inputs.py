"""The single input pass: one neighbour search per crystal, names kept, errors never raised."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.encoder import get_encoder
from dtnn_jax.graph import MIN_INTERATOMIC_DISTANCE_ANGSTROM, neighbors
from dtnn_jax.inputs import InputItem, prepare_inputs
from tests.properties.tiny_model import BUDGET, tiny_model


@pytest.fixture
def count_searches(monkeypatch):
    """Counts calls of the (only) neighbour search the package uses."""
    calls = []
    real = neighbors.find_points_in_spheres

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(neighbors, "find_points_in_spheres", counting)
    return calls


def test_a_prediction_does_exactly_one_neighbour_search(count_searches, nacl, tmp_path):
    model = tiny_model()
    model.predict_detailed([nacl], budget=BUDGET)
    assert len(count_searches) == 1
    path = tmp_path / "nacl.json"
    path.write_text(json.dumps(nacl.as_dict()))
    count_searches.clear()
    model.predict_detailed([path, nacl], budget=BUDGET)
    assert len(count_searches) == 2  # one per crystal, read from a file or not


def test_prepare_names_inputs_and_keeps_going(nacl, triclinic, tmp_path):
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif")
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    item = InputItem(triclinic, id="mp-7", source="mp-7", info={"band_gap_ev": 1.5})
    crystals = list(prepare_inputs([nacl, bad, overlapping, item], get_encoder()))
    assert [c.id for c in crystals] == ["#0", "bad", "#2", "mp-7"]
    assert [c.source for c in crystals] == ["#0 (Na1 Cl1)", str(bad), "#2 (Na1 Cl1)", "mp-7"]
    assert crystals[0].ok and crystals[0].graph.n_node.tolist() == [2]
    assert "could not parse" in crystals[1].error and crystals[1].structure is None
    assert f"(< {MIN_INTERATOMIC_DISTANCE_ANGSTROM} A)" in crystals[2].error
    assert crystals[2].structure is not None and crystals[2].graph is None
    assert crystals[3].info["band_gap_ev"] == 1.5 and crystals[3].formula == "SiO2"
    assert crystals[3].elements == ["O", "Si"]


def test_one_overlap_threshold_on_the_graph(nacl):
    """0.45 A apart is rejected, 0.55 A is accepted: the single, documented threshold."""
    encoder = get_encoder()
    for gap, ok in ((0.45, False), (0.55, True)):
        s = Structure(Lattice.cubic(6.0), ["H", "H"], [[0, 0, 0], [gap / 6.0, 0, 0]])
        (crystal,) = prepare_inputs(s, encoder)
        assert crystal.ok == ok, (gap, crystal.error)
    assert np.isclose(MIN_INTERATOMIC_DISTANCE_ANGSTROM, 0.5)
