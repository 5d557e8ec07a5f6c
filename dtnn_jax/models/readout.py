"""The DTNN equivariant readout (paper eqs. 13-27) as Flax Linen modules.

Input: a padded ``jraph.GraphsTuple`` whose nodes carry ``"features"`` [n_nodes, D] (the flat
array of one encoder layer's IrrepsArray, irreps ``ReadoutConfig.input_irreps``), positions
and species, and whose edges carry ``"shifts"`` [n_edges, 3] and ``"radial"`` [n_edges,
n_radial]. Output: one symmetric 3x3 tensor per graph, in the units of the output map
(``ReadoutConfig.output_map``; `dtnn_jax.models.scaling.to_eps` turns it into eps); padding
graphs get a finite, meaningless value.

Equivariance holds by construction: scalars only ever meet invariants (norms, radial
features); vectors and tensors only go through channel mixing (no bias, no mixing of x, y,
z), multiplication by invariant gates and sums. The per-atom output
``s I + v v^T + T`` therefore rotates as ``R eps R^T``.

Design choice for bonds: the paper's bond scalars and vectors come from the encoder (PFP);
our encoder has none, so a bond is described by its radial features ``phi(r_ij)`` (the
encoder's radial basis) and its unit vector ``u_ij`` alone. Bond messages are *linear* in the
basis (plus a column that counts neighbours; every bond is weighted by a smooth envelope
that vanishes at the cutoff, so eps is continuous when a neighbour shell crosses it): scalar
message ``W_s phi_ij`` (eq. 14) and vector channels ``u_ij (x) W_v phi_ij`` (eq. 17;
bias-free, so equivariant).
Linearity lets the neighbour sum (eqs. 18-19) be taken first: each atom carries the
parameter-free moments ``sum_j phi_ij`` [K] and ``sum_j phi_ij u_ij`` [K, 3], and the learned
maps act on those. This is about 5x faster per epoch than a per-edge MLP with 64 vector channels
per edge and was as accurate on validation (see ``ReadoutConfig``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from dtnn_jax.config import ReadoutConfig
from dtnn_jax.graph import crystal_mean, edge_mask, edge_vectors, safe_norm, unit_vectors
from dtnn_jax.models.cartesian import split_irreps


class MLP(nn.Module):
    """Dense layers with SiLU between them and none after the last (paper eq. 11).

    Attributes:
        features: output width of each layer.
        dropout_rate: dropout after each hidden activation (rng stream "dropout").
    """

    features: Sequence[int]
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool = True) -> jnp.ndarray:
        for i, width in enumerate(self.features):
            x = nn.Dense(width, name=f"dense_{i}")(x)
            if i < len(self.features) - 1:
                x = nn.silu(x)
                if self.dropout_rate > 0:
                    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        return x


class ChannelLinear(nn.Module):
    """Bias-free channel mixing ``y[n, d, ...] = sum_c x[n, c, ...] W[c, d]`` (eqs. 8, 15-17).

    Mixes channels only, never the Cartesian axes, so it commutes with rotations. A
    zero-width input gives zeros (a scalar-only encoder layer has no vectors/tensors).

    Attributes:
        features: output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n_in = x.shape[1]
        if n_in == 0:
            return jnp.zeros((x.shape[0], self.features, *x.shape[2:]), x.dtype)
        w = self.param(
            "kernel", nn.initializers.normal(stddev=n_in**-0.5), (n_in, self.features), x.dtype
        )
        return jnp.einsum("nc...,cd->nd...", x, w)


class BondMoments(NamedTuple):
    """Per-atom sums over the bonds of a fixed radial basis (padding edges excluded).

    The bond messages of eqs. 14 and 17 depend on the bond only through its length and
    direction (our encoder has no bond features), so with messages linear in a fixed radial
    basis the sum over neighbours can be taken *before* any learned map:
    ``sum_j W phi(r_ij) = W sum_j phi(r_ij)``. These sums are parameter-free, so the
    per-edge work is a few segment sums instead of an MLP and 64 x 3 channels per edge.

    Attributes:
        scalars: [n_nodes, K] ``sum_j f(r_ij) phi_k(r_ij) / avg_num_neighbors`` (K =
            n_radial + 1, the extra column is the enveloped neighbour count; f the envelope,
            `edge_envelope`, or 1 in a legacy config).
        vectors: [n_nodes, K, 3] ``sum_j f(r_ij) phi_k(r_ij) u_ij / avg_num_neighbors``.
    """

    scalars: jnp.ndarray
    vectors: jnp.ndarray


class EquivariantBlock(nn.Module):
    """One DTNN equivariant block (paper eqs. 13-23) with residual updates.

    Scalars: MLP (eq. 13) plus the summed bond scalars (eqs. 14, 18). Vectors / tensors:
    bias-free channel mixing (eqs. 15-16) plus the summed bond vectors (eqs. 17, 19). The
    scalars and the channel norms feed the gate MLP (eq. 20), whose output splits into a
    scalar update and sigmoid gates on a second bias-free map of the vectors / tensors
    (eqs. 21-23). Dropout acts on the hidden layers of the atom-scalar MLPs and on the
    scalar update (never on vectors/tensors, which would need invariant masks).

    Attributes:
        config: the readout configuration (widths, dropout, neighbour normalisation).
    """

    config: ReadoutConfig

    @nn.compact
    def __call__(
        self,
        scalars: jnp.ndarray,  # [n, W]
        vectors: jnp.ndarray,  # [n, Cv, 3]
        tensors: jnp.ndarray,  # [n, Ct, 3, 3]
        bonds: BondMoments | None,
        deterministic: bool = True,
    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        cfg = self.config
        hidden = [cfg.width] * cfg.mlp_layers

        atom_s = MLP(hidden, cfg.dropout_rate, name="atom_scalar_mlp")(scalars, deterministic)
        atom_v = ChannelLinear(cfg.vector_channels, name="atom_vector_linear")(vectors)  # eq. 15
        atom_t = ChannelLinear(cfg.tensor_channels, name="atom_tensor_linear")(tensors)  # eq. 16

        if bonds is not None:  # eqs. 14, 17-19 with messages linear in the radial basis
            atom_s = atom_s + nn.Dense(cfg.width, use_bias=False, name="bond_scalar_linear")(
                bonds.scalars
            )
            atom_v = atom_v + ChannelLinear(cfg.vector_channels, name="bond_vector_linear")(
                bonds.vectors
            )

        invariants = jnp.concatenate(  # eq. 20
            [atom_s, safe_norm(atom_v, axis=-1), safe_norm(atom_t, axis=(-2, -1))], axis=-1
        )
        out = MLP(
            [cfg.width] * (cfg.mlp_layers - 1)
            + [cfg.width + cfg.vector_channels + cfg.tensor_channels],
            cfg.dropout_rate,
            name="gate_mlp",
        )(invariants, deterministic)
        new_s, gate_v, gate_t = jnp.split(
            out, [cfg.width, cfg.width + cfg.vector_channels], axis=-1
        )
        new_s = nn.Dropout(cfg.dropout_rate)(new_s, deterministic=deterministic)
        gated_v = jax.nn.sigmoid(gate_v)[..., None] * ChannelLinear(
            cfg.vector_channels, name="vector_gate_linear"
        )(atom_v)
        gated_t = jax.nn.sigmoid(gate_t)[..., None, None] * ChannelLinear(
            cfg.tensor_channels, name="tensor_gate_linear"
        )(atom_t)
        return scalars + new_s, vectors + gated_v, tensors + gated_t


def edge_envelope(lengths: jnp.ndarray, cutoff_angstrom: float) -> jnp.ndarray:
    """NequIP's polynomial envelope (p = 6, as in `dtnn_jax.models.nequip`) of the bond
    lengths [e] (angstrom), [e]: 1 at r = 0, 0 at and beyond the cutoff with its first two
    derivatives 0 there, so a bond that crosses the cutoff enters every bond input smoothly.
    """
    return e3nn.poly_envelope(_ENVELOPE_P - 1, 2, cutoff_angstrom)(lengths)


_ENVELOPE_P = 6


def bond_moments(graph: jraph.GraphsTuple, config: ReadoutConfig) -> BondMoments:
    """Per-atom sums of the fixed radial basis over bonds (see `BondMoments`).

    With ``config.edge_cutoff_angstrom`` set (the default) every column, the neighbour
    count included, is weighted by `edge_envelope`, so the moments are continuous (and
    smooth) when a neighbour crosses the cutoff. None keeps the legacy, un-enveloped count.
    """
    n_node = graph.nodes["positions"].shape[0]
    vec = edge_vectors(graph)  # [n_edge, 3]
    length = safe_norm(vec)  # [e]
    unit = unit_vectors(vec, length)  # [n_edge, 3]
    mask = edge_mask(graph).astype(vec.dtype)  # [e]
    radial = graph.edges["radial"]  # [e, n_radial]
    if radial.shape[-1] != config.n_radial:
        raise ValueError(
            f"edges['radial'] has {radial.shape[-1]} columns, "
            f"ReadoutConfig.n_radial is {config.n_radial}"
        )
    basis = jnp.concatenate([radial, jnp.ones_like(radial[:, :1])], axis=-1)  # [e, K]
    weight = mask / config.avg_num_neighbors  # [e]
    if config.edge_cutoff_angstrom is not None:
        weight = weight * edge_envelope(length, config.edge_cutoff_angstrom).astype(vec.dtype)
    basis = basis * weight[:, None]
    scalars = jax.ops.segment_sum(basis, graph.receivers, n_node)  # [n, K]
    vectors = jax.ops.segment_sum(  # [n, K, 3]
        basis[:, :, None] * unit[:, None, :], graph.receivers, n_node
    )
    return BondMoments(scalars, vectors)


def equivariant_trunk(
    cfg: ReadoutConfig, graph: jraph.GraphsTuple, deterministic: bool
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """The embedding and equivariant blocks shared by the readout heads.

    Called inside a parent module's compact ``__call__`` (its submodules belong to that
    parent, with the names the DTNN readout has always had).

    Returns:
        Per-atom scalars [n, W], vectors [n, Cv, 3] and symmetric tensors [n, Ct, 3, 3].
    """
    atoms = split_irreps(graph.nodes["features"], cfg.input_irreps)
    # The authors symmetrise their rank-2 inputs; ours are symmetric already (l = 2),
    # so this is a no-op kept for inputs that are not.
    tensors_in = 0.5 * (atoms.tensors + jnp.swapaxes(atoms.tensors, -1, -2))
    scalars = nn.Dense(cfg.width, name="scalar_embed")(atoms.scalars)  # [n, W]
    vectors = ChannelLinear(cfg.vector_channels, name="vector_embed")(atoms.vectors)
    tensors = ChannelLinear(cfg.tensor_channels, name="tensor_embed")(tensors_in)
    bonds = bond_moments(graph, cfg) if cfg.use_edges else None
    for k in range(cfg.n_blocks):
        scalars, vectors, tensors = EquivariantBlock(cfg, name=f"block_{k}")(
            scalars, vectors, tensors, bonds, deterministic
        )
    return scalars, vectors, tensors


class DTNN(nn.Module):
    """DTNN readout: input embedding, equivariant blocks, rank-2 readout, mean over atoms.

    ``ReadoutConfig.use_edges=False`` gives DTNN-simple, which never reads the edges.

    Attributes:
        config: the readout configuration.
    """

    config: ReadoutConfig

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, deterministic: bool = True) -> jnp.ndarray:
        """[n_graph, 3, 3] per graph, before the output map (`dtnn_jax.models.scaling`)."""
        cfg = self.config
        features = graph.nodes["features"]  # [n, D]
        scalars, vectors, tensors = equivariant_trunk(cfg, graph, deterministic)

        # Readout (eqs. 24-27): gated MLP -> s, channel compression -> v, T.
        head = [cfg.width] * (cfg.mlp_layers - 1) + [1]
        s = MLP(head, cfg.dropout_rate, name="readout_mlp")(scalars, deterministic)
        gate = MLP(head, cfg.dropout_rate, name="readout_gate_mlp")(scalars, deterministic)
        s = (s * jax.nn.sigmoid(gate))[:, 0]  # [n]
        v = ChannelLinear(1, name="readout_vector")(vectors)[:, 0]  # [n, 3]
        t = ChannelLinear(1, name="readout_tensor")(tensors)[:, 0]  # [n, 3, 3]
        t = 0.5 * (t + jnp.swapaxes(t, -1, -2))
        eye = jnp.eye(3, dtype=features.dtype)
        per_atom = s[:, None, None] * eye + v[:, :, None] * v[:, None, :] + t  # [n, 3, 3]

        return crystal_mean(per_atom, graph)  # [n_graph, 3, 3], the tensor is intensive


def count_params(params) -> int:
    """Number of scalar parameters in a params pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
