"""Padding into bucket shapes changes nothing real, and zero-length padding edges are safe."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtnn_jax.graph import (
    BatchBudget,
    edge_mask,
    edge_vectors,
    graph_from_structure,
    graph_mask,
    node_mask,
    pad_to_bucket,
    padded_batches,
    safe_norm,
)

SMALL = BatchBudget(max_graphs=2, max_nodes=16, max_edges=512, min_nodes=8, min_edges=64)


@pytest.fixture
def small_graphs(nacl, triclinic):
    return [graph_from_structure(nacl, 5.0), graph_from_structure(triclinic, 5.0)]


def _inverse_distance_per_graph(graph, norm, n_graph: int, padded: bool = True):
    """[n_graph] sum over each graph's edges of 1/|r_ij|, padding edges masked out."""
    lengths = norm(edge_vectors(graph))  # [n_edges]
    # jraph's masks assume the last graph is padding, so an unpadded graph has no mask.
    mask = edge_mask(graph) if padded else jnp.ones(lengths.shape, bool)  # [n_edges]
    inverse = jnp.where(mask, 1.0 / jnp.where(mask, lengths, 1.0), 0.0)
    edge_graph = jnp.repeat(
        jnp.arange(n_graph), graph.n_edge, total_repeat_length=graph.senders.shape[0]
    )
    return jax.ops.segment_sum(inverse, edge_graph, num_segments=n_graph)


def test_real_nodes_and_edges_come_first_unchanged(small_graphs):
    padded = pad_to_bucket(small_graphs, SMALL)
    n_real_nodes = sum(int(g.n_node[0]) for g in small_graphs)
    n_real_edges = sum(int(g.n_edge[0]) for g in small_graphs)
    assert padded.nodes["positions"].shape[0] > n_real_nodes
    assert padded.senders.shape[0] > n_real_edges
    node_offset = edge_offset = 0
    for g in small_graphs:
        n, e = int(g.n_node[0]), int(g.n_edge[0])
        for key in ("positions", "species"):
            np.testing.assert_array_equal(
                padded.nodes[key][node_offset : node_offset + n], g.nodes[key]
            )
        for key in ("shifts", "offsets"):
            np.testing.assert_array_equal(
                padded.edges[key][edge_offset : edge_offset + e], g.edges[key]
            )
        np.testing.assert_array_equal(
            padded.senders[edge_offset : edge_offset + e], g.senders + node_offset
        )
        np.testing.assert_array_equal(
            padded.receivers[edge_offset : edge_offset + e], g.receivers + node_offset
        )
        node_offset, edge_offset = node_offset + n, edge_offset + e
    assert np.asarray(node_mask(padded)).sum() == n_real_nodes
    assert np.asarray(edge_mask(padded)).sum() == n_real_edges
    assert np.asarray(graph_mask(padded)).tolist() == [True, True, False]
    # Padding edges have zero length (they join a padding node to itself, zero shift).
    padding_vectors = np.asarray(edge_vectors(padded))[n_real_edges:]
    assert np.all(padding_vectors == 0)


def test_per_graph_edge_sum_is_unchanged_by_padding(small_graphs):
    padded = pad_to_bucket(small_graphs, SMALL)
    summed = _inverse_distance_per_graph(padded, safe_norm, padded.n_node.shape[0])
    for k, g in enumerate(small_graphs):
        alone = _inverse_distance_per_graph(g, safe_norm, 1, padded=False)
        np.testing.assert_allclose(summed[k], alone[0], rtol=1e-6)
        exact = np.sum(1.0 / np.linalg.norm(edge_vectors(g).astype(np.float64), axis=1))
        np.testing.assert_allclose(summed[k], exact, rtol=1e-5)
    assert float(summed[-1]) == 0.0


def _energy_gradient(padded, norm):
    def energy(positions):
        graph = padded._replace(nodes={**padded.nodes, "positions": positions})
        return _inverse_distance_per_graph(graph, norm, padded.n_node.shape[0]).sum()

    return jax.grad(energy)(jnp.asarray(padded.nodes["positions"]))


def test_gradient_through_padding_is_finite_with_safe_norm(small_graphs):
    padded = pad_to_bucket(small_graphs, SMALL)
    grad = np.asarray(_energy_gradient(padded, safe_norm))  # [n_nodes, 3]
    assert np.all(np.isfinite(grad))
    n_real = int(np.asarray(node_mask(padded)).sum())
    assert np.all(grad[n_real:] == 0)
    assert np.abs(grad[:n_real]).max() > 0
    # The plain norm would poison the gradient: this is what safe_norm is for.
    plain = np.asarray(_energy_gradient(padded, lambda v: jnp.linalg.norm(v, axis=-1)))
    assert np.isnan(plain).any()


def test_safe_norm_values_and_gradient():
    vectors = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1e-20, 0.0, 0.0]])
    np.testing.assert_allclose(safe_norm(vectors), [5.0, 0.0, 1e-20])
    assert isinstance(safe_norm(vectors), np.ndarray)
    assert safe_norm(vectors, keepdims=True).shape == (3, 1)
    grad = jax.grad(lambda v: safe_norm(v).sum())(jnp.asarray(vectors, jnp.float32))
    np.testing.assert_allclose(grad[0], [0.6, 0.8, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(grad[1], [0.0, 0.0, 0.0])


def test_padded_batches_cover_all_graphs_in_order(small_graphs):
    graphs = small_graphs * 3
    seen = []
    for indices, batch in padded_batches(iter(graphs), SMALL):
        assert len(indices) <= SMALL.max_graphs
        assert batch.n_node.shape == (SMALL.max_graphs + 1,)
        np.testing.assert_array_equal(
            batch.n_node[: len(indices)], [graphs[i].n_node[0] for i in indices]
        )
        seen.extend(indices)
    assert seen == list(range(len(graphs)))


def test_shipped_set_compiles_a_handful_of_shapes(shipped_structures):
    graphs = [graph_from_structure(s, 5.0) for s in shipped_structures]
    budget = BatchBudget()
    shapes = set()
    real_nodes = real_edges = padded_nodes = padded_edges = 0
    for indices, batch in padded_batches(graphs, budget):
        shapes.add((batch.nodes["species"].shape[0], batch.senders.shape[0]))
        real_nodes += sum(int(graphs[i].n_node[0]) for i in indices)
        real_edges += sum(int(graphs[i].n_edge[0]) for i in indices)
        padded_nodes += batch.nodes["species"].shape[0]
        padded_edges += batch.senders.shape[0]
    assert real_nodes == sum(len(s) for s in shipped_structures)
    assert len(shapes) <= 8, sorted(shapes)
    assert padded_nodes / real_nodes < 2.0
    assert padded_edges / real_edges < 2.0
