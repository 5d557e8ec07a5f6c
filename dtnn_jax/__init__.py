"""dtnn-jax: dielectric tensors of inorganic crystals from a frozen pretrained encoder.

The public API (implementation modules live behind it):

* `featurize`, `encoder_energy` — a frozen encoder (SevenNet-0 by default) as a descriptor.
* `train_and_evaluate` — train and test the DTNN readout on a dataset.
* `load_model`, `predict` — the shipped pretrained models.
* `data` — the shipped dataset, splits, user-data loaders.
* `infrared_dielectric`, `infrared_spectra` (`spectra`) — eps(w), reflectivity, LO modes.
* `write_phonopy_born` — predicted eps_inf and Z* as phonopy's BORN (LO-TO splitting input).

Names resolve lazily, so ``import dtnn_jax`` does not start JAX. It does set
``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it: with the persistent compilation cache on,
jaxlib 0.10 logs a page-long, harmless ``cpu_aot_loader`` error for every cached executable
it loads on CPUs whose tuning flags it misreads (jax-ml/jax#38445; the executable does load).
Set ``TF_CPP_MIN_LOG_LEVEL=0`` before importing to see XLA's C++ logs again.
"""

from __future__ import annotations

import os

from dtnn_jax.lazy import lazy_attributes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

_LAZY = {
    "featurize": "dtnn_jax.encoder.features",
    "encoder_energy": "dtnn_jax.encoder.features",
    "train_and_evaluate": "dtnn_jax.training",
    "load_model": "dtnn_jax.inference",
    "predict": "dtnn_jax.inference",
    "data": "dtnn_jax.data",
    "config": "dtnn_jax.config",
    "infrared_dielectric": "dtnn_jax.spectra",
    "infrared_spectra": "dtnn_jax.spectra",
    "spectra": "dtnn_jax.spectra",
    "write_phonopy_born": "dtnn_jax.physics.born_file",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_attributes(__name__, _LAZY)
