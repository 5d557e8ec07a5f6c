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
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class TargetScaler:
    """Affine isotropic map between normalised network outputs and eps.

    Attributes:
        offset: added to the diagonal (units of eps).
        scale: multiplies the network output (units of eps, > 0).
    """

    offset: float = 0.0
    scale: float = 1.0

    def __post_init__(self):
        if not np.isfinite(self.offset) or not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"TargetScaler needs finite offset and scale > 0: {self}")

    @classmethod
    def fit(cls, targets: np.ndarray, method: str) -> TargetScaler:
        """Scaler for training targets [n, 3, 3]; ``method`` is "none" or "standardize"."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 3 or targets.shape[1:] != (3, 3) or len(targets) == 0:
            raise ValueError(f"targets must be [n>0, 3, 3], got {targets.shape}")
        if method == "none":
            return cls()
        if method != "standardize":
            raise ValueError(f"unknown target scaling {method!r} (use 'none' or 'standardize')")
        offset = float(np.mean(np.trace(targets, axis1=1, axis2=2)) / 3.0)
        scale = float(np.mean(np.abs(targets - offset * np.eye(3))))
        return cls(offset=offset, scale=max(scale, 1e-6))

    def to_eps(self, y: jnp.ndarray) -> jnp.ndarray:
        """[..., 3, 3] normalised -> eps."""
        return self.offset * jnp.eye(3, dtype=y.dtype) + self.scale * y

    def from_eps(self, eps: jnp.ndarray) -> jnp.ndarray:
        """[..., 3, 3] eps -> normalised."""
        return (eps - self.offset * jnp.eye(3, dtype=eps.dtype)) / self.scale

    def as_dict(self) -> dict[str, float]:
        return {"offset": self.offset, "scale": self.scale}
