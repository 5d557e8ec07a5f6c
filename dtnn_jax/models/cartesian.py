"""From e3nn-jax irreps features to Cartesian scalars, vectors and rank-2 tensors.

The encoder's node features are flat arrays laid out by an irreps string (e3nn-jax's
convention: for each ``mul x ir`` block, ``mul`` consecutive copies of the ``2l+1``
components). The DTNN readout works with Cartesian objects instead: l = 1 components are
already (x, y, z) in e3nn-jax, and an l = 2 component vector x (5 numbers) is mapped to the
symmetric traceless matrix ``M = sum_m B[:, :, m] x_m`` with the orthonormal basis
``B = reduced_tensor_product_basis("ij=ji")`` restricted to its l = 2 part. This map is
equivariant (``D2(R) x -> R M R^T``) and norm preserving (``|M|_F = |x|``).

Parity labels are ignored on purpose: SevenNet-0 is SO(3)-only (``is_parity=False``), so its
"1e"/"2e" features transform under rotations exactly like vectors and symmetric tensors; an
O(3) encoder (Nequix) gives true vectors "1o" and tensors "2e", which is what the readout's
``s I + v v^T + T`` needs for an inversion-invariant eps.

l = 3 channels (Nequix's "3o") are dropped: the readout has no l = 3 -> l = 2 path (it would
need a tensor product), and the encoder's own next layer already folds the l = 3 channels
into its l <= 2 features.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np


class CartesianFeatures(NamedTuple):
    """Per-atom features split by rank.

    Attributes:
        scalars: [n_nodes, C0] invariant channels (all l = 0 blocks).
        vectors: [n_nodes, C1, 3] Cartesian vectors (all l = 1 blocks).
        tensors: [n_nodes, C2, 3, 3] symmetric traceless tensors (all l = 2 blocks).
    """

    scalars: jnp.ndarray
    vectors: jnp.ndarray
    tensors: jnp.ndarray


@functools.cache
def l2_to_matrix_basis() -> np.ndarray:
    """[5, 3, 3] orthonormal basis mapping l = 2 components to symmetric traceless 3x3."""
    basis = e3nn.reduced_tensor_product_basis("ij=ji", i="1e")  # [3, 3, 6], 0e + 2e
    b2 = np.asarray(basis.filter(keep="2e").array)  # [3, 3, 5]
    return np.ascontiguousarray(np.moveaxis(b2, -1, 0)).astype(np.float32)


def l2_to_matrix(x: jnp.ndarray) -> jnp.ndarray:
    """[..., 5] l = 2 components -> [..., 3, 3] symmetric traceless matrices."""
    return jnp.einsum("...m,mij->...ij", x, l2_to_matrix_basis())


def split_irreps(features: jnp.ndarray, irreps: str | e3nn.Irreps) -> CartesianFeatures:
    """Splits flat node features [n, irreps.dim] into Cartesian scalars/vectors/tensors.

    Args:
        features: [n_nodes, irreps.dim] the flat ``.array`` of an e3nn IrrepsArray.
        irreps: its irreps (l <= 3; l = 3 blocks are dropped, parity ignored).

    Returns:
        The scalars [n, C0], vectors [n, C1, 3] and tensors [n, C2, 3, 3]; a rank with no
        channel gives a zero-width array.
    """
    irreps = e3nn.Irreps(irreps)
    if features.shape[-1] != irreps.dim:
        raise ValueError(
            f"features have {features.shape[-1]} columns but irreps {irreps} need {irreps.dim}"
        )
    n = features.shape[0]
    parts: dict[int, list[jnp.ndarray]] = {0: [], 1: [], 2: []}
    for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
        if ir.l == 3:
            continue  # dropped, see the module docstring
        if ir.l > 3:
            raise ValueError(f"split_irreps supports l <= 3, got {ir} in {irreps}")
        block = features[:, sl].reshape(n, mul, 2 * ir.l + 1)  # [n, mul, 2l+1]
        parts[ir.l].append(block)

    def cat(blocks, dim):
        if not blocks:
            return jnp.zeros((n, 0, dim), features.dtype)
        return jnp.concatenate(blocks, axis=1)

    scalars = cat(parts[0], 1)[..., 0]  # [n, C0]
    vectors = cat(parts[1], 3)  # [n, C1, 3], e3nn-jax l=1 order is (x, y, z)
    tensors = l2_to_matrix(cat(parts[2], 5))  # [n, C2, 3, 3]
    return CartesianFeatures(scalars, vectors, tensors)
