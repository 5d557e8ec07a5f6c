"""PaiNN trained from scratch, with a rank-2 (polarizability-style) tensor head.

A from-scratch baseline for the DTNN readout: it sees only atomic numbers and geometry, no
pretrained encoder. The network is PaiNN (Schuett, Unke, Gastegger, ICML 2021,
arXiv:2102.03150): per atom a scalar feature ``s_i`` [F] and a vector feature ``v_i``
[3, F], updated by alternating message and update blocks.

Tensor head (the DTNN paper's eq. 7 construction, i.e. PaiNN's polarizability head with the
position term replaced by a vector outer product): one gated equivariant block (PaiNN's,
F -> F/2), then a scalar MLP gives two invariants ``a_i, b_i`` and a bias-free linear map of
the vector channels gives one vector ``u_i`` per atom, and

    eps_i = a_i I + b_i (u_i (x) u_i),      eps = mean over the real atoms of eps_i.

``a_i I`` is invariant and ``u_i (x) u_i`` rotates as ``R (u u^T) R^T``, so eps rotates as
``R eps R^T``, is symmetric by construction and is invariant under inversion (``u -> -u``).

Deviation from the published model, stated: messages summed into an atom are divided by
``sqrt(avg_num_neighbors)`` (as NequIP does). PaiNN was published on small molecules; at a
5 A cutoff an atom of the shipped crystals has 27 neighbours on average, and a plain sum
would make the updates of the deep blocks scale with that count.

Second deviation: the head is quadratic in ``u``, and at initialisation PaiNN's vector
features are small (~1e-2: they start at zero and grow from sums of nearly cancelling unit
vectors); with PaiNN's two gated blocks in the head, ``b u u^T`` started at 1e-9 to 1e-12 of
the isotropic part (measured), with a vanishing gradient, so the anisotropy could not be
learned (a test caught it). The vector features entering the head are therefore divided by
their per-atom RMS over channels, ``sqrt(mean_c |v_c|^2 + 1e-4)`` (an invariant, so
equivariance is kept; smooth, and vectors much smaller than 0.01 stay small, so sites whose
symmetry forbids a vector still give none), and ``u`` is not gated a second time.

Input: a padded ``jraph.GraphsTuple`` (``dtnn_jax.graph``) with nodes ``"positions"``
[n_nodes, 3] and ``"species"`` [n_nodes] (Z), edges ``"shifts"`` [n_edges, 3]; edge vector
``r_ij = pos[senders] - pos[receivers] + shifts``. Output: [n_graph, 3, 3], in the
normalised units of `dtnn_jax.models.scaling.TargetScaler`, the same contract as
`dtnn_jax.models.readout.DTNN`. Padding edges (zero length) are masked and their norms are
safe, so gradients stay finite.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from dtnn_jax.graph import crystal_mean, edge_mask, edge_vectors, safe_norm, unit_vectors
from dtnn_jax.validation import check_at_least, check_positive

MAX_ATOMIC_NUMBER = 94
# Vector RMS below sqrt(eps) = 0.01 counts as "no anisotropy" in the head's normalisation.
HEAD_VECTOR_RMS_EPS = 1e-4


@dataclasses.dataclass(frozen=True)
class PaiNNConfig:
    """PaiNN sizes; the defaults are the published ones (Schuett et al. 2021, QM9/MD17).

    Attributes:
        features: width F of the scalar and vector features (published: 128).
        n_blocks: message + update blocks (published: 3).
        n_radial: sine radial basis functions ``sin(n pi r / r_c) / r`` (published: 20).
        cutoff_angstrom: radius of the cosine cutoff (published: 5 A). Edges of the input
            graph beyond it are ignored, so the graph may be built with a larger cutoff.
        avg_num_neighbors: messages summed into an atom are divided by its square root
            (see the module docstring; 1.0 recovers the published plain sum). Default: 27,
            the mean over the shipped Petousis 2017 crystals at 5 A.
        max_atomic_number: largest Z of the species embedding.
        head_vector_rms_norm: divide each atom's vector features by their RMS over the
            channels (plus a small epsilon) before the head (see the module docstring).
    """

    features: int = 128
    n_blocks: int = 3
    n_radial: int = 20
    cutoff_angstrom: float = 5.0
    avg_num_neighbors: float = 27.0
    max_atomic_number: int = MAX_ATOMIC_NUMBER
    head_vector_rms_norm: bool = True

    def __post_init__(self):
        check_at_least(self, 1, "features", "n_blocks", "n_radial", "max_atomic_number")
        if self.features % 2:
            raise ValueError(f"PaiNNConfig.features must be even (head halves it): {self}")
        check_positive(self, "cutoff_angstrom", "avg_num_neighbors")


class EdgeGeometry(NamedTuple):
    """Per-edge geometry with padding and out-of-cutoff edges masked.

    Attributes:
        length: [n_edges] |r_ij| in angstrom (0 for padding edges).
        unit: [n_edges, 3] r_ij / |r_ij| (0 for masked edges).
        mask: [n_edges] float, 1 for real edges inside the cutoff.
    """

    length: jnp.ndarray
    unit: jnp.ndarray
    mask: jnp.ndarray


def edge_geometry(graph: jraph.GraphsTuple, cutoff_angstrom: float) -> EdgeGeometry:
    """Edge lengths, unit vectors and the mask of real edges within the cutoff."""
    vec = edge_vectors(graph)  # [n_edge, 3]
    length = safe_norm(vec)  # [n_edge]
    real = edge_mask(graph) & (length > 0) & (length < cutoff_angstrom)
    mask = real.astype(vec.dtype)
    unit = unit_vectors(vec, length) * mask[:, None]
    return EdgeGeometry(length * mask, unit, mask)


def sine_radial_basis(length: jnp.ndarray, n: int, cutoff: float) -> jnp.ndarray:
    """[n_edges, n] PaiNN's ``sin(k pi r / r_c) / r``, k = 1..n (finite at r = 0)."""
    k = jnp.arange(1, n + 1, dtype=length.dtype)  # [n]
    r = jnp.where(length > 0, length, 1.0)[:, None]  # [e, 1]
    return jnp.sin(k * jnp.pi * r / cutoff) / r


def cosine_cutoff(length: jnp.ndarray, cutoff: float) -> jnp.ndarray:
    """[n_edges] ``(cos(pi r / r_c) + 1) / 2`` inside the cutoff, 0 outside."""
    return jnp.where(length < cutoff, 0.5 * (jnp.cos(jnp.pi * length / cutoff) + 1.0), 0.0)


def species_embedding(species: jnp.ndarray, max_atomic_number: int, width: int) -> jnp.ndarray:
    """[n, width] learned species embeddings (the submodule "species_embed" of the caller).

    Unit variance at initialisation, as torch.nn.Embedding (schnetpack's PaiNN) starts them
    and as e3nn layers assume (component-normalised inputs, NequIP's one-hot -> linear
    embedding); Flax's default (std 1/sqrt(width)) made every feature ~10x smaller.
    """
    return nn.Embed(
        max_atomic_number + 1,
        width,
        embedding_init=nn.initializers.normal(1.0),
        name="species_embed",
    )(species)


class ScalarMLP(nn.Module):
    """Dense -> SiLU -> Dense, PaiNN's two-layer scalar network."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return nn.Dense(self.out, name="dense_1")(nn.silu(nn.Dense(self.hidden, name="dense_0")(x)))


class VectorLinear(nn.Module):
    """Bias-free channel mixing of vector features [n, 3, C] -> [n, 3, features]."""

    features: int

    @nn.compact
    def __call__(self, v: jnp.ndarray) -> jnp.ndarray:
        return nn.Dense(self.features, use_bias=False, name="dense")(v)


class PaiNNMessage(nn.Module):
    """PaiNN message block: continuous filters on neighbour scalars and vectors."""

    config: PaiNNConfig

    @nn.compact
    def __call__(
        self,
        s: jnp.ndarray,  # [n, F]
        v: jnp.ndarray,  # [n, 3, F]
        graph: jraph.GraphsTuple,
        geom: EdgeGeometry,
        rbf: jnp.ndarray,  # [e, n_radial]
    ) -> tuple[jnp.ndarray, jnp.ndarray]:
        f = self.config.features
        phi = ScalarMLP(f, 3 * f, name="phi")(s)[graph.senders]  # [e, 3F]
        w = nn.Dense(3 * f, name="filter")(rbf)  # [e, 3F]
        cut = cosine_cutoff(geom.length, self.config.cutoff_angstrom) * geom.mask  # [e]
        x = phi * w * cut[:, None]
        ds, dv_v, dv_r = jnp.split(x, 3, axis=-1)  # 3 x [e, F]
        dv = v[graph.senders] * dv_v[:, None, :] + geom.unit[:, :, None] * dv_r[:, None, :]
        n_node = s.shape[0]
        norm = self.config.avg_num_neighbors**-0.5
        s = s + norm * jax.ops.segment_sum(ds, graph.receivers, n_node)
        v = v + norm * jax.ops.segment_sum(dv, graph.receivers, n_node)  # [n, 3, F]
        return s, v


class PaiNNUpdate(nn.Module):
    """PaiNN update block: mixes scalars with vector norms and scalar products."""

    config: PaiNNConfig

    @nn.compact
    def __call__(self, s: jnp.ndarray, v: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        f = self.config.features
        uv = VectorLinear(f, name="U")(v)  # [n, 3, F]
        vv = VectorLinear(f, name="V")(v)  # [n, 3, F]
        a = ScalarMLP(f, 3 * f, name="update_mlp")(
            jnp.concatenate([s, safe_norm(vv, axis=-2)], axis=-1)
        )
        a_vv, a_sv, a_ss = jnp.split(a, 3, axis=-1)  # 3 x [n, F]
        v = v + a_vv[:, None, :] * uv
        s = s + a_sv * jnp.sum(uv * vv, axis=-2) + a_ss
        return s, v


class GatedEquivariantBlock(nn.Module):
    """PaiNN's gated equivariant block, used by its tensor-property heads.

    Attributes:
        hidden: width of the scalar network.
        scalars_out: output scalars.
        vectors_out: output vectors.
        scalar_activation: apply SiLU to the output scalars (all but the last block).
    """

    hidden: int
    scalars_out: int
    vectors_out: int
    scalar_activation: bool

    @nn.compact
    def __call__(self, s: jnp.ndarray, v: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        v_norm_in = VectorLinear(self.vectors_out, name="W_norm")(v)  # [n, 3, Vo]
        v_out = VectorLinear(self.vectors_out, name="W_out")(v)  # [n, 3, Vo]
        ctx = jnp.concatenate([s, safe_norm(v_norm_in, axis=-2)], axis=-1)
        x = ScalarMLP(self.hidden, self.scalars_out + self.vectors_out, name="mlp")(ctx)
        s_out, gate = jnp.split(x, [self.scalars_out], axis=-1)
        if self.scalar_activation:
            s_out = nn.silu(s_out)
        return s_out, v_out * gate[:, None, :]


class PaiNN(nn.Module):
    """PaiNN with the rank-2 head ``a I + b u u^T``, mean over atoms.

    Attributes:
        config: sizes.
    """

    config: PaiNNConfig = PaiNNConfig()

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, deterministic: bool = True) -> jnp.ndarray:
        """[n_graph, 3, 3] symmetric tensor per graph (``deterministic``: no dropout here)."""
        cfg = self.config
        species = graph.nodes["species"]  # [n]
        n_node = species.shape[0]
        geom = edge_geometry(graph, cfg.cutoff_angstrom)
        rbf = sine_radial_basis(geom.length, cfg.n_radial, cfg.cutoff_angstrom)  # [e, R]

        s = species_embedding(species, cfg.max_atomic_number, cfg.features)  # [n, F]
        v = jnp.zeros((n_node, 3, cfg.features), s.dtype)  # [n, 3, F]
        for k in range(cfg.n_blocks):
            s, v = PaiNNMessage(cfg, name=f"message_{k}")(s, v, graph, geom, rbf)
            s, v = PaiNNUpdate(cfg, name=f"update_{k}")(s, v)

        if cfg.head_vector_rms_norm:
            rms = jnp.sqrt(
                jnp.mean(jnp.sum(v * v, axis=1), axis=-1) + HEAD_VECTOR_RMS_EPS
            )  # [n], invariant
            v = v / rms[:, None, None]
        half = cfg.features // 2
        s, v = GatedEquivariantBlock(half, half, half, True, name="head_gated")(s, v)
        ab = ScalarMLP(half, 2, name="head_ab")(s)  # [n, 2]: a_i, b_i
        u = VectorLinear(1, name="head_u")(v)[:, :, 0]  # [n, 3]
        eye = jnp.eye(3, dtype=u.dtype)
        per_atom = (
            ab[:, 0, None, None] * eye + ab[:, 1, None, None] * u[:, :, None] * u[:, None, :]
        )  # [n, 3, 3]
        return crystal_mean(per_atom, graph)
