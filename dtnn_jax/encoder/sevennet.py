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

Performance (CPU; benchmarks/profile_encoder.py): the per-edge work (radial MLP, tensor
product, segment sum) runs in a `jax.lax.scan` over blocks of `EDGE_CHUNK` edges, so XLA's
temporary buffer stays ~20 MB instead of ~240 MB per 8192-edge batch, which it would map
afresh, page fault by page fault, on every call. Node features are held channel-minor,
``[n, 2l+1, mul]``, so the elementwise loops run over contiguous channels, and every
tensor-product path has its own accumulator. The results are bit-identical to the previous
single-pass, channel-major implementation on the shipped set (the node-level linears and
gates are evaluated in that layout on purpose, see `_linear`).
"""

from __future__ import annotations

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
    edge_mask,
    edge_vectors,
    node_mask,
    safe_norm,
    unit_vectors,
)

# Edges per block of the convolution's scan (`_convolution`) on CPU: the fastest of 128-2048
# on the shipped set's 8192-edge batches (benchmarks/results/encoder_profile.md). Other
# backends (GPU) take all edges in one block.
EDGE_CHUNK = 512


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
    """e3nn Linear (path normalisation 'element', no bias) on per-l features [n, 2l+1, mul]."""
    out = {}
    some = next(iter(x.values()))
    for l, n_out in out_ls:
        key = f"l{l}"
        if key in blocks and l in x:
            w = blocks[key]  # [mul_in, mul_out]
            # Contracted in the channel-major layout [n, mul, 2l+1] of the previous
            # implementation: XLA then picks the same dot kernel and the features agree with
            # it to the last bit (a plain [n (2l+1), mul] matmul differs by up to ~7e-7
            # relative per layer). The transposes are of node arrays: negligible.
            y = jnp.einsum("nui,uw->nwi", jnp.swapaxes(x[l], 1, 2), w) / math.sqrt(w.shape[0])
            out[l] = jnp.swapaxes(y, 1, 2)
        else:  # no input of this l: e3nn's output mask gives zeros
            out[l] = jnp.zeros((some.shape[0], 2 * l + 1, n_out), some.dtype)
    return out


def _radial_mlp(weights: tuple, embedding, config: SevenNetConfig):
    """e3nn FullyConnectedNet without biases: normalised SiLU on hidden layers."""
    h = embedding
    for i, w in enumerate(weights):
        h = h @ w / math.sqrt(w.shape[0])
        if i < len(weights) - 1:
            h = _silu(h, config)
    return h


def _tensor_product_paths(config: SevenNetConfig, k: int):
    """Layer k's tensor-product paths per node l1 and the channel count per output l3.

    Returns:
        ``{l1: [(path, l2, l3, cg_column, mul), ...]}`` (`conv_layout` plus the channel
        count) and ``{l3: total channels}``; the inputs of ``linear_out`` for output l3 are
        these paths' channels in this order (node l1, then instruction order), as in sevenn.
    """
    muls = {l: mul for mul, l in config.layer_irreps(k - 1)}
    layout = {
        l1: [(p, l2, l3, col, muls[l1]) for p, l2, l3, col in entries]
        for l1, entries in conv_layout(config, k).items()
    }
    channels: dict[int, int] = {}
    for entries in layout.values():
        for *_, l3, _, mul in entries:
            channels[l3] = channels.get(l3, 0) + mul
    return layout, dict(sorted(channels.items()))


def _path_major_radial(weights: tuple, layout) -> tuple:
    """The radial MLP with its output columns reordered per node l1 from (channel, path)
    (`weights.py`'s layout) to (path, channel): one path's weights are then a contiguous row
    of ``mul`` numbers, like the channels of the node features. (A gather of a [H, n_weights]
    parameter per call: negligible.)"""
    last = weights[-1]  # [hidden, n_weights]
    blocks, column = [], 0
    for entries in layout.values():
        mul, n_paths = entries[0][4], len(entries)
        block = last[:, column : column + mul * n_paths].reshape(-1, mul, n_paths)
        blocks.append(jnp.swapaxes(block, 1, 2).reshape(-1, mul * n_paths))
        column += mul * n_paths
    return (*weights[:-1], jnp.concatenate(blocks, axis=1))


def _convolution(layer, x, edges, config, k: int, n_nodes: int):
    """Messages CG(x_j, Y(r_ij)) weighted by the radial MLP, summed into receivers.

    ``edges`` = (senders, receivers, sh, radial basis) in blocks [n_blocks, block, ...]
    (`_edge_blocks`). A `jax.lax.scan` over the blocks carries the per-node sums, so the
    per-edge intermediates (radial weights [block, n_weights], messages [block, 2l3+1, mul])
    are a few MB that stay in cache and are reused, instead of hundreds of MB of memory that
    XLA maps afresh (page faults) on every call. Node features and messages are
    channel-minor ([.., 2l+1, mul]), so every elementwise loop runs over contiguous channels,
    and each path is summed into its own accumulator (no concatenation of messages).
    The messages are added in edge order, as one segment sum over all edges adds them.

    Returns:
        ``{l3: [n_nodes, 2 l3 + 1, channels_l3]}``, the input of ``linear_out``, already
        divided by the layer's denominator.
    """
    layout, channels = _tensor_product_paths(config, k)
    radial_weights = _path_major_radial(layer["radial"], layout)
    cg = layer["cg"]

    def block(acc, edge_block):
        senders, receivers, sh, radial = edge_block
        acc = dict(acc)
        with jax.named_scope("radial_mlp"):
            weights = _radial_mlp(radial_weights, radial, config)  # [block, n_weights]
        column = 0
        for l1, entries in layout.items():
            mul, n_paths = entries[0][4], len(entries)
            w = weights[:, column : column + mul * n_paths].reshape(-1, n_paths, mul)
            column += mul * n_paths
            with jax.named_scope("gather"):
                x_j = x[l1][senders]  # [block, 2l1+1, mul]
            with jax.named_scope("tensor_product"):
                # [block, 2l1+1, sum_paths (2l3+1)]: the edge's SH contracted with the CG.
                edge_cg = jnp.einsum("ej,ijc->eic", sh, cg[f"l{l1}"])
            for p, _, l3, col, _ in entries:
                with jax.named_scope("tensor_product"):
                    # 2l1+1 (<= 5) terms of channel-wise products, one fused loop (a batched
                    # matmul of tiny per-edge matrices is much slower on CPU)
                    message = sum(
                        x_j[:, i, None, :] * edge_cg[:, i, col : col + 2 * l3 + 1, None]
                        for i in range(2 * l1 + 1)
                    )
                    message = message * w[:, p, None, :]  # [block, 2l3+1, mul]
                with jax.named_scope("segment_sum"):
                    acc[l1, p] = acc[l1, p].at[receivers].add(message)
        return acc, None

    init = {
        (l1, p): jnp.zeros((n_nodes, 2 * l3 + 1, mul), x[0].dtype)
        for l1, entries in layout.items()
        for p, _, l3, _, mul in entries
    }
    acc, _ = jax.lax.scan(block, init, edges)
    denominator = config.conv_denominators[k - 1]
    return {
        l3: jnp.concatenate(
            [acc[l1, p] for l1, entries in layout.items() for p, _, l, _, _ in entries if l == l3],
            axis=2,
        )
        / denominator
        for l3 in channels
    }


def _gate(x: dict[int, jax.Array], out_irreps, config: SevenNetConfig) -> dict[int, jax.Array]:
    """e3nn Gate: SiLU on the scalars, SiLU(gates) times the l > 0 channels."""
    mul0 = out_irreps[0][1]
    scalars = x[0][:, :, :mul0]
    gates = _silu(x[0][:, 0, mul0:], config)  # [n, n_gated]
    out = {0: _silu(scalars, config)}
    offset = 0
    for l, mul in out_irreps[1:]:
        # in the channel-major layout, for bit-identical results (see `_linear`)
        gated = jnp.swapaxes(x[l], 1, 2) * gates[:, offset : offset + mul, None]
        out[l] = jnp.swapaxes(gated, 1, 2)
        offset += mul
    return out


def _to_irreps_array(x: dict[int, jax.Array]) -> e3nn.IrrepsArray:
    """Channel-minor [n, 2l+1, mul] per l -> e3nn's layout (per l: channel outer)."""
    irreps = e3nn.Irreps([(x[l].shape[2], (l, 1)) for l in sorted(x)])
    flat = jnp.concatenate(
        [jnp.swapaxes(x[l], 1, 2).reshape(x[l].shape[0], -1) for l in sorted(x)], axis=1
    )
    return e3nn.IrrepsArray(irreps, flat)


def edge_blocks(n_edge: int, block: int | None = None) -> tuple[int, int]:
    """(number of blocks, edges per block) of the convolution's scan for ``n_edge`` edges.

    Blocks of at most ``block`` edges (default: `EDGE_CHUNK` on CPU, one block elsewhere),
    all of the same size; the last is filled up with padding edges (`_edge_blocks`).
    """
    if block is None:
        block = EDGE_CHUNK if jax.default_backend() == "cpu" else n_edge
    n_blocks = max(1, -(-n_edge // max(block, 1)))
    return n_blocks, -(-n_edge // n_blocks)


def _edge_blocks(graph, sh, radial):
    """Senders, receivers, SH and radial basis as [n_blocks, block, ...] (`edge_blocks`).

    Edges appended to fill the last block join the last node (a padding node) to itself
    with zero radial basis, so zero radial weights (the MLP has no biases), and zero SH:
    they add exact zeros.
    """
    n_edge = graph.senders.shape[0]
    n_blocks, size = edge_blocks(n_edge)
    last = graph.nodes["positions"].shape[0] - 1
    arrays = (graph.senders, graph.receivers, sh, radial)
    fill = (last, last, 0.0, 0.0)
    extra = n_blocks * size - n_edge
    if extra:
        arrays = tuple(
            jnp.concatenate([a, jnp.full((extra, *a.shape[1:]), f, a.dtype)])
            for a, f in zip(arrays, fill, strict=True)
        )
    return tuple(a.reshape(n_blocks, size, *a.shape[1:]) for a in arrays)


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

    with jax.named_scope("edge_embedding"):
        vectors = edge_vectors(graph)  # [n_edge, 3]
        lengths = safe_norm(vectors)  # [n_edge]
        real_edge = (lengths > 0) & edge_mask(graph)  # padding edges: zero length
        radial = radial_embedding(lengths, params["bessel_frequencies"], config, real_edge)
        sh = edge_spherical_harmonics(vectors, lengths, real_edge, config.lmax_edge)  # [n_edge, 9]
        edges = _edge_blocks(graph, sh, radial)

    with jax.named_scope("species_embedding"):
        table = jnp.asarray(config.z_to_index_table())
        species = table[jnp.clip(graph.nodes["species"], 0, table.shape[0] - 1)]
        species = jnp.where(real_node, jnp.maximum(species, 0), 0)  # [n_node]
        embedding = params["species_embedding"][species] / math.sqrt(config.num_species)
        x = {0: (embedding * real_node[:, None])[:, None, :]}  # [n_node, 1, 128]

    features = []
    for k in range(1, config.num_layers + 1):
        layer = params["layers"][k - 1]
        in_ls = [(l, mul) for mul, l in config.layer_irreps(k - 1)]
        gate_ls = [(l, mul) for mul, l in config.gate_input_irreps(k)]
        out_ls = [(l, mul) for mul, l in config.layer_irreps(k)]
        with jax.named_scope(f"layer{k}"):
            with jax.named_scope("linear"):
                sc = _linear(layer["self_connection"], x, gate_ls)
                x = _linear(layer["linear_in"], x, in_ls)
            with jax.named_scope("convolution"):
                messages = _convolution(layer, x, edges, config, k, n_nodes)
            with jax.named_scope("linear"):
                x = _linear(layer["linear_out"], messages, gate_ls)
                x = {l: x[l] + sc[l] for l in x}
            with jax.named_scope("gate"):
                x = _gate(x, out_ls, config)
            with jax.named_scope("features"):
                features.append(_to_irreps_array(x))

    with jax.named_scope("readout"):
        scalars = x[0][:, 0, :]  # [n_node, 128]
        hidden = params["readout_hidden"]
        h = scalars @ hidden / math.sqrt(hidden.shape[0])
        scaled = (h @ params["readout_energy"] / math.sqrt(hidden.shape[1]))[:, 0]
        atomic = scaled * params["energy_scale"][species] + params["energy_shift"][species]
        sh_irreps = e3nn.Irreps([(1, (l, 1)) for l in range(config.lmax_edge + 1)])
        return EncoderOutput.from_atomic_energies(
            atomic,
            graph,
            features,
            edge_radial=radial,
            edge_sh=e3nn.IrrepsArray(sh_irreps, sh),
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

    config_class = SevenNetConfig
    budget = SEVENNET_BUDGET
    inversion_equivariant = False

    def load_params(self) -> dict:
        params, _ = load_weights(self.weights)
        return jax.tree.map(jnp.asarray, params)

    def layer_irreps(self, layer: int) -> str:
        self.check_layer(layer)
        return str(self.config.node_irreps[layer])

    def forward(self, params, graph: jraph.GraphsTuple) -> EncoderOutput:
        return sevennet_forward(params, graph, self.config)
