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

import dataclasses
import functools
import itertools
import json
import math
import re
from pathlib import Path

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dtnn_jax.encoder.interface import (
    EncoderOutput,
    FrozenEncoder,
    SpeciesTable,
    weights_files,
)
from dtnn_jax.graph import BatchBudget
from dtnn_jax.graph.geometry import (
    crystal_sum,
    edge_mask,
    edge_vectors,
    node_mask,
    safe_norm,
    unit_vectors,
)

# e3nn-jax's `normalize_function(silu)` constant c (the gate and scalar activations are
# silu(x) / c): the RMS of silu on the 10^6 + 1 quantiles of N(0, 1), as e3nn-jax 0.21
# computes it in float32, the precision the models were trained and are referenced in. The
# float64 quadrature gives 0.5964586854 (1.6e-6 relative difference).
SILU_NORMALIZATION = 0.5964577198028564


class NequixWeightsError(ValueError):
    """The weight file does not match the architecture it claims."""


@dataclasses.dataclass(frozen=True)
class NequixConfig(SpeciesTable):
    """Architecture of a frozen Nequix encoder (static under jit, hashable).

    Attributes:
        cutoff_angstrom: neighbour cutoff radius r_c (angstrom).
        n_radial_basis: number of Bessel functions (2/r_c) sin(n pi r / r_c) / r, n = 1..N.
        radial_polynomial_p: exponent p of the polynomial envelope (NequIP's, r / r_c < 1).
        radial_mlp_hidden: hidden widths of the radial MLP (plain SiLU, no biases).
        lmax_edge: maximum l of the edge spherical harmonics (``0e+1o+...``).
        node_irreps: the one-hot species input, then the node irreps after each of the
            ``num_layers`` interaction layers (true parity, e3nn notation).
        avg_n_neighbors: the aggregated messages are divided by its square root.
        energy_scale: multiplies the readout (dimensionless; the readout is in eV).
        energy_shift_ev: added to every atomic energy (eV).
        species_z: atomic number of each species index (ascending, nequix's order).
        layer_norm: whether each layer applies the RMS layer norm before its gate.
        layer_norm_eps: the norm's epsilon (added to the mean square).
        silu_normalization: c of the normalised SiLU silu(x) / c (see the module constant).
        model_name: name of the converted checkpoint. Like ``source_sha256``, provenance
            only: excluded from ``==`` and the hash, so models of one architecture share a
            compiled forward pass.
        source_sha256: sha256 of the source ``.nqx``.
    """

    cutoff_angstrom: float
    n_radial_basis: int
    radial_polynomial_p: float
    radial_mlp_hidden: tuple[int, ...]
    lmax_edge: int
    node_irreps: tuple[str, ...]
    avg_n_neighbors: float
    energy_scale: float
    energy_shift_ev: float
    species_z: tuple[int, ...]
    layer_norm: bool = True
    layer_norm_eps: float = 1e-12
    silu_normalization: float = SILU_NORMALIZATION
    model_name: str = dataclasses.field(default="nequix", compare=False)
    source_sha256: str = dataclasses.field(default="", compare=False)

    def __post_init__(self):
        if not self.cutoff_angstrom > 0:
            raise ValueError(f"cutoff must be positive: {self.cutoff_angstrom}")
        if self.n_radial_basis < 1 or self.radial_polynomial_p <= 0:
            raise ValueError(f"need n_radial_basis >= 1 and p > 0: {self}")
        if len(self.node_irreps) < 2:
            raise ValueError("node_irreps needs the input irreps and at least one layer")
        if self.avg_n_neighbors <= 0:
            raise ValueError(f"avg_n_neighbors must be positive: {self.avg_n_neighbors}")
        if list(self.species_z) != sorted(set(self.species_z)) or min(self.species_z) < 1:
            raise ValueError("species_z must be distinct ascending atomic numbers >= 1")
        if self.layer_irreps(0) != e3nn.Irreps(f"{len(self.species_z)}x0e"):
            raise ValueError(f"input irreps {self.node_irreps[0]} != one-hot of the species")
        for k in range(1, self.num_layers + 1):
            irreps = self.layer_irreps(k)
            if irreps != irreps.regroup() or any(ir.l == 0 and ir.p == -1 for _, ir in irreps):
                raise ValueError(f"layer {k} irreps {irreps}: expected regrouped, no 0o")

    @property
    def num_layers(self) -> int:
        return len(self.node_irreps) - 1

    @property
    def num_species(self) -> int:
        return len(self.species_z)

    def layer_irreps(self, k: int) -> e3nn.Irreps:
        """Node irreps after layer k (k = 0: the one-hot species input)."""
        return e3nn.Irreps(self.node_irreps[k])

    def gate_input_irreps(self, k: int) -> e3nn.Irreps:
        """Irreps entering layer k's norm and gate: its output plus one scalar per l > 0."""
        out = self.layer_irreps(k)
        n_gates = sum(mul for mul, ir in out if ir.l > 0)
        return (out + e3nn.Irreps(f"{n_gates}x0e")).regroup()

    @property
    def sh_irreps(self) -> e3nn.Irreps:
        return e3nn.s2_irreps(self.lmax_edge)

    @classmethod
    def from_json(cls, path: str | Path) -> NequixConfig:
        """Reads the ``architecture`` block written by ``experiments/convert_nequix.py``."""
        with open(path) as f:
            meta = json.load(f)
        try:
            arch = meta["architecture"]
            if arch.get("index_weights", False):
                raise NequixWeightsError(f"{path}: per-species skip weights not supported")
            return cls(
                cutoff_angstrom=float(arch["cutoff_angstrom"]),
                n_radial_basis=int(arch["n_radial_basis"]),
                radial_polynomial_p=float(arch["radial_polynomial_p"]),
                radial_mlp_hidden=tuple(int(h) for h in arch["radial_mlp_hidden"]),
                lmax_edge=int(arch["lmax_edge"]),
                node_irreps=tuple(str(s) for s in arch["node_irreps"]),
                avg_n_neighbors=float(arch["avg_n_neighbors"]),
                energy_scale=float(arch["energy_scale"]),
                energy_shift_ev=float(arch["energy_shift_ev"]),
                species_z=tuple(int(z) for z in arch["species_z"]),
                layer_norm=bool(arch["layer_norm"]),
                model_name=str(arch.get("model_name") or Path(path).stem),
                source_sha256=str(meta.get("source_sha256", "")),
            )
        except KeyError as err:
            raise NequixWeightsError(f"{path}: missing key {err} in the Nequix json") from err


# ---------------------------------------------------------------------------------------
# Static bookkeeping of the tensor product (host side, cached per config and layer)
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _PathGroup:
    """The tensor-product paths of one input irrep ``(mul)x(ir_in)`` of a layer.

    Attributes:
        ir_in: the input irrep (key of the node-feature dict).
        mul: its multiplicity (the 'u' of 'uvu').
        paths: per path ``(index, ir_out, column)``: the path's index in nequix's
            instruction order, its output irrep and first column in the fused output.
        cg: [2 l_in + 1, n_sh, width] float64, the Clebsch-Gordan coefficients of all paths
            side by side, times sqrt(2 l_out + 1) (e3nn's 'component' normalisation).
    """

    ir_in: str
    mul: int
    paths: tuple[tuple[int, str, int], ...]
    cg: np.ndarray

    @property
    def width(self) -> int:
        return self.cg.shape[2]

    @property
    def path_of_column(self) -> np.ndarray:
        """[width] int: the path (position in ``paths``) of each fused output column."""
        dims = [e3nn.Irrep(ir).dim for _, ir, _ in self.paths]
        return np.repeat(np.arange(len(self.paths)), dims)


@functools.lru_cache(maxsize=64)
def _tensor_product_layout(config: NequixConfig, k: int):
    """Paths of layer k's convolution, as nequix / e3nn-jax build them.

    Returns:
        (groups, blocks, radial_columns): ``groups`` one `_PathGroup` per input irrep;
        ``blocks`` per output irrep of the regrouped message, in e3nn's sorted order,
        ``(ir_out, [(group, column, mul), ...])``; ``radial_columns`` the permutation that
        takes the radial-MLP output (nequix: one column per channel of each path, paths
        sorted by output irrep) to ``[per group: (channel, path)]``.
    """
    irreps_in = config.layer_irreps(k - 1)
    allowed = {ir for _, ir in config.layer_irreps(k)}
    sh = config.sh_irreps
    sh_offsets = np.cumsum([0] + [ir.dim for _, ir in sh])
    paths = []  # nequix's instruction order: input irrep, then sh irrep, then output l
    for g, (mul, ir_in) in enumerate(irreps_in):
        for s, (_, ir_sh) in enumerate(sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in allowed:
                    paths.append((g, s, ir_out, mul))
    order = sorted(range(len(paths)), key=lambda p: (paths[p][2], p))  # e3nn's stable sort
    stored_offset, pos = {}, 0
    for p in order:
        stored_offset[p] = pos
        pos += paths[p][3]
    groups, column_of_path, radial_columns = [], {}, []
    for g, (mul, ir_in) in enumerate(irreps_in):
        members = [p for p, path in enumerate(paths) if path[0] == g]
        width = sum(paths[p][2].dim for p in members)
        cg = np.zeros((ir_in.dim, sh.dim, width))
        col, entries = 0, []
        for p in members:
            _, s, ir_out, _ = paths[p]
            ir_sh = sh[s].ir
            block = e3nn.clebsch_gordan(ir_in.l, ir_sh.l, ir_out.l) * math.sqrt(ir_out.dim)
            cg[:, sh_offsets[s] : sh_offsets[s + 1], col : col + ir_out.dim] = block
            entries.append((p, str(ir_out), col))
            column_of_path[p] = (g, col)
            col += ir_out.dim
        groups.append(_PathGroup(str(ir_in), mul, tuple(entries), cg))
        radial_columns += [stored_offset[p] + u for u in range(mul) for p in members]
    blocks: dict[str, list] = {}
    for p in order:
        g, col = column_of_path[p]
        blocks.setdefault(str(paths[p][2]), []).append((g, col, paths[p][3]))
    return tuple(groups), tuple(blocks.items()), np.asarray(radial_columns)


# ---------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------

_LINEAR_NAME = re.compile(r"w\[(\d+),(\d+)\] (\d+)x(\d+[eo]),(\d+)x(\d+[eo])")


def _linear_blocks(state: dict, prefix: str) -> dict[str, np.ndarray]:
    """e3nn Linear weights ``{"w[i,o] 64x1o,64x1o": W}`` -> ``{"1o": W [mul_in, mul_out]}``."""
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix + "."):
            continue
        match = _LINEAR_NAME.fullmatch(key[len(prefix) + 1 :])
        if not match or match.group(4) != match.group(6):
            raise NequixWeightsError(f"unexpected linear weight name {key!r}")
        ir = match.group(4)
        if ir in out or value.shape != (int(match.group(3)), int(match.group(5))):
            raise NequixWeightsError(f"{key}: duplicate irrep or shape {value.shape}")
        out[ir] = np.asarray(value)
    if not out:
        raise NequixWeightsError(f"no weights under {prefix!r}")
    return out


def _check_linear(blocks: dict, irreps_in: e3nn.Irreps, irreps_out: e3nn.Irreps, name: str):
    rows = {str(ir): mul for mul, ir in irreps_in}
    cols = {str(ir): mul for mul, ir in irreps_out}
    for ir, w in blocks.items():
        if w.shape != (rows.get(ir), cols.get(ir)):
            raise NequixWeightsError(
                f"{name} [{ir}]: shape {w.shape}, the config needs ({rows.get(ir)}, {cols.get(ir)})"
            )


def params_from_state(state: dict[str, np.ndarray], config: NequixConfig) -> dict:
    """Builds the forward pass's parameter pytree from the converter's named leaves.

    Returns:
        ``{"atom_energies": [n_species], "readout": [mul, 1], "layers": (per layer
        {"radial": (W [in, out], ...), "linear_1" | "linear_2" | "skip": {irrep: W
        [mul_in, mul_out]}, "layer_norm": {irrep: [mul]}}, ...)}`` as numpy float32; the
        radial MLP's last columns are permuted to the layout of `_tensor_product_layout`.
    """
    try:
        atom_energies = np.asarray(state["atom_energies"])
        if atom_energies.shape != (config.num_species,):
            raise NequixWeightsError(f"atom_energies: shape {atom_energies.shape}")
        layers = []
        n_radial = len(config.radial_mlp_hidden) + 1
        for k in range(1, config.num_layers + 1):
            prefix = f"layers.{k - 1}"
            _, blocks, radial_columns = _tensor_product_layout(config, k)
            radial = [
                np.asarray(state[f"{prefix}.radial_mlp.layers.{i}.weights"])
                for i in range(n_radial)
            ]
            sizes = [config.n_radial_basis, *config.radial_mlp_hidden, len(radial_columns)]
            shapes = [w.shape for w in radial]
            if shapes != list(itertools.pairwise(sizes)):
                raise NequixWeightsError(f"{prefix}: radial MLP shapes {shapes}, need {sizes}")
            radial[-1] = radial[-1][:, radial_columns]
            message_irreps = e3nn.Irreps(
                [(sum(m for _, _, m in entries), ir) for ir, entries in blocks]
            )
            gated = config.gate_input_irreps(k)
            layer = {
                "radial": tuple(radial),
                "linear_1": _linear_blocks(state, f"{prefix}.linear_1"),
                "linear_2": _linear_blocks(state, f"{prefix}.linear_2"),
                "skip": _linear_blocks(state, f"{prefix}.skip"),
            }
            irreps_in = config.layer_irreps(k - 1)
            _check_linear(layer["linear_1"], irreps_in, irreps_in, f"{prefix}.linear_1")
            _check_linear(layer["linear_2"], message_irreps, gated, f"{prefix}.linear_2")
            _check_linear(layer["skip"], irreps_in, gated, f"{prefix}.skip")
            if config.layer_norm:
                layer["layer_norm"] = {
                    str(ir): np.asarray(state[f"{prefix}.layer_norm.affine_weight.{i}"])
                    for i, (_, ir) in enumerate(gated)
                }
                for (mul, ir), w in zip(gated, layer["layer_norm"].values(), strict=True):
                    if w.shape != (mul,):
                        raise NequixWeightsError(f"{prefix}.layer_norm [{ir}]: {w.shape}")
            layers.append(layer)
        readout = _linear_blocks(state, "readout")
        mul_last = config.layer_irreps(config.num_layers).count("0e")
        if set(readout) != {"0e"} or readout["0e"].shape != (mul_last, 1):
            raise NequixWeightsError(f"readout: {[(k, w.shape) for k, w in readout.items()]}")
    except KeyError as err:
        raise NequixWeightsError(f"weight {err} missing for {config.model_name}") from err
    return {"atom_energies": atom_energies, "readout": readout["0e"], "layers": tuple(layers)}


def load_weights(name_or_path: str | Path = "nequix-oam-1") -> tuple[dict, NequixConfig]:
    """Reads ``<name>.npz`` + ``<name>.json`` (package weights dir, or a path stem).

    Returns:
        (params, config): params as a pytree of numpy float32 arrays.
    """
    npz, js = weights_files(name_or_path, "experiments/convert_nequix.py")
    config = NequixConfig.from_json(js)
    with np.load(npz) as data:
        state = {k: data[k] for k in data.files}
    return params_from_state(state, config), config


@functools.lru_cache(maxsize=4)
def load_nequix(name: str = "nequix-oam-1") -> tuple[dict, NequixConfig]:
    """Shipped Nequix weights ("nequix-oam-1", "nequix-oam-1-pft"), cached.

    Returns:
        (params pytree of float32 jax arrays, config).
    """
    params, config = load_weights(name)
    return jax.tree.map(jnp.asarray, params), config


# ---------------------------------------------------------------------------------------
# The forward pass
# ---------------------------------------------------------------------------------------


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
    groups, blocks, _ = _tensor_product_layout(config, k)
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
    atomic = jnp.where(real_node, atomic, 0.0)
    energy = crystal_sum(atomic, graph)  # [n_graph]
    return EncoderOutput(
        energy=energy,
        node_energies=atomic,
        node_features=tuple(features),
        edge_radial=basis,
        edge_sh=sh,
        edge_vectors=vectors,
        edge_lengths=lengths,
    )


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
