"""Architecture of a SevenNet (NequIP-type) potential, as a frozen, hashable config.

The config is a static argument of the jitted forward pass, so it holds only tuples,
numbers and strings. It is read from the json written by ``experiments/convert_sevennet.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dtnn_jax.encoder.interface import SpeciesTable

# e3nn's `normalize2mom(silu)` constant: 1 / sqrt(E[silu(z)^2]), z ~ N(0, 1), as e3nn
# (torch) estimates it from 10^6 seeded samples. Measured with e3nn 0.6.0 in the torch
# reference environment; an exact quadrature would differ in the 6th digit and break parity.
SILU_SECOND_MOMENT_CONSTANT = 1.6791767923989418


@dataclasses.dataclass(frozen=True)
class SevenNetConfig(SpeciesTable):
    """Architecture of the frozen SevenNet encoder.

    Attributes:
        cutoff_angstrom: neighbour cutoff radius (angstrom).
        cutoff_on_angstrom: where the XPLOR switching function starts to fall from 1
            (None for the polynomial envelope).
        n_radial_basis: number of Bessel radial basis functions.
        radial_hidden: hidden widths of the radial MLP (no biases, normalised SiLU).
        lmax_edge: maximum l of the edge spherical harmonics.
        node_irreps: irreps of the node features, input of layer 1 then output of every
            interaction layer (``num_layers + 1`` entries, SO(3) only: all labelled 'e').
        conv_denominators: per-layer divisor of the aggregated messages
            (sqrt of the average number of neighbours).
        species_z: atomic number of each species index of the one-hot embedding.
        instruction_order: column order of the radial-MLP output: "unsorted" (checkpoints of
            sevenn < 0.11, tensor-product instruction order) or "sorted" (by output irrep).
        cutoff_function: radial envelope, "xplor" (SevenNet-0: smooth switch from
            cutoff_on to cutoff) or "polynomial" (NequIP's, exponent polynomial_cutoff_p).
        polynomial_cutoff_p: exponent p of the polynomial envelope.
        activation_constant: normalisation constant of e3nn's SiLU (see module constant).
        model_name: name of the converted checkpoint.
        source_sha256: sha256 of the source ``.pth`` (provenance).
    """

    cutoff_angstrom: float
    cutoff_on_angstrom: float | None
    n_radial_basis: int
    radial_hidden: tuple[int, ...]
    lmax_edge: int
    node_irreps: tuple[str, ...]
    conv_denominators: tuple[float, ...]
    species_z: tuple[int, ...]
    instruction_order: str = "unsorted"
    cutoff_function: str = "xplor"
    polynomial_cutoff_p: float = 6.0
    activation_constant: float = SILU_SECOND_MOMENT_CONSTANT
    model_name: str = "sevennet0"
    source_sha256: str = ""

    def __post_init__(self):
        if self.cutoff_function == "xplor":
            if self.cutoff_on_angstrom is None or not (
                0 < self.cutoff_on_angstrom < self.cutoff_angstrom
            ):
                raise ValueError(
                    f"the XPLOR envelope needs 0 < cutoff_on ({self.cutoff_on_angstrom}) "
                    f"< cutoff ({self.cutoff_angstrom})"
                )
        elif self.cutoff_function == "polynomial":
            if self.polynomial_cutoff_p <= 0:
                raise ValueError(f"polynomial_cutoff_p must be > 0: {self.polynomial_cutoff_p}")
        else:
            raise ValueError(f"cutoff_function must be 'xplor' or 'polynomial': {self}")
        if self.n_radial_basis < 1:
            raise ValueError(f"n_radial_basis must be positive, got {self.n_radial_basis}")
        if len(self.node_irreps) != len(self.conv_denominators) + 1:
            raise ValueError(
                f"{len(self.node_irreps)} node irreps for {len(self.conv_denominators)} layers;"
                " expected one more irreps than layers"
            )
        for text in self.node_irreps:
            parse_irreps(text)
        if any(d <= 0 for d in self.conv_denominators):
            raise ValueError(f"conv denominators must be positive: {self.conv_denominators}")
        if len(set(self.species_z)) != len(self.species_z) or min(self.species_z) < 1:
            raise ValueError("species_z must hold distinct atomic numbers >= 1")
        if self.instruction_order not in ("unsorted", "sorted"):
            raise ValueError(f"instruction_order must be 'unsorted' or 'sorted': {self}")

    @property
    def num_layers(self) -> int:
        return len(self.conv_denominators)

    @property
    def num_species(self) -> int:
        return len(self.species_z)

    def layer_irreps(self, k: int) -> list[tuple[int, int]]:
        """[(mul, l), ...] of the node features after layer k (k = 0: the embedding)."""
        return parse_irreps(self.node_irreps[k])

    def gate_input_irreps(self, k: int) -> list[tuple[int, int]]:
        """Irreps entering the gate of layer k (1-based): scalars + one gate per gated channel."""
        out = self.layer_irreps(k)
        n_gates = sum(mul for mul, l in out if l > 0)
        return [(mul + n_gates, 0) if l == 0 else (mul, l) for mul, l in out]

    def conv_paths(self, k: int) -> list[tuple[int, int, int, int]]:
        """Tensor-product paths (l_node, l_edge, l_out, mul) of layer k (1-based).

        In sevenn's instruction order (node irreps outer, edge l, then output l ascending);
        outputs above the layer's output lmax are dropped, as sevenn does.
        """
        lmax_out = max(l for _, l in self.layer_irreps(k))
        paths = []
        for mul, l1 in self.layer_irreps(k - 1):
            for l2 in range(self.lmax_edge + 1):
                for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                    if l3 <= lmax_out:
                        paths.append((l1, l2, l3, mul))
        return paths

    @classmethod
    def fields_from_architecture(cls, arch: dict, path: str | Path) -> dict:
        """The architecture fields of the json written by ``experiments/convert_sevennet.py``."""
        type_map = {int(z): int(i) for z, i in arch["type_map"].items()}
        species_z = [0] * len(type_map)
        for z, i in type_map.items():
            species_z[i] = z
        if not arch.get("normalize_sph", True):
            raise ValueError(f"{path}: unnormalised edge spherical harmonics not supported")
        cutoff_on = arch["cutoff_on_angstrom"]
        return {
            "cutoff_angstrom": float(arch["cutoff_angstrom"]),
            "cutoff_on_angstrom": None if cutoff_on is None else float(cutoff_on),
            "cutoff_function": arch.get("cutoff_function", "xplor"),
            "polynomial_cutoff_p": float(arch.get("polynomial_cutoff_p", 6.0)),
            "n_radial_basis": int(arch["n_radial_basis"]),
            "radial_hidden": tuple(int(h) for h in arch["radial_hidden"]),
            "lmax_edge": int(arch["lmax_edge"]),
            "node_irreps": tuple(arch["node_irreps"]),
            "conv_denominators": tuple(float(d) for d in arch["conv_denominators"]),
            "species_z": tuple(species_z),
            "instruction_order": arch["instruction_order"],
        }


def parse_irreps(text: str) -> list[tuple[int, int]]:
    """'128x0e+64x1e+32x2e' -> [(128, 0), (64, 1), (32, 2)]; SO(3) models label all 'e'."""
    out = []
    for term in text.replace(" ", "").split("+"):
        mul, ir = term.split("x") if "x" in term else ("1", term)
        if not ir or ir[-1] != "e":
            raise ValueError(f"irreps {text!r}: expected even ('e') labels, got {term!r}")
        out.append((int(mul), int(ir[:-1])))
    ls = [l for _, l in out]
    if ls != sorted(set(ls)):
        raise ValueError(f"irreps {text!r}: expected one entry per l in increasing order")
    return out
