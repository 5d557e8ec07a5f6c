"""The frozen SevenNet encoder (NequIP-type, SO(3)) as pure JAX functions.

One interaction layer k (sevenn's ``NequIP_interaction_block`` with a linear self-connection):

    sc  = Linear_sc(x)                         # node irreps -> gate input irreps
    x   = Linear_in(x)                         # channel mixing per l
    m_i = sum_j w(|r_ij|) * CG(x_j, Y(r_ij)) / denominator      # uvu tensor product
    x   = Linear_out(m) + sc
    x   = Gate(x)                              # SiLU on scalars, SiLU gates on l > 0

Edges: ``senders`` = neighbour j, ``receivers`` = centre i, ``r_ij = x_j - x_i + shift``
(sevenn: ``edge_index[1]`` -> ``edge_index[0]``). Padding edges have zero length: the norm
and the Bessel basis use a safe denominator and are masked, so neither values nor gradients
are NaN.

All node features are in e3nn-jax's basis (identical to e3nn torch's real spherical
harmonics for l <= 2) and are rotation-equivariant under ``Irreps.D_from_matrix(R)`` for
proper rotations R. SevenNet-0 is SO(3)-only (``is_parity=False``): every irrep is labelled
``e`` as in sevenn, so the l = 1 features are pseudo-vector-labelled and the model is not
inversion-equivariant; only use ``D_from_matrix`` with det(R) = +1.
"""

from __future__ import annotations

import functools
import math

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import jraph

from dtnn_jax.encoder.config import SevenNetConfig
from dtnn_jax.encoder.interface import EncoderOutput, FrozenEncoder
from dtnn_jax.encoder.weights import conv_layout, load_weights
from dtnn_jax.graph import BatchBudget
from dtnn_jax.graph.geometry import (
    crystal_sum,
    edge_mask,
    edge_vectors,
    node_mask,
    safe_norm,
    unit_vectors,
)


def _silu(x, config: SevenNetConfig):
    return jax.nn.silu(x) * config.activation_constant


def radial_embedding(lengths, frequencies, config: SevenNetConfig, mask):
    """Bessel basis (2/rc) sin(w_n r)/r times the cutoff envelope; [n_edge, n_basis]."""
    r = jnp.where(mask, lengths, 1.0)[:, None]  # [n_edge, 1]
    bessel = (2.0 / config.cutoff_angstrom) * jnp.sin(frequencies * r) / r
    return jnp.where(mask[:, None], bessel * cutoff_envelope(r, config), 0.0)


def cutoff_envelope(r, config: SevenNetConfig):
    """sevenn's XPLOR switching function or NequIP's polynomial envelope of r (angstrom)."""
    cut = config.cutoff_angstrom
    if config.cutoff_function == "polynomial":
        p = config.polynomial_cutoff_p
        x = r / cut
        return (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * x**p
            + p * (p + 2.0) * x ** (p + 1.0)
            - p * (p + 1.0) / 2.0 * x ** (p + 2.0)
        )
    r_sq = r * r
    on_sq = config.cutoff_on_angstrom**2
    cut_sq = cut**2
    return jnp.where(
        r < config.cutoff_on_angstrom,
        1.0,
        (cut_sq - r_sq) ** 2 * (cut_sq + 2 * r_sq - 3 * on_sq) / (cut_sq - on_sq) ** 3,
    )


def edge_spherical_harmonics(vectors, lengths, mask, lmax: int):
    """Component-normalised real spherical harmonics of the unit edge vectors, [n_edge, (l+1)^2].

    Labelled "0e+1e+2e" as in sevenn (SO(3) model); computed by e3nn-jax with odd l = 1
    (the polynomials do not depend on the label).
    """
    del mask  # padding edges have zero length, so unit_vectors gives them the zero vector
    unit = unit_vectors(vectors, lengths)  # [n_edge, 3]
    irreps_compute = e3nn.Irreps([(1, (l, (-1) ** l)) for l in range(lmax + 1)])
    sh = e3nn.spherical_harmonics(irreps_compute, unit, normalize=False, normalization="component")
    return sh.array


def _linear(blocks: dict, x: dict[int, jax.Array], out_ls) -> dict[int, jax.Array]:
    """e3nn Linear (path normalisation 'element', no bias) on per-l features [n, mul, 2l+1]."""
    out = {}
    for l, n_out in out_ls:
        key = f"l{l}"
        if key in blocks and l in x:
            w = blocks[key]  # [mul_in, mul_out]
            out[l] = jnp.einsum("nui,uw->nwi", x[l], w) / math.sqrt(w.shape[0])
        else:  # no input of this l: e3nn's output mask gives zeros
            n_nodes = next(iter(x.values())).shape[0]
            out[l] = jnp.zeros((n_nodes, n_out, 2 * l + 1), next(iter(x.values())).dtype)
    return out


def _radial_mlp(weights: tuple, embedding, config: SevenNetConfig):
    """e3nn FullyConnectedNet without biases: normalised SiLU on hidden layers."""
    h = embedding
    for i, w in enumerate(weights):
        h = h @ w / math.sqrt(w.shape[0])
        if i < len(weights) - 1:
            h = _silu(h, config)
    return h


def _convolution(layer, x, sh, radial, graph, config, k: int, n_nodes: int):
    """Messages CG(x_j, Y(r_ij)) weighted by the radial MLP, summed into receivers."""
    weights = _radial_mlp(layer["radial"], radial, config)  # [n_edge, n_weights]
    layout = conv_layout(config, k)
    gathered = {}
    column = 0
    for l1, entries in layout.items():
        n_paths = len(entries)
        mul = x[l1].shape[1]
        w = weights[:, column : column + mul * n_paths].reshape(-1, mul, n_paths)
        column += mul * n_paths
        # [n_edge, 2l1+1, sum_paths (2l3+1)]: the edge's SH contracted with the fused CG.
        edge_cg = jnp.einsum("ej,ijc->eic", sh, layer["cg"][f"l{l1}"])
        # expand the per-path weight to the path's output components
        path_of_col = [p for p, _, l3, _ in entries for _ in range(2 * l3 + 1)]
        w_cols = w[:, :, jnp.asarray(path_of_col)]  # [n_edge, mul, width]
        x_j = x[l1][graph.senders]  # [n_edge, mul, 2l1+1]
        # 2l1+1 (<= 7) terms: an elementwise sum fuses with the weights (a batched matmul of
        # tiny matrices per edge is much slower on CPU).
        messages = sum(x_j[:, :, i, None] * edge_cg[:, None, i, :] for i in range(2 * l1 + 1))
        messages = messages * w_cols
        gathered[l1] = jax.ops.segment_sum(messages, graph.receivers, num_segments=n_nodes)
    # Regroup per output l, in sevenn's sorted order (by l3, then instruction order).
    by_l3: dict[int, list] = {}
    for l1, entries in layout.items():
        for _, _, l3, col in entries:
            by_l3.setdefault(l3, []).append(gathered[l1][:, :, col : col + 2 * l3 + 1])
    denominator = config.conv_denominators[k - 1]
    return {l3: jnp.concatenate(parts, axis=1) / denominator for l3, parts in by_l3.items()}


def _gate(x: dict[int, jax.Array], out_irreps, config: SevenNetConfig) -> dict[int, jax.Array]:
    """e3nn Gate: SiLU on the scalars, SiLU(gates) times the l > 0 channels."""
    mul0 = out_irreps[0][1]
    scalars = x[0][:, :mul0, :]
    gates = _silu(x[0][:, mul0:, 0], config)  # [n, n_gated]
    out = {0: _silu(scalars, config)}
    offset = 0
    for l, mul in out_irreps[1:]:
        out[l] = x[l] * gates[:, offset : offset + mul, None]
        offset += mul
    return out


def _to_irreps_array(x: dict[int, jax.Array]) -> e3nn.IrrepsArray:
    irreps = e3nn.Irreps([(x[l].shape[1], (l, 1)) for l in sorted(x)])
    flat = jnp.concatenate([x[l].reshape(x[l].shape[0], -1) for l in sorted(x)], axis=1)
    return e3nn.IrrepsArray(irreps, flat)


def sevennet_forward(params, graph: jraph.GraphsTuple, config: SevenNetConfig) -> EncoderOutput:
    """Runs the frozen encoder on a (padded) batch of crystal graphs.

    Args:
        params: parameter pytree from `load_sevennet0` (enters through stop_gradient).
        graph: batch with ``nodes["positions"]`` [n_node, 3], ``nodes["species"]`` [n_node]
            (atomic numbers), ``edges["shifts"]`` [n_edge, 3]. It must be padded in
            jraph's convention (``dtnn_jax.graph.pad_to_bucket``): the last graph is
            treated as padding and masked out, even if it is a real crystal. Unknown
            elements are not detected here (see `SevenNetConfig.check_species`).
        config: architecture (static under jit).

    Returns:
        `EncoderOutput`.
    """
    params = jax.lax.stop_gradient(params)
    n_nodes = graph.nodes["positions"].shape[0]
    real_node = node_mask(graph)  # [n_node]

    vectors = edge_vectors(graph)  # [n_edge, 3]
    lengths = safe_norm(vectors)  # [n_edge]
    real_edge = (lengths > 0) & edge_mask(graph)  # padding edges: zero length
    radial = radial_embedding(lengths, params["bessel_frequencies"], config, real_edge)
    sh = edge_spherical_harmonics(vectors, lengths, real_edge, config.lmax_edge)  # [n_edge, 9]

    table = jnp.asarray(config.z_to_index_table())
    species = table[jnp.clip(graph.nodes["species"], 0, table.shape[0] - 1)]
    species = jnp.where(real_node, jnp.maximum(species, 0), 0)  # [n_node]
    embedding = params["species_embedding"][species] / math.sqrt(config.num_species)
    x = {0: (embedding * real_node[:, None])[:, :, None]}  # [n_node, 128, 1]

    features = []
    for k in range(1, config.num_layers + 1):
        layer = params["layers"][k - 1]
        in_ls = [(l, mul) for mul, l in config.layer_irreps(k - 1)]
        gate_ls = [(l, mul) for mul, l in config.gate_input_irreps(k)]
        out_ls = [(l, mul) for mul, l in config.layer_irreps(k)]
        sc = _linear(layer["self_connection"], x, gate_ls)
        x = _linear(layer["linear_in"], x, in_ls)
        messages = _convolution(layer, x, sh, radial, graph, config, k, n_nodes)
        x = _linear(layer["linear_out"], messages, gate_ls)
        x = {l: x[l] + sc[l] for l in x}
        x = _gate(x, out_ls, config)
        features.append(_to_irreps_array(x))

    scalars = x[0][:, :, 0]  # [n_node, 128]
    hidden = params["readout_hidden"]
    h = scalars @ hidden / math.sqrt(hidden.shape[0])
    scaled = (h @ params["readout_energy"] / math.sqrt(hidden.shape[1]))[:, 0]
    atomic = scaled * params["energy_scale"][species] + params["energy_shift"][species]
    atomic = jnp.where(real_node, atomic, 0.0)  # [n_node]
    energy = crystal_sum(atomic, graph)  # [n_graph]
    return EncoderOutput(
        energy=energy,
        node_energies=atomic,
        node_features=tuple(features),
        edge_radial=radial,
        edge_sh=e3nn.IrrepsArray(
            e3nn.Irreps([(1, (l, 1)) for l in range(config.lmax_edge + 1)]), sh
        ),
        edge_vectors=vectors,
        edge_lengths=lengths,
    )


# Edge-packed batches: the encoder's cost is mostly per edge, so batches are filled up to an
# edge bucket (8192) and a node limit just under a node bucket (320 = 80 * 2**2, about 8192
# edges at the ~27 edges per atom of oxides and halides at 5 A). Nearly every batch then has
# the same padded shape: on the shipped set 28 batches in 2 compiled shapes, padded/real 1.10
# (nodes) and 1.04 (edges), against 4 shapes and 1.29/1.37 for 32-crystal batches in
# power-of-two buckets (benchmarks/results/encoder_speed.md has the measured trade-off).
SEVENNET_BUDGET = BatchBudget(
    max_graphs=128, max_nodes=319, max_edges=8192, growth=2.0, min_nodes=80, min_edges=2048
)


class SevenNet(FrozenEncoder):
    """A SevenNet checkpoint (SevenNet-0 by default) as a `FrozenEncoder`.

    SO(3)-only: every feature irrep is labelled even, see the module docstring.
    """

    budget = SEVENNET_BUDGET
    inversion_equivariant = False

    def __init__(self, weights: str = "sevennet0", name: str = "SevenNet-0", key: str = ""):
        self.weights = weights
        self.name = name
        self.key = key or name.lower()

    @functools.cached_property
    def _loaded(self) -> tuple[dict, SevenNetConfig]:
        params, config = load_weights(self.weights)
        return jax.tree.map(jnp.asarray, params), config

    @property
    def params(self) -> dict:
        return self._loaded[0]

    @functools.cached_property
    def config(self) -> SevenNetConfig:
        from dtnn_jax.encoder.weights import WEIGHTS_DIR

        return SevenNetConfig.from_json(WEIGHTS_DIR / f"{self.weights}.json")

    @property
    def cutoff_angstrom(self) -> float:
        return float(self.config.cutoff_angstrom)

    @property
    def supported_z(self) -> tuple[int, ...]:
        return tuple(self.config.species_z)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_layers)

    def layer_irreps(self, layer: int) -> str:
        self.check_layer(layer)
        return str(self.config.node_irreps[layer])

    @property
    def weights_sha256(self) -> str:
        return str(self.config.source_sha256)

    def forward(self, params, graph: jraph.GraphsTuple) -> EncoderOutput:
        return sevennet_forward(params, graph, self.config)
