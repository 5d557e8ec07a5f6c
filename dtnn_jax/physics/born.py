"""Learned Born effective charges and the ionic dielectric tensor they give with fixed K.

In the harmonic approximation the static ionic tensor of a crystal is

    eps_ion[a, b] = 4 pi e^2/(4 pi eps0) / Omega
                    * sum_{k,l} Z_k[a, :] . Kinv[(k, :), (l, :)] . Z_l[b, :]

with Z_k the Born effective charge of atom k (e; first index the field direction), Kinv
the pseudo-inverse of the Gamma force constants on the optical subspace (A^2/eV; from a
frozen, phonon-accurate potential, `dtnn_jax.physics.force_constants`) and Omega the cell
volume (A^3). `BornCharges` predicts Z_k from the frozen encoder's node features with the
DTNN trunk (`dtnn_jax.models.readout.equivariant_trunk`):

    Z_k = (q_k + s_k) I + [a_k]_x + T_k,    then  Z_k -= mean_k Z_k   (acoustic sum rule)

q_k the nominal charge of the atom (pymatgen's oxidation-state guess, an input), s_k a
learned isotropic correction, [a]_x the antisymmetric matrix of an axial vector a_k (the
cross product of two learned vector channels: 1o x 1o = 1e, so Z stays a true, inversion-
even tensor with an O(3) encoder) and T_k a learned symmetric traceless part. The correction
heads start at zero, so an untrained model gives the nominal charges, and weight decay pulls
back towards them: the shipped data carry eps_ion but no Z* labels, and eps_ion alone
constrains only six numbers per crystal.

`IonicDielectric` turns Z into eps_ion per crystal with the precomputed Kinv (a graph
global, zero-padded to a fixed number of atoms), so the whole map is differentiable and the
model trains in the package's harness (`dtnn_jax.training.fit(..., model=...)`, with the
identity output map). It is positive semi-definite for a PSD Kinv and exactly zero for a
one-atom cell (no optical modes).
"""

from __future__ import annotations

import functools
import warnings

import flax.linen as nn
import jax.numpy as jnp
import jraph
import numpy as np

from dtnn_jax.config import ReadoutConfig
from dtnn_jax.graph import crystal_mean, node_graph_index
from dtnn_jax.models.readout import MLP, ChannelLinear, equivariant_trunk
from dtnn_jax.physics.dielectric import ionic_dielectric_jnp


def cross_matrix(a: jnp.ndarray) -> jnp.ndarray:
    """[..., 3] -> [..., 3, 3] the antisymmetric matrix [a]_x with [a]_x b = a x b."""
    zero = jnp.zeros_like(a[..., 0])
    x, y, z = a[..., 0], a[..., 1], a[..., 2]
    return jnp.stack(
        [
            jnp.stack([zero, -z, y], axis=-1),
            jnp.stack([z, zero, -x], axis=-1),
            jnp.stack([-y, x, zero], axis=-1),
        ],
        axis=-2,
    )


class BornCharges(nn.Module):
    """Per-atom Born effective charges [n_node, 3, 3] (e), the acoustic sum rule imposed.

    Reads ``nodes["features"]`` (the encoder layer), ``nodes["charge_nominal"]`` [n_node]
    (e) and, with ``config.use_edges``, the edges' radial basis, like the DTNN readout.

    Attributes:
        config: the trunk's configuration (widths, blocks, edges, dropout).
    """

    config: ReadoutConfig

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, deterministic: bool = True) -> jnp.ndarray:
        cfg = self.config
        scalars, vectors, tensors = equivariant_trunk(cfg, graph, deterministic)
        zeros = nn.initializers.zeros
        hidden = MLP([cfg.width] * (cfg.mlp_layers - 1), cfg.dropout_rate, name="born_mlp")(
            scalars, deterministic
        )
        s = nn.Dense(1, kernel_init=zeros, name="born_isotropic")(nn.silu(hidden))[:, 0]  # [n]
        a1 = ChannelLinear(1, name="born_axial_1")(vectors)[:, 0]  # [n, 3]
        a2 = ChannelLinear(1, name="born_axial_2")(vectors)[:, 0]  # [n, 3]
        axial = jnp.cross(a1, a2) * self.param("born_axial_scale", zeros, ())  # [n, 3], 1e
        t = ChannelLinear(1, name="born_tensor")(tensors)[:, 0]  # [n, 3, 3]
        t = 0.5 * (t + jnp.swapaxes(t, -1, -2)) * self.param("born_tensor_scale", zeros, ())
        q = graph.nodes["charge_nominal"].astype(scalars.dtype)  # [n]
        eye = jnp.eye(3, dtype=scalars.dtype)
        z = (q + s)[:, None, None] * eye + cross_matrix(axial) + t  # [n, 3, 3]
        # acoustic sum rule: sum_k Z_k = 0 in every crystal (padding atoms set to 0)
        mean = crystal_mean(z, graph)  # [n_graph, 3, 3]
        z = z - mean[node_graph_index(graph, z.shape[0])]
        return jnp.where(_real_nodes(graph)[:, None, None], z, 0.0)


def _real_nodes(graph: jraph.GraphsTuple):
    return jraph.get_node_padding_mask(graph)


def ionic_dielectric(z: jnp.ndarray, graph: jraph.GraphsTuple) -> jnp.ndarray:
    """eps_ion [n_graph, 3, 3] from Born charges z [n_node, 3, 3] and the graph's Kinv.

    ``globals["kinv"]`` [n_graph, 3L, 3L] (A^2/eV, atoms in order, zero-padded to L atoms)
    and ``globals["volume"]`` [n_graph] (A^3) come with each crystal; a crystal's atoms are
    gathered into a dense [L] block from its node offset.
    """
    kinv = graph.globals["kinv"]  # [n_graph, 3L, 3L]
    n_graph, slots = kinv.shape[0], kinv.shape[-1] // 3
    first = jnp.cumsum(graph.n_node) - graph.n_node  # [n_graph]
    local = jnp.arange(slots)  # [L]
    index = first[:, None] + local[None, :]  # [n_graph, L]
    valid = local[None, :] < graph.n_node[:, None]  # [n_graph, L]
    dense = z[jnp.clip(index, 0, z.shape[0] - 1)] * valid[..., None, None]  # [G, L, 3, 3]
    volume = graph.globals["volume"].reshape(n_graph)
    return ionic_dielectric_jnp(dense, kinv, jnp.where(volume > 0, volume, 1.0))


class IonicDielectric(nn.Module):
    """eps_ion [n_graph, 3, 3] from learned Born charges and the crystals' fixed Kinv.

    The model the training harness fits to eps_ion labels (identity output map); at
    inference `charges` gives Z alone and the contraction runs on the host in float64 with
    each crystal's own K (`dtnn_jax.inference.predictor`).

    Attributes:
        config: the Born-charge trunk's configuration.
    """

    config: ReadoutConfig

    def setup(self):
        self.born = BornCharges(self.config)

    def __call__(
        self, graph: jraph.GraphsTuple, deterministic: bool = True, return_charges: bool = False
    ):
        """eps_ion [n_graph, 3, 3]; with ``return_charges`` also Z [n_node, 3, 3]."""
        z = self.born(graph, deterministic)  # [n_node, 3, 3]
        eps = ionic_dielectric(z, graph)
        return (eps, z) if return_charges else eps

    def charges(self, graph: jraph.GraphsTuple, deterministic: bool = True) -> jnp.ndarray:
        """Z [n_node, 3, 3] (e), the sum rule imposed; needs no Kinv."""
        return self.born(graph, deterministic)


@functools.lru_cache(maxsize=65536)
def _nominal_by_formula(formula: str) -> tuple[tuple[str, float], ...]:
    from pymatgen.core import Composition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's electronegativity warnings (noble gases)
        guesses = Composition(formula).oxi_state_guesses(max_sites=-50)
    return tuple(sorted(guesses[0].items())) if guesses else ()


def nominal_charges(structure) -> np.ndarray:
    """[n_atoms] each atom's nominal (formal) charge: pymatgen's most likely
    charge-balanced oxidation-state guess for the formula (mixed valence averaged per
    element); all zeros when no balanced assignment exists (intermetallics), so the head
    then learns the charges from scratch."""
    guess = dict(_nominal_by_formula(structure.composition.reduced_formula))
    return np.array([float(guess.get(site.specie.symbol, 0.0)) for site in structure])
