"""Fixtures of the physics tests: tiny crystals, a toy pair potential, one padded shape.

Every Nequix computation of these tests pads to the one shape of `TEST_BUDGET` (16 nodes,
512 edges, 5 graphs) with ``max_atoms`` 16 (its padded nodes), so the float64
force-constant pass compiles once per session (and not at all on a re-run: the persistent
compilation cache).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.graph import BatchBudget, crystal_sum, edge_mask, edge_vectors, safe_norm

# All test crystals together have 472 edges at Nequix's 6 A cutoff: one bucket for every call.
TEST_BUDGET = BatchBudget(max_graphs=4, max_nodes=16, max_edges=512, min_nodes=16, min_edges=512)

TOY_CUTOFF_ANGSTROM = 4.5


def toy_energy(params, graph):
    """[n_graph] a smooth species-weighted Morse pair energy (eV), for cheap exact Hessians."""
    r = safe_norm(edge_vectors(graph))  # [n_edge]
    real = edge_mask(graph) & (r > 0)
    rr = jnp.where(real, r, 1.0)
    z = graph.nodes["species"].astype(r.dtype)
    weight = (z[graph.senders] + z[graph.receivers]) / 20.0
    cosine = 0.5 * (jnp.cos(jnp.pi * rr / TOY_CUTOFF_ANGSTROM) + 1.0)
    envelope = jnp.where(rr < TOY_CUTOFF_ANGSTROM, cosine, 0.0)
    phi = params["depth"] * weight * (1.0 - jnp.exp(-1.3 * (rr - 2.4))) ** 2 * envelope
    per_node = jax.ops.segment_sum(
        jnp.where(real, 0.5 * phi, 0.0), graph.receivers, graph.nodes["positions"].shape[0]
    )
    return crystal_sum(per_node, graph)


class ToyEncoder:
    """What `crystal_graphs` asks of an encoder, for the toy potential."""

    name = "toy"
    cutoff_angstrom = TOY_CUTOFF_ANGSTROM
    supported_z = tuple(range(1, 95))


def rattled(structure: Structure, seed: int, amplitude_angstrom: float = 0.05) -> Structure:
    out = structure.copy()
    shift = np.random.default_rng(seed).uniform(-1, 1, (len(out), 3)) * amplitude_angstrom
    for i, d in enumerate(shift):
        out.translate_sites([i], d, frac_coords=False, to_unit_cell=False)
    return out


@pytest.fixture(scope="session")
def cu():
    """fcc Cu, 1-atom primitive cell (a = 3.61 A)."""
    return Structure(Lattice.from_parameters(2.55, 2.55, 2.55, 60, 60, 60), ["Cu"], [[0, 0, 0]])


@pytest.fixture(scope="session")
def nacl_rattled():
    """Rock-salt NaCl, 2-atom primitive cell, Cl moved off its site."""
    s = Structure(
        Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60),
        ["Na", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
    )
    return rattled(s, seed=1)


@pytest.fixture(scope="session")
def sio2_rattled():
    """A skewed triclinic 3-atom cell, rattled (no symmetry)."""
    s = Structure(
        Lattice.from_parameters(3.1, 4.2, 5.3, 71.0, 83.0, 104.0),
        ["Si", "O", "O"],
        [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.62, 0.71, 0.55]],
    )
    return rattled(s, seed=2)


@pytest.fixture(scope="session")
def caf2():
    """Fluorite CaF2, 3-atom primitive cell: the two F are equivalent (2 orbits, 48 ops)."""
    return Structure(
        Lattice.from_parameters(3.86, 3.86, 3.86, 60, 60, 60),
        ["Ca", "F", "F"],
        [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]],
    )


@pytest.fixture(scope="session")
def rutile():
    """Rutile TiO2, 6 atoms in 2 orbits (16 operations)."""
    return Structure(
        Lattice.tetragonal(4.594, 2.959),
        ["Ti", "Ti", "O", "O", "O", "O"],
        [
            [0, 0, 0],
            [0.5, 0.5, 0.5],
            [0.305, 0.305, 0],
            [0.695, 0.695, 0],
            [0.805, 0.195, 0.5],
            [0.195, 0.805, 0.5],
        ],
    )
