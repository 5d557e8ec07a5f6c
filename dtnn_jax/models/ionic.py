"""An ionic dielectric head that keeps the physics without force constants (the fast model).

In the harmonic approximation eps_ion = 4 pi e^2 / Omega * Z^T Kinv Z: positive
semi-definite, and zero when a crystal has no optical mode (one atom per cell). The physics
model (`dtnn_jax.physics.born`) computes it with the potential's K; the fast model has no K.
`GramIonic` keeps the same structure with K replaced by learned, per-atom positive
stiffnesses (a diagonal Kinv, in the units the data fix):

    eps_ion = mean_k  w_k  sum_c  Z_kc Z_kc^T,    Z_kc = s_kc I + [a_kc]_x + T_kc - mean_l Z_lc

with Z_kc (c = 1..C "effective charge" channels) read off the DTNN trunk like the Born
charges (0e + antisymmetric 1e + symmetric 2e parts) and w_k = softplus(MLP(scalars_k)) > 0.
Each term is a Gram matrix times a positive weight, so eps_ion is PSD for any weights; the
acoustic sum rule (the crystal mean subtracted) makes Z_kc = 0 in a one-atom cell, so eps_ion
is exactly 0 there, and ~0 when all atoms are equivalent under inversion (diamond Si).
The output is eps_ion itself (target scaling "none", affine output map), so a bundle with
this ionic head and an electronic readout serves total = electronic + ionic.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from dtnn_jax.config import ReadoutConfig
from dtnn_jax.graph import crystal_mean, node_graph_index
from dtnn_jax.models.readout import MLP, ChannelLinear, equivariant_trunk


def _cross_matrix(a: jnp.ndarray) -> jnp.ndarray:
    """[..., 3] -> [..., 3, 3] the antisymmetric matrix [a]_x (``[a]_x b = a x b``)."""
    from dtnn_jax.physics.born import cross_matrix

    return cross_matrix(a)


class GramIonic(nn.Module):
    """eps_ion [n_graph, 3, 3]: PSD, exactly 0 for a one-atom cell (see the module docstring).

    Attributes:
        config: the trunk's configuration; ``config.ionic_channels`` is C.
    """

    config: ReadoutConfig

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, deterministic: bool = True) -> jnp.ndarray:
        cfg = self.config
        n_ch = cfg.ionic_channels
        scalars, vectors, tensors = equivariant_trunk(cfg, graph, deterministic)
        hidden = [cfg.width] * (cfg.mlp_layers - 1)
        s = MLP([*hidden, n_ch], cfg.dropout_rate, name="charge_mlp")(scalars, deterministic)
        a1 = ChannelLinear(n_ch, name="charge_axial_1")(vectors)  # [n, C, 3]
        a2 = ChannelLinear(n_ch, name="charge_axial_2")(vectors)  # [n, C, 3]
        t = ChannelLinear(n_ch, name="charge_tensor")(tensors)  # [n, C, 3, 3]
        t = 0.5 * (t + jnp.swapaxes(t, -1, -2))
        eye = jnp.eye(3, dtype=scalars.dtype)
        z = s[..., None, None] * eye + _cross_matrix(jnp.cross(a1, a2)) + t  # [n, C, 3, 3]
        # acoustic sum rule per channel: sum_k Z_kc = 0 in every crystal
        mean = crystal_mean(z, graph)  # [n_graph, C, 3, 3]
        z = z - mean[node_graph_index(graph, z.shape[0])]
        stiff = MLP([*hidden, 1], cfg.dropout_rate, name="compliance_mlp")(scalars, deterministic)
        w = jax.nn.softplus(stiff[:, 0])  # [n] > 0, a per-atom inverse stiffness
        gram = jnp.einsum("ncij,nckj->nik", z, z)  # [n, 3, 3], PSD
        real = jraph.get_node_padding_mask(graph)  # [n]
        per_atom = jnp.where(real[:, None, None], w[:, None, None] * gram, 0.0)
        return crystal_mean(per_atom, graph)  # [n_graph, 3, 3]
