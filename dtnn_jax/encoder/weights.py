"""Loading converted SevenNet weights into the parameter pytree of the JAX forward pass.

The ``.npz`` written by ``experiments/convert_sevennet.py`` keeps sevenn's state-dict names
and e3nn's flat layouts. This module decodes them once, on the host, into dense per-l
matrices and fused Clebsch-Gordan tensors, so the forward pass is a handful of einsums:

* e3nn ``Linear`` weights (flat, one ``[mul_in, mul_out]`` block per (input entry, output
  entry) pair of equal l, input entries outer) become one ``[sum mul_in, sum mul_out]``
  matrix per l;
* the radial-MLP output columns (one block of ``mul`` columns per tensor-product path, in
  the checkpoint's instruction order, see ``SevenNetConfig.instruction_order``) are
  permuted to ``[per node l: (channel, path)]`` so the weights of one node l are a reshape;
* the stored Wigner-3j buffers (with their old-e3nn signs, consistent with the stored radial
  weights) and the identities of paths that involve l = 0 are stacked per node l into
  ``[2 l1 + 1, n_sh, sum_paths (2 l3 + 1)]`` with e3nn's ``uvu`` path normalisation
  ``sqrt(2 l3 + 1)`` folded in.

e3nn (torch) and e3nn-jax compute the same real spherical harmonics of a Cartesian vector
for l <= 2 (checked in the tests), so no change of basis is needed: the features are in
e3nn-jax's basis as they are.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dtnn_jax.encoder.config import SevenNetConfig
from dtnn_jax.encoder.interface import read_converted


class WeightsError(ValueError):
    """The weight file does not match the architecture it claims."""


def _linear_blocks(
    flat: np.ndarray,
    irreps_in: list[tuple[int, int]],
    irreps_out: list[tuple[int, int]],
    name: str,
) -> dict[str, np.ndarray]:
    """Decodes an e3nn ``Linear`` flat weight into ``{"l<l>": [sum mul_in, sum mul_out]}``."""
    rows: dict[int, int] = {}
    row_offset = []
    for mul, l in irreps_in:
        row_offset.append(rows.get(l, 0))
        rows[l] = rows.get(l, 0) + mul
    cols: dict[int, int] = {}
    col_offset = []
    for mul, l in irreps_out:
        col_offset.append(cols.get(l, 0))
        cols[l] = cols.get(l, 0) + mul
    dense = {l: np.zeros((rows[l], cols[l]), np.float32) for l in rows if l in cols}
    pos = 0
    for i, (mul_in, l_in) in enumerate(irreps_in):
        for o, (mul_out, l_out) in enumerate(irreps_out):
            if l_in != l_out:
                continue
            block = flat[pos : pos + mul_in * mul_out].reshape(mul_in, mul_out)
            dense[l_in][
                row_offset[i] : row_offset[i] + mul_in, col_offset[o] : col_offset[o] + mul_out
            ] = block
            pos += mul_in * mul_out
    if pos != flat.size:
        raise WeightsError(f"{name}: {flat.size} weights, the irreps need {pos}")
    return {f"l{l}": m for l, m in dense.items()}


def _path_cg(l1: int, l2: int, l3: int, stored: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """Wigner-3j [2l1+1, 2l2+1, 2l3+1] of one path, as e3nn's code generator uses it."""
    if l1 == 0:  # e3nn: x1 * x2 / sqrt(2 l3 + 1)
        return (np.eye(2 * l2 + 1) / math.sqrt(2 * l3 + 1))[None, :, :]
    if l2 == 0:
        return (np.eye(2 * l1 + 1) / math.sqrt(2 * l3 + 1))[:, None, :]
    if l3 == 0:  # e3nn: (x1 . x2) / sqrt(2 l1 + 1)
        return (np.eye(2 * l1 + 1) / math.sqrt(2 * l1 + 1))[:, :, None]
    key = f"{prefix}.convolution._compiled_main_left_right._w3j_{l1}_{l2}_{l3}"
    if key not in stored:
        raise WeightsError(f"missing Wigner-3j buffer {key}")
    return np.asarray(stored[key], np.float64)


def conv_layout(config: SevenNetConfig, k: int):
    """Static bookkeeping of layer k's tensor product, grouped by node l.

    Returns:
        A dict ``l1 -> list of (path_index_within_l1, l2, l3, column_offset)`` where the
        column offset is the path's first component in the fused CG output of that l1.
    """
    layout: dict[int, list[tuple[int, int, int, int]]] = {}
    offsets: dict[int, int] = {}
    for l1, l2, l3, _ in config.conv_paths(k):
        entries = layout.setdefault(l1, [])
        entries.append((len(entries), l2, l3, offsets.get(l1, 0)))
        offsets[l1] = offsets.get(l1, 0) + 2 * l3 + 1
    return layout


def _radial_column_permutation(config: SevenNetConfig, k: int) -> np.ndarray:
    """Index array: new column -> stored column of the last radial-MLP layer of layer k."""
    paths = config.conv_paths(k)
    order = list(range(len(paths)))
    if config.instruction_order == "sorted":
        # sevenn >= 0.11 sorts instructions by output irrep (stable); l3 is that irrep.
        order = sorted(order, key=lambda i: paths[i][2])
    stored_offset = {}
    pos = 0
    for i in order:
        stored_offset[i] = pos
        pos += paths[i][3]
    new_columns = []
    for l1 in sorted({p[0] for p in paths}):
        members = [i for i, p in enumerate(paths) if p[0] == l1]
        mul = paths[members[0]][3]
        for u in range(mul):
            for i in members:
                new_columns.append(stored_offset[i] + u)
    return np.asarray(new_columns)


def params_from_state(state: dict[str, np.ndarray], config: SevenNetConfig) -> dict:
    """Builds the forward pass's parameter pytree from a converted state dict."""
    try:
        return _params_from_state(state, config)
    except KeyError as err:
        raise WeightsError(
            f"weight {err} missing for the architecture {config.model_name}"
        ) from err


def _params_from_state(state, config):
    n_species = config.num_species
    emb_flat = np.asarray(state["onehot_to_feature_x.linear.weight"])
    mul0 = config.layer_irreps(0)[0][0]
    params = {
        "bessel_frequencies": np.asarray(state["edge_embedding.basis_function.coeffs"]),
        "species_embedding": emb_flat.reshape(n_species, mul0),
        "energy_shift": np.asarray(state["rescale_atomic_energy.shift"]).reshape(-1),
        "energy_scale": np.asarray(state["rescale_atomic_energy.scale"]).reshape(-1),
    }
    n_sh = (config.lmax_edge + 1) ** 2
    layers = []
    for k in range(1, config.num_layers + 1):
        t = k - 1
        irreps_x = config.layer_irreps(k - 1)
        gate_in = config.gate_input_irreps(k)
        paths = config.conv_paths(k)
        mid = sorted(((mul, l3) for _, _, l3, mul in paths), key=lambda e: e[1])  # stable
        n_hidden = len(config.radial_hidden)
        radial = [
            np.asarray(state[f"{t}_convolution.weight_nn.layer{i}.weight"])
            for i in range(n_hidden + 1)
        ]
        n_w = sum(p[3] for p in paths)
        if radial[-1].shape[1] != n_w:
            raise WeightsError(f"layer {k}: radial MLP gives {radial[-1].shape[1]}, needs {n_w}")
        radial[-1] = radial[-1][:, _radial_column_permutation(config, k)]
        prefix = f"{t}_convolution"
        cg = {}
        for l1, entries in conv_layout(config, k).items():
            width = sum(2 * l3 + 1 for _, _, l3, _ in entries)
            fused = np.zeros((2 * l1 + 1, n_sh, width), np.float64)
            for _, l2, l3, col in entries:
                w3j = _path_cg(l1, l2, l3, state, prefix)
                fused[:, l2 * l2 : (l2 + 1) ** 2, col : col + 2 * l3 + 1] = w3j * math.sqrt(
                    2 * l3 + 1
                )
            cg[f"l{l1}"] = fused.astype(np.float32)
        layers.append(
            {
                "self_connection": _linear_blocks(
                    np.asarray(state[f"{t}_self_connection_intro.linear.weight"]),
                    irreps_x,
                    gate_in,
                    f"{t}_self_connection_intro",
                ),
                "linear_in": _linear_blocks(
                    np.asarray(state[f"{t}_self_interaction_1.linear.weight"]),
                    irreps_x,
                    irreps_x,
                    f"{t}_self_interaction_1",
                ),
                "radial": tuple(r.astype(np.float32) for r in radial),
                "linear_out": _linear_blocks(
                    np.asarray(state[f"{t}_self_interaction_2.linear.weight"]),
                    mid,
                    gate_in,
                    f"{t}_self_interaction_2",
                ),
                "cg": cg,
            }
        )
    params["layers"] = tuple(layers)
    mul_last = config.layer_irreps(config.num_layers)[0][0]
    hidden = np.asarray(state["reduce_input_to_hidden.linear.weight"])
    params["readout_hidden"] = hidden.reshape(mul_last, hidden.size // mul_last)
    energy = np.asarray(state["reduce_hidden_to_energy.linear.weight"])
    params["readout_energy"] = energy.reshape(-1, 1)
    return params


def load_weights(name_or_path: str | Path = "sevennet0") -> tuple[dict, SevenNetConfig]:
    """(params as numpy float32 arrays, config) of a shipped name or a path stem."""
    state, config = read_converted(name_or_path, "experiments/convert_sevennet.py", SevenNetConfig)
    return params_from_state(state, config), config
