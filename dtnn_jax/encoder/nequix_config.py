"""Architecture of a frozen Nequix encoder, as a hashable config read from the converter's json.

The config is a static argument of the jitted forward pass (`dtnn_jax.encoder.nequix`), so it
holds only tuples, numbers and strings. ``experiments/convert_nequix.py`` writes the json.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import e3nn_jax as e3nn

from dtnn_jax.encoder.interface import SpeciesTable

# e3nn-jax's `normalize_function(silu)` constant c (the gate and scalar activations are
# silu(x) / c): the RMS of silu on the 10^6 + 1 quantiles of N(0, 1), as e3nn-jax 0.21
# computes it in float32, the precision the models were trained and are referenced in. The
# float64 quadrature gives 0.5964586854 (1.6e-6 relative difference).
SILU_NORMALIZATION = 0.5964577198028564


class NequixWeightsError(ValueError):
    """The weight file does not match the architecture it claims."""


@dataclasses.dataclass(frozen=True)
class NequixConfig(SpeciesTable):
    """Architecture of a frozen Nequix encoder (static under jit, hashable).

    Attributes:
        cutoff_angstrom: neighbour cutoff radius r_c (angstrom).
        n_radial_basis: number of Bessel functions (2/r_c) sin(n pi r / r_c) / r, n = 1..N.
        radial_polynomial_p: exponent p of the polynomial envelope (NequIP's, r / r_c < 1).
        radial_mlp_hidden: hidden widths of the radial MLP (plain SiLU, no biases).
        lmax_edge: maximum l of the edge spherical harmonics (``0e+1o+...``).
        node_irreps: the one-hot species input, then the node irreps after each of the
            ``num_layers`` interaction layers (true parity, e3nn notation).
        avg_n_neighbors: the aggregated messages are divided by its square root.
        energy_scale: multiplies the readout (dimensionless; the readout is in eV).
        energy_shift_ev: added to every atomic energy (eV).
        species_z: atomic number of each species index (ascending, nequix's order).
        layer_norm: whether each layer applies the RMS layer norm before its gate.
        layer_norm_eps: the norm's epsilon (added to the mean square).
        silu_normalization: c of the normalised SiLU silu(x) / c (see the module constant).
        model_name: name of the converted checkpoint. Like ``source_sha256``, provenance
            only: excluded from ``==`` and the hash, so models of one architecture share a
            compiled forward pass.
        source_sha256: sha256 of the source ``.nqx``.
    """

    cutoff_angstrom: float
    n_radial_basis: int
    radial_polynomial_p: float
    radial_mlp_hidden: tuple[int, ...]
    lmax_edge: int
    node_irreps: tuple[str, ...]
    avg_n_neighbors: float
    energy_scale: float
    energy_shift_ev: float
    species_z: tuple[int, ...]
    layer_norm: bool = True
    layer_norm_eps: float = 1e-12
    silu_normalization: float = SILU_NORMALIZATION
    model_name: str = dataclasses.field(default="nequix", compare=False)
    source_sha256: str = dataclasses.field(default="", compare=False)

    json_error = NequixWeightsError  # what a malformed weight json raises (`from_json`)

    def __post_init__(self):
        if not self.cutoff_angstrom > 0:
            raise ValueError(f"cutoff must be positive: {self.cutoff_angstrom}")
        if self.n_radial_basis < 1 or self.radial_polynomial_p <= 0:
            raise ValueError(f"need n_radial_basis >= 1 and p > 0: {self}")
        if len(self.node_irreps) < 2:
            raise ValueError("node_irreps needs the input irreps and at least one layer")
        if self.avg_n_neighbors <= 0:
            raise ValueError(f"avg_n_neighbors must be positive: {self.avg_n_neighbors}")
        if list(self.species_z) != sorted(set(self.species_z)) or min(self.species_z) < 1:
            raise ValueError("species_z must be distinct ascending atomic numbers >= 1")
        if self.layer_irreps(0) != e3nn.Irreps(f"{len(self.species_z)}x0e"):
            raise ValueError(f"input irreps {self.node_irreps[0]} != one-hot of the species")
        for k in range(1, self.num_layers + 1):
            irreps = self.layer_irreps(k)
            if irreps != irreps.regroup() or any(ir.l == 0 and ir.p == -1 for _, ir in irreps):
                raise ValueError(f"layer {k} irreps {irreps}: expected regrouped, no 0o")

    @property
    def num_layers(self) -> int:
        return len(self.node_irreps) - 1

    @property
    def num_species(self) -> int:
        return len(self.species_z)

    def layer_irreps(self, k: int) -> e3nn.Irreps:
        """Node irreps after layer k (k = 0: the one-hot species input)."""
        return e3nn.Irreps(self.node_irreps[k])

    def gate_input_irreps(self, k: int) -> e3nn.Irreps:
        """Irreps entering layer k's norm and gate: its output plus one scalar per l > 0."""
        out = self.layer_irreps(k)
        n_gates = sum(mul for mul, ir in out if ir.l > 0)
        return (out + e3nn.Irreps(f"{n_gates}x0e")).regroup()

    @property
    def sh_irreps(self) -> e3nn.Irreps:
        return e3nn.s2_irreps(self.lmax_edge)

    @classmethod
    def fields_from_architecture(cls, arch: dict, path: str | Path) -> dict:
        """The architecture fields of the json written by ``experiments/convert_nequix.py``."""
        if arch.get("index_weights", False):
            raise NequixWeightsError(f"{path}: per-species skip weights not supported")
        return {
            "cutoff_angstrom": float(arch["cutoff_angstrom"]),
            "n_radial_basis": int(arch["n_radial_basis"]),
            "radial_polynomial_p": float(arch["radial_polynomial_p"]),
            "radial_mlp_hidden": tuple(int(h) for h in arch["radial_mlp_hidden"]),
            "lmax_edge": int(arch["lmax_edge"]),
            "node_irreps": tuple(str(s) for s in arch["node_irreps"]),
            "avg_n_neighbors": float(arch["avg_n_neighbors"]),
            "energy_scale": float(arch["energy_scale"]),
            "energy_shift_ev": float(arch["energy_shift_ev"]),
            "species_z": tuple(int(z) for z in arch["species_z"]),
            "layer_norm": bool(arch["layer_norm"]),
        }
