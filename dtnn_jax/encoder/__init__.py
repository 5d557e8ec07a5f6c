"""The frozen, pretrained SevenNet-0 encoder in pure JAX.

Example:
    >>> from dtnn_jax.encoder import load_sevennet0, sevennet_forward
    >>> params, config = load_sevennet0()
    >>> config.node_irreps[1]
    '128x0e+64x1e+32x2e'
"""

import functools

import jax
import jax.numpy as jnp

from dtnn_jax.encoder.config import SevenNetConfig
from dtnn_jax.encoder.sevennet import EncoderOutput, energy_and_forces, sevennet_forward
from dtnn_jax.encoder.weights import WeightsError, load_weights


@functools.lru_cache(maxsize=1)
def load_sevennet0() -> tuple[dict, SevenNetConfig]:
    """The shipped SevenNet-0 weights: (params pytree of float32 jax arrays, config), cached."""
    params, config = load_weights("sevennet0")
    return jax.tree.map(jnp.asarray, params), config


__all__ = [
    "EncoderOutput",
    "SevenNetConfig",
    "WeightsError",
    "energy_and_forces",
    "load_sevennet0",
    "load_weights",
    "sevennet_forward",
]
