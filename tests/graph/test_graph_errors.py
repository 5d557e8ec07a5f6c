"""Invalid structures raise `GraphConstructionError` with a message saying what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from dtnn_jax.graph import (
    GraphConstructionError,
    IsolatedAtomError,
    build_graph,
    graph_from_structure,
)


def test_isolated_atom_names_atom_and_cutoff():
    box = np.eye(3) * 20.0  # one atom in vacuum: no image within 5 A
    with pytest.raises(IsolatedAtomError, match=r"cutoff of 5\.0 A: atom 0 \(Z=8\)"):
        build_graph(np.array([[1.0, 2.0, 3.0]]), [8], box, cutoff_angstrom=5.0)


def test_isolated_atom_among_bonded_ones_is_named():
    positions = np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [10.0, 10.0, 10.0]])
    with pytest.raises(IsolatedAtomError, match=r"atom 2 \(Z=26\)"):
        build_graph(positions, [6, 8, 26], np.eye(3) * 20.0, cutoff_angstrom=4.0)


def test_isolated_atom_allowed_gives_node_without_edges():
    graph = build_graph(np.array([[1.0, 2.0, 3.0]]), [8], np.eye(3) * 20.0, allow_isolated=True)
    assert graph.n_node.tolist() == [1] and graph.n_edge.tolist() == [0]
    assert graph.senders.shape == (0,) and graph.edges["shifts"].shape == (0, 3)
    assert graph.edges["offsets"].shape == (0, 3)


@pytest.mark.parametrize(
    ("positions", "numbers", "lattice", "message"),
    [
        (np.zeros((0, 3)), [], np.eye(3) * 4, "no atoms"),
        (np.array([[0.0, np.nan, 0.0]]), [1], np.eye(3) * 4, "non-finite"),
        (np.array([[0.0, np.inf, 0.0]]), [1], np.eye(3) * 4, "non-finite"),
        (np.zeros((1, 3)), [1], np.array([[4.0, 0, 0], [0, 4, 0], [0, 0, np.nan]]), "non-finite"),
        (np.zeros((1, 3)), [1], np.array([[4.0, 0, 0], [8.0, 0, 0], [0, 0, 4]]), "degenerate"),
        (np.zeros((1, 3)), [1], np.array([[4.0, 0, 0], [0, 4, 0], [0, 0, 0]]), "degenerate"),
        (np.zeros((1, 3)), [1], np.zeros((3, 3)), "degenerate"),
        (np.zeros((2, 3)), [1, 1], np.eye(3) * 4, "overlapping"),
        (np.zeros((2, 3)), [1], np.eye(3) * 4, "atomic_numbers must have shape"),
        (np.zeros((2, 2)), [1, 1], np.eye(3) * 4, "positions must have shape"),
        (np.zeros((1, 3)), [1], np.eye(2) * 4, "lattice must have shape"),
    ],
)
def test_invalid_structures_raise(positions, numbers, lattice, message):
    with pytest.raises(GraphConstructionError, match=message):
        build_graph(positions, np.asarray(numbers, int), lattice)


@pytest.mark.parametrize("cutoff", [0.0, -1.0, float("nan")])
def test_bad_cutoff_raises(nacl, cutoff):
    with pytest.raises(GraphConstructionError, match="cutoff"):
        graph_from_structure(nacl, cutoff)


def test_isolated_atom_error_is_a_graph_construction_error():
    assert issubclass(IsolatedAtomError, GraphConstructionError)
    assert issubclass(GraphConstructionError, ValueError)
