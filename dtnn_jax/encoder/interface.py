"""What a frozen encoder is to the rest of the package: `FrozenEncoder` and `EncoderOutput`.

A frozen encoder is a pretrained interatomic potential whose per-layer node features feed
the readouts. Everything downstream (featurization, the feature cache, training, inference,
bundles) talks to it only through this interface, so a second potential is one new module
that implements it (`dtnn_jax.encoder.sevennet_encoder`, `dtnn_jax.encoder.nequix_encoder`)
and one registry entry (`dtnn_jax.encoder.registry`).
"""

from __future__ import annotations

import abc
import functools
from typing import Any

import e3nn_jax as e3nn
import flax.struct
import jax
import jraph

from dtnn_jax.graph.batching import BatchBudget


@flax.struct.dataclass
class EncoderOutput:
    """Outputs of a frozen encoder on a padded batch.

    Attributes:
        energy: [n_graph] total energy per crystal (eV); padding graphs are 0.
        node_energies: [n_node] atomic energies (eV); padding nodes are 0.
        node_features: per interaction layer k = 1..L, ``IrrepsArray [n_node, irreps_k]``;
            padding nodes are 0.
        edge_radial: [n_edge, n_radial_basis] radial basis times the cutoff envelope;
            padding edges are 0.
        edge_sh: ``IrrepsArray [n_edge, "0e+1e+2e"...]`` spherical harmonics of the unit
            edge direction; padding edges are 0 (l > 0).
        edge_vectors: [n_edge, 3] r_ij = x_j - x_i + shift (angstrom).
        edge_lengths: [n_edge] |r_ij| (angstrom); padding edges are 0.
    """

    energy: jax.Array
    node_energies: jax.Array
    node_features: tuple[e3nn.IrrepsArray, ...]
    edge_radial: jax.Array
    edge_sh: e3nn.IrrepsArray
    edge_vectors: jax.Array
    edge_lengths: jax.Array


class FrozenEncoder(abc.ABC):
    """A pretrained potential used as a fixed feature extractor.

    Subclasses set `name`, load `params` and a static `config`, and implement `forward`.
    ``forward(params, graph)`` is pure (the config is static), so it can be jitted, vmapped
    and differentiated with respect to positions; its parameters enter through
    `jax.lax.stop_gradient` and are never trained.

    Attributes:
        name: display name ("SevenNet-0", "Nequix-OAM-1", ...), used in messages.
        key: registry name (lower case, e.g. "sevennet-0"), recorded in bundles and caches.
        params: the converted weights (a pytree of jax arrays).
        config: the architecture, hashable (static under jit).
        budget: the padded-batch limits tuned for this encoder's edge density.
        inversion_equivariant: whether features carry parity (O(3)) or not (SO(3) only).
    """

    name: str
    key: str
    params: Any
    config: Any
    budget: BatchBudget
    inversion_equivariant: bool = False

    @property
    @abc.abstractmethod
    def cutoff_angstrom(self) -> float:
        """Neighbour cutoff radius of the graphs this encoder reads (angstrom)."""

    @property
    @abc.abstractmethod
    def supported_z(self) -> tuple[int, ...]:
        """Atomic numbers the encoder has parameters for."""

    @property
    @abc.abstractmethod
    def num_layers(self) -> int:
        """Number of interaction layers (feature layers 1..num_layers)."""

    @abc.abstractmethod
    def layer_irreps(self, layer: int) -> str:
        """Irreps of the node features after interaction layer ``layer`` (1-based)."""

    @property
    @abc.abstractmethod
    def weights_sha256(self) -> str:
        """sha256 of the source weights: the encoder's identity in bundles and caches."""

    @abc.abstractmethod
    def forward(self, params: Any, graph: jraph.GraphsTuple) -> EncoderOutput:
        """Runs the encoder on a padded batch (pure; see `EncoderOutput`)."""

    @property
    def n_radial(self) -> int:
        """Width of ``EncoderOutput.edge_radial``."""
        return int(self.config.n_radial_basis)

    def check_layer(self, layer: int) -> None:
        """Raises ValueError unless ``layer`` is one of this encoder's feature layers."""
        if not 1 <= int(layer) <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers} for {self.name}, got {layer}")

    def energy_and_forces(self, params: Any, graph: jraph.GraphsTuple):
        """Energies [n_graph] (eV) and forces -dE/dx [n_node, 3] (eV/A) by autodiff."""
        import jax.numpy as jnp

        def total(positions):
            g = graph._replace(nodes={**graph.nodes, "positions": positions})
            energy = self.forward(params, g).energy
            return jnp.sum(energy), energy

        grad, energy = jax.grad(total, has_aux=True)(graph.nodes["positions"])
        return energy, -grad

    @functools.cached_property
    def jitted_forward(self):
        """``jax.jit(forward)`` on one padded batch (compiled once per bucket shape)."""
        return jax.jit(self.forward)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"
