"""A tiny random-initialised readout bundle and the helpers the property tests share.

Equivariance, invariance and crystal symmetry must hold for ANY readout weights, so the
tests use a small random-init ensemble (two members, real SevenNet-0 layer-4 features) and
never depend on a trained model being shipped.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from pymatgen.core import Lattice, Structure

from dtnn_jax.config import ExperimentConfig, ReadoutConfig
from dtnn_jax.graph import BatchBudget, pad_to_bucket
from dtnn_jax.inference import DielectricModel, Member, ModelBundle, TargetModel
from dtnn_jax.models import DTNN, TargetScaler
from dtnn_jax.training.synthetic import synthetic_graphs


def bundle_metadata(description: str = "test") -> dict:
    """Bundle metadata with the encoder identity a bundle needs (SevenNet-0's)."""
    from dtnn_jax.encoder import get_encoder

    return {"description": description, "encoder_sha256": get_encoder().weights_sha256}


# The affine output map: these tests probe the network (features -> y), whose equivariance
# must hold for any weights. A random-init network outputs |y| ~ 10-100, which the shipped
# matrix-exp map would turn into exp(10-20), where float32 round-off alone is ~1e-3 relative.
# The matrix-exp map is equivariant on its own (tests/models/test_scaling_baselines.py), and
# the shipped model goes through it end to end in test_crystal_symmetry.py.
READOUT = ReadoutConfig(
    width=16, vector_channels=8, tensor_channels=4, n_blocks=1, output_map="affine"
)
# One padded shape for every property batch (up to 6 crystals, 127 atoms, 5120 bonds): the
# full model compiles once per mode. Crystals of <= 20 atoms at >= 12 A^3/atom have at most
# ~44 neighbours per atom within 5 A, so 5 rotated copies of one fit.
BUDGET = BatchBudget(
    max_graphs=6, max_nodes=127, max_edges=5120, min_nodes=128, min_edges=5120, growth=2.0
)


@functools.cache
def tiny_bundle() -> ModelBundle:
    """Two random-init members for "total" (offsets 5 and 6, scale 2)."""
    graphs = synthetic_graphs(2, READOUT.input_irreps, n_radial=READOUT.n_radial, seed=0)
    batch = pad_to_bucket(graphs, BatchBudget(max_graphs=2))
    init = jax.jit(DTNN(READOUT).init)
    members = tuple(
        Member(
            params=jax.device_get(init(jax.random.key(seed), batch)),
            scaler=TargetScaler(offset=5.0 + seed, scale=2.0),
            seed=seed,
        )
        for seed in range(2)
    )
    config = ExperimentConfig(target="total", readout=READOUT)
    return ModelBundle(
        name="tiny-random",
        targets={"total": TargetModel(config=config, members=members)},
        metadata=bundle_metadata("random-init readout for property tests"),
    )


@functools.cache
def tiny_model() -> DielectricModel:
    return DielectricModel(tiny_bundle())


def structure_of(crystal) -> Structure:
    """A pymatgen Structure of a `tests.strategies.Crystal`."""
    return Structure(Lattice(crystal.lattice), crystal.atomic_numbers.tolist(), crystal.frac_coords)


def rotated(structure: Structure, rotation: np.ndarray) -> Structure:
    """The crystal rotated by ``rotation`` (lattice rows and Cartesian positions, R x)."""
    return Structure(
        Lattice(structure.lattice.matrix @ np.asarray(rotation).T),
        structure.species,
        structure.frac_coords,
    )


def inverted(structure: Structure) -> Structure:
    """The crystal inverted through the origin (-x), in the same (right-handed) cell."""
    return Structure(structure.lattice, structure.species, -structure.frac_coords)


def transform(rotation: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """R eps R^T for one [3, 3] rotation (orthogonal matrix) and [..., 3, 3] tensors."""
    return np.einsum("ij,...jk,lk->...il", rotation, eps, rotation)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the largest |b| (Frobenius-free, per component)."""
    return float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-12))


def anisotropy(eps: np.ndarray) -> float:
    """max |traceless part| of [..., 3, 3] tensors: how far from isotropic."""
    iso = np.trace(eps, axis1=-2, axis2=-1)[..., None, None] / 3.0 * np.eye(3)
    return float(np.max(np.abs(eps - iso)))
