"""Frozen, pretrained encoders in pure JAX, behind one interface.

* `FrozenEncoder` / `EncoderOutput` (`interface`): what every encoder provides.
* `get_encoder(name)` / `available_encoders()` (`registry`): the shipped encoders by name.
* `featurize`, `encoder_energy`, `encode`, `graphs_with_features` (`features`): running an
  encoder over many crystals, with the verified feature cache (`cache`).
* SevenNet-0 (`sevennet`, `config`, `weights`): the default encoder.

Example:
    >>> from dtnn_jax.encoder import get_encoder
    >>> encoder = get_encoder("sevennet-0")
    >>> encoder.layer_irreps(1), encoder.cutoff_angstrom
    ('128x0e+64x1e+32x2e', 5.0)
"""

from dtnn_jax.encoder.interface import EncoderOutput, FrozenEncoder
from dtnn_jax.encoder.registry import DEFAULT_ENCODER, available_encoders, get_encoder

__all__ = [
    "DEFAULT_ENCODER",
    "EncoderOutput",
    "FrozenEncoder",
    "available_encoders",
    "get_encoder",
]
