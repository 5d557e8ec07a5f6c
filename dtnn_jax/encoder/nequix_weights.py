"""Loading converted Nequix weights into the parameter pytree of the JAX forward pass.

The ``.npz`` written by ``experiments/convert_nequix.py`` keeps nequix's leaf names and
e3nn-jax's per-irrep layouts. This module decodes them once, on the host: the e3nn
``Linear`` weights become one ``[mul_in, mul_out]`` matrix per irrep, and the radial-MLP
output columns are permuted to the layout of the fused tensor product
(`tensor_product_layout`: the paths of each input irrep side by side, with their
Clebsch-Gordan coefficients), so the forward pass (`dtnn_jax.encoder.nequix`) is a handful of
einsums.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from pathlib import Path

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from dtnn_jax.encoder.interface import read_converted
from dtnn_jax.encoder.nequix_config import NequixConfig, NequixWeightsError

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
def tensor_product_layout(config: NequixConfig, k: int):
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
        radial MLP's last columns are permuted to the layout of `tensor_product_layout`.
    """
    try:
        atom_energies = np.asarray(state["atom_energies"])
        if atom_energies.shape != (config.num_species,):
            raise NequixWeightsError(f"atom_energies: shape {atom_energies.shape}")
        layers = []
        n_radial = len(config.radial_mlp_hidden) + 1
        for k in range(1, config.num_layers + 1):
            prefix = f"layers.{k - 1}"
            _, blocks, radial_columns = tensor_product_layout(config, k)
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
    """(params as numpy float32 arrays, config) of a shipped name or a path stem."""
    state, config = read_converted(name_or_path, "experiments/convert_nequix.py", NequixConfig)
    return params_from_state(state, config), config


@functools.lru_cache(maxsize=4)
def load_nequix(name: str = "nequix-oam-1") -> tuple[dict, NequixConfig]:
    """Shipped Nequix weights ("nequix-oam-1", "nequix-oam-1-pft"), cached.

    Returns:
        (params pytree of float32 jax arrays, config).
    """
    params, config = load_weights(name)
    return jax.tree.map(jnp.asarray, params), config
