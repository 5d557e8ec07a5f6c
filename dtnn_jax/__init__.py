"""dtnn-jax: dielectric tensors of inorganic crystals from a frozen pretrained encoder.

The public API (implementation modules live behind it):

* `featurize`, `encoder_energy` — a frozen encoder (SevenNet-0 by default) as a descriptor.
* `train_and_evaluate` — train and test the DTNN readout on a dataset.
* `load_model`, `predict` — the shipped pretrained models.
* `data` — the shipped dataset, splits, user-data loaders.

Names resolve lazily, so ``import dtnn_jax`` does not start JAX.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "featurize": "dtnn_jax.encoder.features",
    "encoder_energy": "dtnn_jax.encoder.features",
    "train_and_evaluate": "dtnn_jax.training",
    "load_model": "dtnn_jax.inference",
    "predict": "dtnn_jax.inference",
    "data": "dtnn_jax.data",
    "config": "dtnn_jax.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'dtnn_jax' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__.endswith(name) else getattr(module, name)
    globals()[name] = value
    return value
