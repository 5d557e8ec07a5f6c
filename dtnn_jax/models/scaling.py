"""Target scaling: the network predicts a normalised tensor, the user gets eps.

Dielectric tensors span ~1.6 (wide-gap electronic) to several hundred (soft-mode ionic), so a
network with O(1) activations learns faster if it predicts ``(eps - offset * I) / scale``.
Both constants are taken from the *training* targets only:

* ``offset`` = the mean over training crystals of ``tr(eps) / 3`` (the mean isotropic part);
* ``scale`` = the mean over training crystals and the 9 components of
  ``|eps - offset * I|``, i.e. the MAE of the isotropic mean predictor. A normalised L1 loss
  of 1.0 therefore means "as good as predicting the mean", whatever the target.

The map is ``eps = offset * I + scale * y``: an isotropic shift and a positive scale, so it
commutes with rotations (``R eps R^T``) and keeps symmetry. Because the L1 loss is positively
homogeneous, the loss in normalised units is the loss in original units divided by
``scale``; optimising it gives the same minimiser, but keeps gradient norms O(1), which is
what the global-norm clip (2.0) and AdamW's epsilon assume.

Two output maps turn the network's symmetric output ``y`` into eps (`to_eps`):

* ``"affine"``: ``eps = offset I + scale y`` (above);
* ``"matrix_exp"``: ``eps = expm(log(offset) I + y)``. The network works in log-eigenvalue
  space: eps is symmetric positive definite by construction (DFT tensors are; the affine map
  can and does predict negative diagonal components), a unit change of ``y`` multiplies the
  eigenvalues by e whatever their size (so the soft-mode crystals with eps in the hundreds
  are a few units of ``y`` away, not hundreds), and ``expm(R y R^T) = R expm(y) R^T`` keeps
  the map equivariant. ``y = 0`` gives ``offset I``, the mean isotropic training target.
  ``y`` first goes through `soft_clamp_norm` (|y| <= 20): an untrained readout can output
  |y| ~ 100 on some inputs, and exp(100) overflows float32 (it did, on layer-4 features).
  The loss is still L1 on eps divided by ``scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np

from dtnn_jax.config import OUTPUT_MAPS

# The matrix-exp map bounds the Frobenius norm of the log-space output by this (so every
# eigenvalue of eps is within exp(+-20) of the offset: no float32 overflow, whatever the
# input). Below ~10, where real tensors live (log of ~300x the mean), it is nearly the
# identity (tanh(x) ~ x).
MAX_LOG_EPS_NORM = 20.0


def soft_clamp_norm(y: jnp.ndarray, limit: float) -> jnp.ndarray:
    """[..., 3, 3] -> the same matrices with Frobenius norm r mapped to ``limit tanh(r/limit)``.

    The factor is an invariant scalar, so the map commutes with ``y -> R y R^T``; it is smooth
    (the identity to third order at 0) and keeps a nonzero gradient everywhere.
    """
    r = jnp.sqrt(jnp.sum(y * y, axis=(-2, -1), keepdims=True) + 1e-12)
    return y * (limit * jnp.tanh(r / limit) / r)


def to_eps(y: jnp.ndarray, offset: jnp.ndarray, scale: jnp.ndarray, output_map: str):
    """[..., 3, 3] network output -> eps under ``output_map`` (see the module docstring).

    ``offset`` and ``scale`` are scalars or arrays that broadcast against ``y[..., 0, 0]``
    (e.g. one per ensemble member).
    """
    y = jnp.asarray(y)
    eye = jnp.eye(3, dtype=y.dtype)
    offset = jnp.asarray(offset, y.dtype)[..., None, None]
    if output_map == "affine":
        return offset * eye + jnp.asarray(scale, y.dtype)[..., None, None] * y
    if output_map == "matrix_exp":
        y = soft_clamp_norm(y, MAX_LOG_EPS_NORM)
        log_eps = jnp.log(offset) * eye + y
        flat = log_eps.reshape(-1, 3, 3)
        return jax.vmap(jax.scipy.linalg.expm)(flat).reshape(y.shape)
    raise ValueError(f"unknown output map {output_map!r} (use one of {OUTPUT_MAPS})")


@flax.struct.dataclass
class TargetScaler:
    """The map from the network's normalised output to eps: constants plus the output map.

    A pytree (``offset`` and ``scale`` are leaves, ``output_map`` is static), so jitted
    functions take the scaler itself and compile once per output map; an ensemble stacks
    its members' scalers (``offset`` [n_members, 1], see `stack`).

    Attributes:
        offset: the mean isotropic training target (units of eps).
        scale: the mean predictor's MAE on the training targets (units of eps, > 0).
        output_map: "affine" or "matrix_exp" (see the module docstring).
    """

    offset: Any = 0.0
    scale: Any = 1.0
    output_map: str = flax.struct.field(pytree_node=False, default="affine")

    @classmethod
    def create(cls, offset: float, scale: float, output_map: str = "affine") -> TargetScaler:
        """A validated scaler (finite offset, positive scale, known map)."""
        if not np.isfinite(offset) or not np.isfinite(scale) or scale <= 0:
            raise ValueError(
                f"TargetScaler needs finite offset and scale > 0, got {offset}, {scale}"
            )
        if output_map not in OUTPUT_MAPS:
            raise ValueError(f"unknown output map {output_map!r} (use one of {OUTPUT_MAPS})")
        if output_map == "matrix_exp" and offset <= 0:
            raise ValueError(f"the matrix_exp map needs offset > 0, got {offset}")
        return cls(float(offset), float(scale), output_map)

    @classmethod
    def fit(cls, targets: np.ndarray, method: str, output_map: str = "affine") -> TargetScaler:
        """Scaler for training targets [n, 3, 3]; ``method`` is "none" or "standardize"."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 3 or targets.shape[1:] != (3, 3) or len(targets) == 0:
            raise ValueError(f"targets must be [n>0, 3, 3], got {targets.shape}")
        if method == "none":
            return cls.create(0.0, 1.0, output_map)
        if method != "standardize":
            raise ValueError(f"unknown target scaling {method!r} (use 'none' or 'standardize')")
        offset = float(np.mean(np.trace(targets, axis1=1, axis2=2)) / 3.0)
        scale = float(np.mean(np.abs(targets - offset * np.eye(3))))
        return cls.create(offset, max(scale, 1e-6), output_map)

    @classmethod
    def from_dict(cls, data: dict, output_map: str = "affine") -> TargetScaler:
        """Inverse of `as_dict` (bundles keep the output map in the readout config)."""
        return cls.create(float(data["offset"]), float(data["scale"]), output_map)

    def to_eps(self, y: jnp.ndarray) -> jnp.ndarray:
        """[..., 3, 3] network output -> eps under this scaler's output map."""
        return to_eps(y, self.offset, self.scale, self.output_map)

    def from_eps(self, eps: np.ndarray) -> np.ndarray:
        """[..., 3, 3] eps -> the network output that `to_eps` maps to it (host numpy).

        For "matrix_exp" this is the matrix logarithm minus ``log(offset) I``, with the soft
        clamp undone (eps must be symmetric positive definite, within the clamp's range).
        """
        eps = np.asarray(eps, np.float64)
        eye = np.eye(3)
        if self.output_map == "affine":
            return (eps - float(self.offset) * eye) / float(self.scale)
        values, vectors = np.linalg.eigh(0.5 * (eps + np.swapaxes(eps, -1, -2)))
        if np.any(values <= 0):
            raise ValueError("matrix_exp: eps must be positive definite to be inverted")
        log_eps = np.einsum("...ij,...j,...kj->...ik", vectors, np.log(values), vectors)
        clamped = log_eps - np.log(float(self.offset)) * eye
        r = np.sqrt(np.sum(clamped * clamped, axis=(-2, -1), keepdims=True) + 1e-12)
        if np.any(r >= MAX_LOG_EPS_NORM):
            raise ValueError("matrix_exp: eps lies outside the range the output map can reach")
        return clamped * (MAX_LOG_EPS_NORM * np.arctanh(r / MAX_LOG_EPS_NORM) / r)

    def as_dict(self) -> dict[str, float]:
        return {"offset": float(self.offset), "scale": float(self.scale)}

    @staticmethod
    def stack(scalers: Sequence[TargetScaler]) -> TargetScaler:
        """One scaler for an ensemble: ``offset``/``scale`` [n_members, 1] broadcast against
        outputs [n_members, n_graph, 3, 3]."""
        maps = {s.output_map for s in scalers}
        if len(maps) != 1:
            raise ValueError(f"ensemble members use different output maps: {sorted(maps)}")
        return TargetScaler(
            np.array([[s.offset] for s in scalers], np.float32),
            np.array([[s.scale] for s in scalers], np.float32),
            maps.pop(),
        )
