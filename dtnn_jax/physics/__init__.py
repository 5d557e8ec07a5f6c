"""Physics from a frozen potential: force constants, the ionic dielectric tensor, phonons.

* `dtnn_jax.physics.force_constants.force_constants`: Gamma-point force constants K (the
  autodiff Hessian, batched over crystals) and residual forces of crystals, cached (not
  re-exported here: the name is the submodule's);
* `optical_pseudo_inverse`, `ionic_dielectric`, `ionic_dielectric_jnp`: eps_ion from K and
  Born effective charges (`dtnn_jax.physics.dielectric`);
* `gamma_phonons`: Gamma frequencies, mode effective charges, IR activity and per-mode
  contributions to eps_ion (`dtnn_jax.physics.phonons`).

The numpy parts import without JAX; `ForceConstants` and `batch_force_constants` (lazy)
load it.
"""

from __future__ import annotations

import importlib

from dtnn_jax.physics.dielectric import (
    COULOMB_EV_ANGSTROM,
    IONIC_PREFACTOR_EV_ANGSTROM,
    TREATMENTS,
    OpticalInverse,
    ionic_dielectric,
    ionic_dielectric_jnp,
    optical_pseudo_inverse,
)
from dtnn_jax.physics.phonons import CM1_PER_SQRT_EV_PER_A2_AMU, GammaPhonons, gamma_phonons

_LAZY = {
    "ForceConstants": "dtnn_jax.physics.force_constants",
    "BatchForceConstants": "dtnn_jax.physics.force_constants",
    "FORCE_CONSTANTS_BUDGET": "dtnn_jax.physics.force_constants",
    "batch_force_constants": "dtnn_jax.physics.force_constants",
}

__all__ = [
    "CM1_PER_SQRT_EV_PER_A2_AMU",
    "COULOMB_EV_ANGSTROM",
    "IONIC_PREFACTOR_EV_ANGSTROM",
    "TREATMENTS",
    "GammaPhonons",
    "OpticalInverse",
    "gamma_phonons",
    "ionic_dielectric",
    "ionic_dielectric_jnp",
    "optical_pseudo_inverse",
    *_LAZY,
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'dtnn_jax.physics' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
