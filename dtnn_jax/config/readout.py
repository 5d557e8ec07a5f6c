"""The readout's architecture: `ReadoutConfig`, and the encoder irreps it reads.

Part of the configuration system (`dtnn_jax.config`): a frozen dataclass that checks its
values on construction.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from dtnn_jax.constants import DEFAULT_ENCODER, DEFAULT_ENCODER_LAYER, OUTPUT_MAPS, TARGET_SCALINGS
from dtnn_jax.validation import check_at_least, check_positive

TargetScaling = Literal["none", "standardize"]
OutputMap = Literal["affine", "matrix_exp"]


def encoder_layer_irreps(layer: int, encoder: str = DEFAULT_ENCODER) -> str:
    """Irreps of an encoder's node features after interaction layer ``layer``.

    Read from the encoder's own architecture config (cheap: no weights are loaded).
    """
    from dtnn_jax.encoder.registry import get_encoder

    return get_encoder(encoder).layer_irreps(layer)


def _default_input_irreps() -> str:
    return encoder_layer_irreps(DEFAULT_ENCODER_LAYER)


@dataclasses.dataclass(frozen=True)
class ReadoutConfig:
    """The trainable equivariant readout (DTNN blocks + tensor readout).

    Attributes:
        input_irreps: irreps of the flat per-atom input features ("features" in the graph
            nodes), in e3nn-jax's basis convention. Only l <= 2 is used; l = 1 becomes
            Cartesian vectors, l = 2 symmetric traceless 3x3 tensors, l = 3 is dropped
            (`dtnn_jax.models.cartesian`). Parity labels are ignored (SevenNet-0 is
            SO(3)-only; Nequix's 1o/2e are the true vectors/tensors the head needs).
        n_radial: width of the per-edge radial features ("radial" in the graph edges).
        width: hidden width of every scalar MLP (paper: 128).
        vector_channels: number of atom/bond vector channels inside the blocks.
        tensor_channels: number of atom rank-2 tensor channels inside the blocks.
        n_blocks: number of equivariant blocks (paper: 2).
        mlp_layers: dense layers per scalar MLP (the last one has no activation).
        dropout_rate: dropout on the atom scalars (paper: 0.2).
        use_edges: False gives DTNN-simple (no bond scalars/vectors at all).
        avg_num_neighbors: bond messages summed into an atom are divided by this constant,
            so the sum stays O(1) whatever the cutoff (SevenNet-0's 5 A cutoff gives 27.1
            edges per atom on the shipped set; 40 is a round upper value; 27 gave the same
            validation MAE on total, seed 0: 1.27 vs 1.25).
        target_scaling: "none": the network predicts eps directly; "standardize": it
            predicts (eps - offset I) / scale with offset and scale taken from the training
            targets (see `dtnn_jax.models.scaling`).
        output_map: how the network's symmetric output y becomes eps: "matrix_exp"
            (``expm(log(offset) I + y)``: positive definite, log-eigenvalue space; needs
            ``target_scaling="standardize"``) or "affine" (``offset I + scale y``, which can
            predict negative eigenvalues). On validation (5 seeds, layer 3) matrix_exp was
            better on electronic (0.489 vs 0.556, in 5 of 5 seeds) and tied on ionic and total
            (``benchmarks/results/readout_variants.md``); with that, and because its tensors
            are always physical, it is the default. Configs saved before this setting
            existed were affine, and `ExperimentConfig.from_dict` reads them so.
        edge_cutoff_angstrom: the cutoff of the graphs the readout reads (the encoder's):
            every bond input (radial columns, neighbour count, unit-vector sums) is weighted
            by a polynomial envelope that vanishes with its first two derivatives there, so
            eps is continuous in the geometry (issue 23). None is the legacy readout, an
            un-enveloped neighbour count, which jumps when a shell crosses the cutoff;
            configs saved before this setting existed were legacy and
            `ExperimentConfig.from_dict` reads them so.
        ionic_channels: 0 gives the tensor head above; C > 0 the PSD ionic head
            (`dtnn_jax.models.ionic.GramIonic`, C effective-charge channels): eps_ion PSD and
            exactly 0 for a one-atom cell; it outputs eps_ion itself (target_scaling "none",
            output_map "affine").
    """

    input_irreps: str = dataclasses.field(default_factory=_default_input_irreps)
    n_radial: int = 8
    width: int = 128
    vector_channels: int = 64
    tensor_channels: int = 32
    n_blocks: int = 2
    mlp_layers: int = 2
    dropout_rate: float = 0.2
    use_edges: bool = True
    avg_num_neighbors: float = 40.0
    target_scaling: TargetScaling = "standardize"
    output_map: OutputMap = "matrix_exp"
    edge_cutoff_angstrom: float | None = 5.0
    ionic_channels: int = 0

    def __post_init__(self):
        import e3nn_jax as e3nn  # here, not at import: the CLI's --help must stay fast

        try:
            irreps = e3nn.Irreps(self.input_irreps)
        except Exception as err:  # e3nn raises bare ValueError/AssertionError
            raise ValueError(f"ReadoutConfig.input_irreps {self.input_irreps!r}: {err}") from err
        if irreps.dim == 0 or not any(ir.l == 0 for _, ir in irreps):
            raise ValueError(f"ReadoutConfig.input_irreps needs l=0 channels: {irreps}")
        if any(ir.l > 3 for _, ir in irreps):
            raise ValueError(
                f"ReadoutConfig.input_irreps must have l <= 3 (l = 3 is dropped), got {irreps}"
            )
        check_at_least(
            self, 1, "n_radial", "width", "vector_channels", "tensor_channels", "mlp_layers"
        )
        check_at_least(self, 0, "n_blocks")
        check_positive(self, "avg_num_neighbors")
        if self.edge_cutoff_angstrom is not None:
            check_positive(self, "edge_cutoff_angstrom")
        check_at_least(self, 0, "ionic_channels")
        if self.ionic_channels and (self.target_scaling != "none" or self.output_map != "affine"):
            raise ValueError(
                "ReadoutConfig.ionic_channels > 0 (the PSD ionic head) outputs eps_ion itself: "
                "it needs target_scaling 'none' and output_map 'affine'"
            )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"ReadoutConfig.dropout_rate must be in [0, 1): {self.dropout_rate}")
        if self.target_scaling not in TARGET_SCALINGS:
            raise ValueError(
                f"ReadoutConfig.target_scaling must be one of {TARGET_SCALINGS}, "
                f"got {self.target_scaling!r}"
            )
        if self.output_map not in OUTPUT_MAPS:
            raise ValueError(
                f"ReadoutConfig.output_map must be one of {OUTPUT_MAPS}, got {self.output_map!r}"
            )
        if self.output_map == "matrix_exp" and self.target_scaling != "standardize":
            raise ValueError(
                "ReadoutConfig.output_map='matrix_exp' needs target_scaling='standardize' "
                "(its reference point log(offset) comes from the training targets)"
            )


def readout_for(encoder: str, layer: int, **settings) -> ReadoutConfig:
    """A readout reading ``encoder``'s layer ``layer`` (its irreps and radial basis width)."""
    from dtnn_jax.encoder.registry import get_encoder

    enc = get_encoder(encoder)
    return ReadoutConfig(
        input_irreps=enc.layer_irreps(layer),
        n_radial=enc.n_radial,
        edge_cutoff_angstrom=enc.cutoff_angstrom,
        **settings,
    )
