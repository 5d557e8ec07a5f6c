"""Fixtures of the encoder tests: the shipped weights, the torch reference, padded batches."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from dtnn_jax.encoder import get_encoder
from dtnn_jax.encoder.sevennet import sevennet_forward
from dtnn_jax.graph import BatchBudget, build_graph, pad_to_bucket

FIXTURE = Path(__file__).parent / "fixtures" / "sevennet0_reference.npz"

SEVENNET = get_encoder("sevennet-0")


def _energy_and_forces(params, graph, config):
    del config  # the encoder holds it
    return SEVENNET.energy_and_forces(params, graph)


# One jitted function per entry point, shared by all tests (config is static).
forward_jit = jax.jit(sevennet_forward, static_argnums=2)
energy_and_forces_jit = jax.jit(_energy_and_forces, static_argnums=2)

SINGLE_BUDGET = BatchBudget(max_graphs=1, min_nodes=32, min_edges=1024)
BATCH_BUDGET = BatchBudget(max_graphs=9, min_nodes=128, min_edges=4096)


@pytest.fixture(scope="session")
def sevennet():
    """(params, config) of the shipped SevenNet-0."""
    return SEVENNET.params, SEVENNET.config


@pytest.fixture(scope="session")
def reference():
    """Torch sevenn outputs written by experiments/sevennet_reference.py."""
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _reference_graph(reference, key):
    return build_graph(
        reference[f"{key}_positions"],
        reference[f"{key}_numbers"],
        reference[f"{key}_lattice"],
        cutoff_angstrom=5.0,
    )


@pytest.fixture(scope="session")
def reference_batch(reference):
    """All reference crystals in one padded batch (the last graph is padding)."""
    keys = [str(k) for k in reference["keys"]]
    return keys, pad_to_bucket([_reference_graph(reference, k) for k in keys], BATCH_BUDGET)


@pytest.fixture(scope="session")
def batch_outputs(sevennet, reference_batch):
    params, config = sevennet
    _, batch = reference_batch
    return forward_jit(params, batch, config)


@pytest.fixture(scope="session")
def reference_graph(reference):
    """key -> single-crystal padded graph of a reference crystal."""
    return lambda key: pad_to_bucket([_reference_graph(reference, key)], SINGLE_BUDGET)


@pytest.fixture(scope="session")
def jitted():
    """The jitted entry points: (forward, energy_and_forces)."""
    return forward_jit, energy_and_forces_jit
