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
import json
from pathlib import Path
from typing import Any

import e3nn_jax as e3nn
import flax.struct
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dtnn_jax.graph.batching import BatchBudget
from dtnn_jax.graph.geometry import crystal_sum, node_mask

# The converted weights of every shipped encoder: <name>.npz + <name>.json (+ licences).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def weights_files(name_or_path: str | Path, converter: str) -> tuple[Path, Path]:
    """(``<name>.npz``, ``<name>.json``) of a shipped name or a path stem; both must exist.

    Raises:
        FileNotFoundError: naming the missing file and the converter that writes it.
    """
    stem = Path(name_or_path)
    if not stem.parent.parts:
        stem = WEIGHTS_DIR / str(name_or_path)
    name = stem.name.removesuffix(".npz").removesuffix(".json")
    files = stem.parent / f"{name}.npz", stem.parent / f"{name}.json"
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"{f} not found; run {converter} to create the weights")
    return files


def read_converted(name_or_path: str | Path, converter: str, config_class) -> tuple[dict, Any]:
    """The named arrays of a converted weight file and its architecture config.

    Returns:
        (state, config): ``<name>.npz``'s arrays by name (numpy) and
        ``config_class.from_json(<name>.json)``.
    """
    npz, js = weights_files(name_or_path, converter)
    config = config_class.from_json(js)
    with np.load(npz) as data:
        state = {k: data[k] for k in data.files}
    return state, config


class SpeciesTable:
    """What the encoder configs share: element bookkeeping (``species_z``, ``model_name``)
    and reading the json a converter (``experiments/convert_*.py``) writes."""

    species_z: tuple[int, ...]
    model_name: str
    json_error = ValueError  # what a malformed weight json raises

    @classmethod
    def fields_from_architecture(cls, arch: dict, path: str | Path) -> dict:
        """The config's architecture fields from the json's ``architecture`` block."""
        raise NotImplementedError

    @classmethod
    def from_json(cls, path: str | Path):
        """Reads a converter json: its ``architecture`` block and the provenance
        (``model_name``, ``source_sha256``)."""
        meta = json.loads(Path(path).read_text())
        try:
            arch = meta["architecture"]
            return cls(
                **cls.fields_from_architecture(arch, path),
                model_name=str(arch.get("model_name") or Path(path).stem),
                source_sha256=str(meta.get("source_sha256", "")),
            )
        except KeyError as err:
            raise cls.json_error(f"{path}: missing key {err} in the {cls.__name__} json") from err

    def z_to_index_table(self) -> tuple[int, ...]:
        """Species index of each atomic number 0..max(Z); -1 where the model has none."""
        table = [-1] * (max(self.species_z) + 1)
        for index, z in enumerate(self.species_z):
            table[z] = index
        return tuple(table)

    def check_species(self, atomic_numbers) -> None:
        """Raises ValueError naming the elements the model was not trained on (host side).

        The jitted forward pass cannot raise: it maps unknown elements to species 0.
        """
        table = self.z_to_index_table()
        unknown = sorted(
            {int(z) for z in atomic_numbers if not 0 < int(z) < len(table) or table[int(z)] < 0}
        )
        if unknown:
            raise ValueError(
                f"{self.model_name} has no parameters for atomic number(s) {unknown}; "
                f"it knows {len(self.species_z)} elements (Z in {sorted(self.species_z)})"
            )


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

    @classmethod
    def from_atomic_energies(cls, atomic, graph: jraph.GraphsTuple, features, **edges):
        """A forward pass's output from its [n_node] atomic energies (padding nodes are set
        to 0 here and each crystal's energy summed), its layer features and the edge
        quantities (``edge_radial``, ``edge_sh``, ``edge_vectors``, ``edge_lengths``)."""
        atomic = jnp.where(node_mask(graph), atomic, 0.0)  # [n_node]
        energy = crystal_sum(atomic, graph)  # [n_graph]
        return cls(energy=energy, node_energies=atomic, node_features=tuple(features), **edges)


class FrozenEncoder(abc.ABC):
    """A pretrained potential used as a fixed feature extractor.

    Subclasses set the class attributes, name the weights file and implement `load_params`,
    `layer_irreps` and `forward`. ``forward(params, graph)`` is pure (the config is static),
    so it can be jitted, vmapped and differentiated with respect to positions; its
    parameters enter through `jax.lax.stop_gradient` and are never trained.

    Attributes:
        name: display name ("SevenNet-0", "Nequix-OAM-1", ...), used in messages.
        key: registry name (lower case, e.g. "sevennet-0"), recorded in bundles and caches.
        weights: stem of the converted weights in the package (``<weights>.npz/.json``).
        config_class: the architecture's frozen dataclass (``from_json``), whose fields
            ``cutoff_angstrom``, ``species_z``, ``num_layers`` and ``source_sha256`` the
            properties below read.
        budget: the padded-batch limits tuned for this encoder's edge density.
        inversion_equivariant: whether features carry parity (O(3)) or not (SO(3) only).
    """

    config_class: type
    budget: BatchBudget
    inversion_equivariant: bool = False

    def __init__(self, weights: str, name: str, key: str):
        self.weights = weights
        self.name = name
        self.key = key

    @abc.abstractmethod
    def load_params(self) -> Any:
        """The converted weights as the forward pass's pytree of jax arrays."""

    @abc.abstractmethod
    def layer_irreps(self, layer: int) -> str:
        """Irreps of the node features after interaction layer ``layer`` (1-based)."""

    @abc.abstractmethod
    def forward(self, params: Any, graph: jraph.GraphsTuple) -> EncoderOutput:
        """Runs the encoder on a padded batch (pure; see `EncoderOutput`)."""

    @functools.cached_property
    def params(self) -> Any:
        """The weights, loaded on first use (asking for the config or irreps is cheap)."""
        return self.load_params()

    @functools.cached_property
    def config(self) -> Any:
        """The architecture (hashable, static under jit)."""
        return self.config_class.from_json(WEIGHTS_DIR / f"{self.weights}.json")

    @property
    def cutoff_angstrom(self) -> float:
        """Neighbour cutoff radius of the graphs this encoder reads (angstrom)."""
        return float(self.config.cutoff_angstrom)

    @property
    def supported_z(self) -> tuple[int, ...]:
        """Atomic numbers the encoder has parameters for."""
        return tuple(self.config.species_z)

    @property
    def num_layers(self) -> int:
        """Number of interaction layers (feature layers 1..num_layers)."""
        return int(self.config.num_layers)

    @property
    def weights_sha256(self) -> str:
        """sha256 of the source weights: the encoder's identity in bundles and caches."""
        return str(self.config.source_sha256)

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
