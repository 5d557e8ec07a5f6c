"""A NequIP-style E(3)-equivariant network trained from scratch, with a ``0e + 2e`` head.

A from-scratch baseline for the DTNN readout (MatTen-style tensor output): it sees only
atomic numbers and geometry, no pretrained encoder. Architecture (NequIP, Batzner et al.,
Nat. Commun. 13, 2453 (2022)), written with e3nn-jax:

* species embedding: ``nn.Embed`` over Z -> ``C x 0e``;
* each interaction layer: a linear map, a convolution ``h_j (x) Y(r_hat_ij)`` whose
  per-path, per-channel weights come from a bias-free radial MLP of 8 Bessel functions
  times NequIP's polynomial envelope (p = 6), a sum over neighbours divided by
  ``sqrt(avg_num_neighbors)``, a linear map plus a self-connection, a gate nonlinearity
  (SiLU on scalars, sigmoid gates on l > 0), and a residual when the irreps match;
* hidden irreps ``C x 0e + C x 1o + C x 2e`` (O(3): parity is kept, so the network is
  equivariant under rotations *and* inversion, as a polar rank-2 tensor must be);
* head: a linear map of the last features to ``1x0e + 1x2e`` per atom; the mean over the
  real atoms of the crystal gives ``eps = a I + M(x_2e)`` where ``M`` is the orthonormal
  l = 2 -> symmetric traceless 3x3 map of `dtnn_jax.models.cartesian.l2_to_matrix`
  (e3nn-jax's ``reduced_tensor_product_basis("ij=ji")``).

Deviations from the published NequIP, stated: the self-connection is one species-independent
linear map (NequIP's is indexed by species, which with 94 elements would add ~0.3M weights
per layer for the few elements each crystal holds), and there is no per-species shift/scale
(the target is a mean-over-atoms tensor, standardised by `TargetScaler`).

Same call contract as `dtnn_jax.models.readout.DTNN`: a padded ``jraph.GraphsTuple`` with
nodes ``"positions"`` / ``"species"`` and edges ``"shifts"`` in, [n_graph, 3, 3] in normalised
units out. Padding edges have zero length and are masked; norms are safe.
"""

from __future__ import annotations

import dataclasses

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from dtnn_jax.graph import crystal_mean
from dtnn_jax.models.cartesian import l2_to_matrix
from dtnn_jax.models.painn import MAX_ATOMIC_NUMBER, edge_geometry, species_embedding
from dtnn_jax.validation import check_at_least, check_positive


@dataclasses.dataclass(frozen=True)
class NequIPConfig:
    """NequIP sizes (defaults close to the published ones, 3 layers to keep CPU cost sane).

    Attributes:
        channels: multiplicity C of every hidden irrep (published examples: 32-64).
        n_layers: interaction layers (published default: 4-5; here 3).
        l_max: largest angular momentum of the spherical harmonics and hidden features (2).
        n_radial: Bessel radial basis functions (published: 8).
        radial_mlp_width: hidden width of the radial MLP (published: 64).
        radial_mlp_layers: hidden layers of the radial MLP (published: 2).
        envelope_p: exponent p of the polynomial envelope (published: 6).
        cutoff_angstrom: radial cutoff; graph edges beyond it are ignored.
        avg_num_neighbors: neighbour sums are divided by its square root (NequIP's
            normalisation). Default: 27, the mean over the shipped Petousis 2017 crystals
            at 5 A.
        max_atomic_number: largest Z of the species embedding.
    """

    channels: int = 32
    n_layers: int = 3
    l_max: int = 2
    n_radial: int = 8
    radial_mlp_width: int = 64
    radial_mlp_layers: int = 2
    envelope_p: int = 6
    cutoff_angstrom: float = 5.0
    avg_num_neighbors: float = 27.0
    max_atomic_number: int = MAX_ATOMIC_NUMBER

    def __post_init__(self):
        check_at_least(
            self,
            1,
            "channels",
            "n_layers",
            "n_radial",
            "radial_mlp_width",
            "radial_mlp_layers",
            "envelope_p",
            "max_atomic_number",
        )
        if self.l_max < 2:
            raise ValueError(f"NequIPConfig.l_max must be >= 2 for a 2e output: {self.l_max}")
        check_positive(self, "cutoff_angstrom", "avg_num_neighbors")

    @property
    def hidden_irreps(self) -> e3nn.Irreps:
        """``C x 0e + C x 1o + C x 2e + ...`` up to ``l_max`` (natural parity (-1)^l)."""
        return e3nn.Irreps([(self.channels, (l, (-1) ** l)) for l in range(self.l_max + 1)])


class RadialMLP(nn.Module):
    """Bias-free MLP with SiLU (NequIP's radial network): zero input gives zero output."""

    hidden: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i, width in enumerate(self.hidden):
            x = nn.silu(nn.Dense(width, use_bias=False, name=f"dense_{i}")(x))
        return nn.Dense(self.out, use_bias=False, name=f"dense_{len(self.hidden)}")(x)


class NequIPLayer(nn.Module):
    """One NequIP interaction layer (convolution, self-connection, gate, residual).

    Attributes:
        config: sizes.
    """

    config: NequIPConfig

    @nn.compact
    def __call__(
        self,
        x: e3nn.IrrepsArray,  # [n, irreps]
        sh: e3nn.IrrepsArray,  # [e, 0e+1o+2e...] spherical harmonics of r_hat_ij
        radial: jnp.ndarray,  # [e, n_radial], zero on masked edges
        edge_weight: jnp.ndarray,  # [e] 1 for real edges within the cutoff
        senders: jnp.ndarray,  # [e]
        receivers: jnp.ndarray,  # [e]
    ) -> e3nn.IrrepsArray:
        cfg = self.config
        hidden = cfg.hidden_irreps
        n_node = x.shape[0]
        # Gate input: C activated scalars, one gate per non-scalar irrep, then the non-scalars.
        n_gated = sum(mul for mul, ir in hidden if ir.l > 0)
        gate_in = (
            e3nn.Irreps(f"{cfg.channels}x0e+{n_gated}x0e") + hidden.filter(drop="0e")
        ).simplify()

        h = e3nn.flax.Linear(x.irreps, name="linear_in")(x)
        h_j = h[senders]  # [e, irreps]
        messages = e3nn.tensor_product(h_j, sh, filter_ir_out=gate_in)  # [e, paths]
        weights = RadialMLP(
            (cfg.radial_mlp_width,) * cfg.radial_mlp_layers,
            messages.irreps.num_irreps,
            name="radial_mlp",
        )(radial)  # [e, num_irreps]
        messages = messages * (weights * edge_weight[:, None])
        summed = e3nn.scatter_sum(messages, dst=receivers, output_size=n_node)
        summed = summed / jnp.sqrt(cfg.avg_num_neighbors)

        # force_irreps_out: the first layer's input holds scalars only, so its self-connection
        # has no l > 0 output; those blocks are zeros.
        y = e3nn.flax.Linear(gate_in, force_irreps_out=True, name="linear_out")(summed)
        y = y + e3nn.flax.Linear(gate_in, force_irreps_out=True, name="self_connection")(x)
        y = e3nn.gate(y, even_act=jax.nn.silu, even_gate_act=jax.nn.sigmoid)
        if y.irreps == x.irreps:
            y = y + x
        return y


class NequIP(nn.Module):
    """NequIP-style network with a ``0e + 2e`` head, mean over atoms.

    Attributes:
        config: sizes.
    """

    config: NequIPConfig = NequIPConfig()

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, deterministic: bool = True) -> jnp.ndarray:
        """[n_graph, 3, 3] symmetric tensor per graph (``deterministic``: no dropout here)."""
        cfg = self.config
        geom = edge_geometry(graph, cfg.cutoff_angstrom)
        sh = e3nn.spherical_harmonics(
            e3nn.Irreps.spherical_harmonics(cfg.l_max),
            e3nn.IrrepsArray("1o", geom.unit),
            normalize=False,
            normalization="component",
        )  # [e, (l_max+1)^2]; masked edges have unit = 0 and radial = 0
        envelope = e3nn.poly_envelope(cfg.envelope_p - 1, 2, cfg.cutoff_angstrom)(geom.length)
        radial = (
            e3nn.bessel(geom.length, cfg.n_radial, cfg.cutoff_angstrom)
            * (envelope * geom.mask)[:, None]
        )  # [e, n_radial]

        species = graph.nodes["species"]  # [n]
        embed = species_embedding(species, cfg.max_atomic_number, cfg.channels)  # [n, C]
        x = e3nn.IrrepsArray(f"{cfg.channels}x0e", embed)
        for k in range(cfg.n_layers):
            x = NequIPLayer(cfg, name=f"layer_{k}")(
                x, sh, radial, geom.mask, graph.senders, graph.receivers
            )

        out = e3nn.flax.Linear("1x0e+1x2e", name="head")(x)  # [n, 6]
        iso = out.filter(keep="0e").array[:, 0]  # [n]
        aniso = l2_to_matrix(out.filter(keep="2e").array)  # [n, 3, 3]
        per_atom = iso[:, None, None] * jnp.eye(3, dtype=iso.dtype) + aniso
        return crystal_mean(per_atom, graph)
