"""The frozen Nequix encoder (NequIP-type, O(3)) as pure JAX functions.

Nequix (Koker et al., arXiv:2508.16067) embeds each atom as a one-hot species vector and
refines it through L interaction layers (``nequix.model.NequixConvolution``):

    h   = Linear_1(x)                                   # channel mixing per irrep
    m_i = sum_j R(|r_ij|) * (h_j (x) Y(r_ij)) / sqrt(avg_n_neighbors)   # 'uvu' tensor product
    y   = Linear_2(m) + Skip(x)                         # -> hidden irreps + one gate per l > 0
    y   = RMSLayerNorm(y)                               # one norm over all irreps of a node
    x   = Gate(y)                                       # SiLU scalars, SiLU(gate) * l > 0

R is a radial MLP (plain SiLU, no biases) of 8 Bessel functions times a polynomial envelope
(p = 6); Y are the spherical harmonics ``0e+1o+2e+3o`` (component normalisation). Layers
1..L-1 output ``128x0e+64x1o+32x2e+32x3o``, the last one ``128x0e``; a linear readout of
its scalars, times ``energy_scale``, plus ``energy_shift`` and the isolated-atom energy of
the species, is the atomic energy (eV).

The model is O(3)-equivariant: the irreps carry true parity (``1o`` vectors flip sign under
inversion, ``2e`` tensors do not), and the features are in e3nn-jax's basis, the one the
original model (written in e3nn-jax + equinox) uses, so they transform with
``IrrepsArray.transform_by_matrix`` for rotations and inversions alike.

Edges: ``senders`` = neighbour j, ``receivers`` = centre i, ``r_ij = x_j - x_i + shift``
(as nequix: ``positions[senders] - positions[receivers]``). Padding edges have zero length:
the norm, the unit vector and the Bessel basis use double-``where`` safe denominators and are
masked, so values and first and second derivatives (``jax.hessian``, forward or reverse
mode) stay finite. Every constant is built in float64 on the host and cast to the dtype of
the positions, so the whole pass runs in float64 when x64 is enabled and the inputs are.
"""

from __future__ import annotations

import math

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dtnn_jax.encoder.interface import EncoderOutput, FrozenEncoder
from dtnn_jax.encoder.nequix_config import SILU_NORMALIZATION, NequixConfig, NequixWeightsError
from dtnn_jax.encoder.nequix_weights import (
    load_nequix,
    load_weights,
    params_from_state,
    tensor_product_layout,
)
from dtnn_jax.graph import BatchBudget
from dtnn_jax.graph.geometry import (
    edge_mask,
    edge_vectors,
    node_mask,
    safe_norm,
    unit_vectors,
)

# The configuration and the weights live in their own modules; their public names are
# re-exported here, where the encoder's users have always imported them from.
__all__ = [
    "NEQUIX_BUDGET",
    "SILU_NORMALIZATION",
    "Nequix",
    "NequixConfig",
    "NequixWeightsError",
    "load_nequix",
    "load_weights",
    "nequix_forward",
    "params_from_state",
]


def polynomial_envelope(r, config: NequixConfig):
    """NequIP's envelope 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = r/r_c."""
    p = config.radial_polynomial_p
    x = r * (1.0 / config.cutoff_angstrom)
    out = 1.0 - ((p + 1.0) * (p + 2.0) / 2.0) * jnp.power(x, p)
    out = out + (p * (p + 2.0)) * jnp.power(x, p + 1.0)
    out = out - (p * (p + 1.0) / 2.0) * jnp.power(x, p + 2.0)
    return jnp.where(x < 1.0, out, 0.0)


def radial_basis(lengths, mask, config: NequixConfig):
    """Bessel basis (2/r_c) sin(n pi r / r_c) / r times the envelope, [n_edge, n_basis].

    Padding (masked) edges are 0; their r is replaced by r_c / 2 inside, so nothing divides
    by zero in any derivative.
    """
    cut = config.cutoff_angstrom
    r = jnp.where(mask, lengths, 0.5 * cut)  # [n_edge]
    n = config.n_radial_basis
    frequencies = jnp.linspace(1.0, n, n, dtype=lengths.dtype) * jnp.pi  # [n_basis]
    bessel = (2.0 / cut) * (jnp.sin(frequencies * r[:, None] / cut) / r[:, None])
    return jnp.where(mask[:, None], bessel * polynomial_envelope(r, config)[:, None], 0.0)


def edge_spherical_harmonics(vectors, lengths, mask, config: NequixConfig):
    """Y(r_ij / |r_ij|), component normalisation, ``IrrepsArray [n_edge, "0e+1o+2e+3o"]``.

    Padding edges get the zero direction: 1 for l = 0, 0 for l > 0.
    """
    unit = jnp.where(mask[:, None], unit_vectors(vectors, lengths), 0.0)  # [n_edge, 3]
    return e3nn.spherical_harmonics(
        config.sh_irreps, unit, normalize=False, normalization="component"
    )


def _silu(x, config: NequixConfig):
    """e3nn-jax's normalised SiLU, silu(x) / c."""
    return jax.nn.silu(x) / config.silu_normalization


def _linear(weights: dict, x: dict, irreps_out: e3nn.Irreps) -> dict:
    """e3nn Linear ('element' paths, 'path' gradient normalisation): x_l W_l / sqrt(mul_in).

    ``x``: {irrep: [n_node, mul_in, 2l+1]}; outputs without weights are zero (e3nn's mask).
    """
    n_node = next(iter(x.values())).shape[0]
    dtype = next(iter(x.values())).dtype
    out = {}
    for mul, ir in irreps_out:
        key = str(ir)
        if key in weights and key in x:
            w = weights[key]  # [mul_in, mul_out]
            out[key] = jnp.einsum("nui,uw->nwi", x[key], w) * (1.0 / w.shape[0]) ** 0.5
        else:
            out[key] = jnp.zeros((n_node, mul, ir.dim), dtype)
    return out


def _radial_mlp(weights: tuple, basis):
    """nequix's MLP: plain SiLU between layers, no biases; [n_edge, n_weights]."""
    h = basis  # [n_edge, n_basis]
    for i, w in enumerate(weights):
        h = h @ w
        if i < len(weights) - 1:
            h = jax.nn.silu(h)
    return h


def _convolution(
    layer, x: dict, sh, basis, graph, config: NequixConfig, k: int, contract: bool = False
) -> dict:
    """Aggregated messages sum_j R(r_ij) (x_j (x) Y(r_ij)) / sqrt(avg_n_neighbors).

    Two forms of the same sum (equal to round-off): a Python sum of broadcast products times
    gathered radial weights (fastest forward pass on CPU), or, with ``contract``, einsum
    contractions (the tensor product, and the radial weights expanded over the output
    columns by a one-hot matrix). Their transposes are again contractions, where the first
    form's turn into zero-padded slices accumulated with ``add_any`` and scatters that
    XLA:CPU fuses badly: Hessian-vector products (`dtnn_jax.physics.force_constants`) run 6x
    faster with ``contract`` (10 atoms, 1,024 padded edges: 1.9 s against 11.7 s).

    Returns:
        {irrep: [n_node, mul_message, 2l+1]}, the regrouped tensor-product irreps.
    """
    n_node = next(iter(x.values())).shape[0]
    groups, blocks, _ = tensor_product_layout(config, k)
    weights = _radial_mlp(layer["radial"], basis)  # [n_edge, n_tp_channels]
    column = 0
    aggregated = []
    for group in groups:
        n_paths = len(group.paths)
        w = weights[:, column : column + group.mul * n_paths]
        w = w.reshape(-1, group.mul, n_paths)  # [n_edge, mul, n_paths]
        column += group.mul * n_paths
        cg = jnp.asarray(group.cg, sh.dtype)  # [d_in, n_sh, width]
        edge_cg = jnp.einsum("ej,ijc->eic", sh, cg)  # [n_edge, d_in, width]
        x_j = x[group.ir_in][graph.senders]  # [n_edge, mul, d_in]
        if contract:
            expand = jnp.asarray(np.eye(n_paths)[group.path_of_column], sh.dtype)  # [width, p]
            messages = jnp.einsum("eui,eic->euc", x_j, edge_cg)  # [n_edge, mul, width]
            messages = messages * jnp.einsum("eup,cp->euc", w, expand)
        else:
            # d_in <= 7 terms: an elementwise sum fuses with the weights on CPU.
            messages = sum(x_j[:, :, i, None] * edge_cg[:, None, i, :] for i in range(cg.shape[0]))
            messages = messages * w[:, :, group.path_of_column]  # [n_edge, mul, width]
        aggregated.append(jax.ops.segment_sum(messages, graph.receivers, num_segments=n_node))
    inv_sqrt_neighbors = 1.0 / math.sqrt(config.avg_n_neighbors)
    out = {}
    for ir_out, entries in blocks:
        d = e3nn.Irrep(ir_out).dim
        parts = [aggregated[g][:, :, col : col + d] for g, col, _ in entries]
        out[ir_out] = jnp.concatenate(parts, axis=1) * inv_sqrt_neighbors  # [n_node, mul, d]
    return out


def _rms_layer_norm(weights: dict, y: dict, config: NequixConfig) -> dict:
    """nequix's RMSLayerNorm (no centering, degree-balanced): y w / sqrt(<y^2> + eps).

    <y^2> = sum over irreps of mean_m sum_u y_um^2 / ((2l+1) n_irreps), one per node.
    """
    n_irreps = len(y)
    mean_square = 0.0
    for value in y.values():  # [n_node, mul, 2l+1]
        weight = 1.0 / (value.shape[2] * n_irreps)
        mean_square = mean_square + jnp.mean(jnp.sum(value**2 * weight, axis=1), axis=-1)
    scale = jnp.power(mean_square + config.layer_norm_eps, -0.5)[:, None, None]  # [n_node,1,1]
    return {key: value * weights[key][:, None] * scale for key, value in y.items()}


def _gate(y: dict, irreps_out: e3nn.Irreps, config: NequixConfig) -> dict:
    """e3nn Gate: the last scalars gate the l > 0 channels, in irreps order."""
    scalars = y["0e"][:, :, 0]  # [n_node, mul_0 + n_gates]
    n_gates = sum(mul for mul, ir in irreps_out if ir.l > 0)
    n_free = scalars.shape[1] - n_gates
    out = {"0e": _silu(scalars[:, :n_free], config)[:, :, None]}
    gates = _silu(scalars[:, n_free:], config)  # [n_node, n_gates]
    offset = 0
    for mul, ir in irreps_out:
        if ir.l > 0:
            out[str(ir)] = y[str(ir)] * gates[:, offset : offset + mul, None]
            offset += mul
    return out


def interaction_layer(
    layer, x: dict, sh, basis, graph, config: NequixConfig, k: int, contract: bool = False
) -> dict:
    """Interaction layer k (1-based): node features {irrep: [n_node, mul, 2l+1]} -> next
    (``contract``: see `_convolution`)."""
    gated = config.gate_input_irreps(k)
    h = _linear(layer["linear_1"], x, config.layer_irreps(k - 1))
    messages = _convolution(layer, h, sh, basis, graph, config, k, contract)
    y = _linear(layer["linear_2"], messages, gated)
    skip = _linear(layer["skip"], x, gated)
    y = {key: y[key] + skip[key] for key in y}
    if config.layer_norm:
        y = _rms_layer_norm(layer["layer_norm"], y, config)
    return _gate(y, config.layer_irreps(k), config)


def _to_irreps_array(x: dict, irreps: e3nn.Irreps) -> e3nn.IrrepsArray:
    """{irrep: [n, mul, 2l+1]} -> ``IrrepsArray [n, irreps.dim]`` (e3nn's mul_ir layout)."""
    flat = [x[str(ir)].reshape(x[str(ir)].shape[0], -1) for _, ir in irreps]
    return e3nn.IrrepsArray(irreps, jnp.concatenate(flat, axis=1))


def species_index(atomic_numbers, node_mask, config: NequixConfig):
    """Atomic numbers [n_node] -> species indices [n_node]; unknown and padding -> 0."""
    table = jnp.asarray(config.z_to_index_table())
    index = table[jnp.clip(atomic_numbers, 0, table.shape[0] - 1)]
    return jnp.where(node_mask, jnp.maximum(index, 0), 0)


def nequix_forward(
    params, graph: jraph.GraphsTuple, config: NequixConfig, contract: bool = False
) -> EncoderOutput:
    """Runs the frozen Nequix encoder on a (padded) batch of crystal graphs.

    Args:
        params: parameter pytree from `load_nequix` (enters through stop_gradient); cast it
            and the positions to float64 (with x64 enabled) for a float64 pass.
        graph: batch with ``nodes["positions"]`` [n_node, 3] (angstrom), ``nodes["species"]``
            [n_node] (atomic numbers), ``edges["shifts"]`` [n_edge, 3] (angstrom), edges
            within ``config.cutoff_angstrom``. It must be padded in jraph's convention: the
            last graph is treated as padding and masked out, even if it is a real crystal.
            Unknown elements are not detected here (see `NequixConfig.check_species`).
        config: architecture (static under jit).
        contract: the convolution's contraction form (see `_convolution`): the same
            energy, for second derivatives (force constants).

    Returns:
        `EncoderOutput`; ``node_features[k-1]`` is the output of layer k (irreps
        ``config.node_irreps[k]``), ``edge_sh`` has irreps ``0e+1o+2e+3o``.
    """
    params = jax.lax.stop_gradient(params)
    dtype = graph.nodes["positions"].dtype
    real_node = node_mask(graph)  # [n_node]

    vectors = edge_vectors(graph).astype(dtype)  # [n_edge, 3]
    lengths = safe_norm(vectors)  # [n_edge]
    real_edge = (lengths > 0) & edge_mask(graph)  # [n_edge]
    basis = radial_basis(lengths, real_edge, config)  # [n_edge, n_basis]
    sh = edge_spherical_harmonics(vectors, lengths, real_edge, config)  # [n_edge, 16]

    species = species_index(graph.nodes["species"], real_node, config)  # [n_node]
    one_hot = jax.nn.one_hot(species, config.num_species, dtype=dtype)  # [n_node, n_species]
    x = {"0e": (one_hot * real_node[:, None])[:, :, None]}  # [n_node, n_species, 1]

    features = []
    for k, layer in enumerate(params["layers"], start=1):
        x = interaction_layer(layer, x, sh.array, basis, graph, config, k, contract)
        features.append(_to_irreps_array(x, config.layer_irreps(k)))

    readout = params["readout"]  # [mul, 1]
    scaled = (x["0e"][:, :, 0] @ readout)[:, 0] * (1.0 / readout.shape[0]) ** 0.5  # [n_node]
    atomic = scaled * config.energy_scale + config.energy_shift_ev
    atomic = atomic + params["atom_energies"][species]  # [n_node]
    edges = {"edge_radial": basis, "edge_sh": sh, "edge_vectors": vectors, "edge_lengths": lengths}
    return EncoderOutput.from_atomic_energies(atomic, graph, features, **edges)


# Edge-packed batches, as SevenNet's but for ~1.75x the edges at the 6 A cutoff (~47 per
# atom on the shipped set): the edge limit binds first.
NEQUIX_BUDGET = BatchBudget(
    max_graphs=128, max_nodes=319, max_edges=14336, growth=2.0, min_nodes=80, min_edges=3584
)


class Nequix(FrozenEncoder):
    """A shipped Nequix checkpoint as a `FrozenEncoder` (O(3): features carry parity)."""

    config_class = NequixConfig
    budget = NEQUIX_BUDGET
    inversion_equivariant = True

    def load_params(self) -> dict:
        return load_nequix(self.weights)[0]

    def layer_irreps(self, layer: int) -> str:
        self.check_layer(layer)
        return str(self.config.layer_irreps(layer))

    def forward(self, params, graph: jraph.GraphsTuple) -> EncoderOutput:
        return nequix_forward(params, graph, self.config)
