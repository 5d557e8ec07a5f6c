"""Training and evaluation of the readout on precomputed encoder features.

* `contract`: what a training graph carries (features, radial basis, target).
* `step`: the loss, the optimizer and the jitted init / train-step / predict functions.
* `state`: the training state, and resuming or refusing a run directory.
* `loop`: `fit` and `evaluate`.
* `checkpoint`: the Orbax wrapper; `experiment`: one run end to end; `report`: tables, plots.
"""

from __future__ import annotations

from dtnn_jax.lazy import lazy_attributes

# Names resolve lazily: importing one submodule (``dtnn_jax.training.synthetic``, as a
# bundle's shape check does on the prediction path) does not load Orbax and Optax.
_LAZY = {
    "Checkpointer": "dtnn_jax.training.checkpoint",
    "CheckpointError": "dtnn_jax.training.checkpoint",
    "check_graphs": "dtnn_jax.training.contract",
    "targets_of": "dtnn_jax.training.contract",
    "with_targets": "dtnn_jax.training.contract",
    "train_and_evaluate": "dtnn_jax.training.experiment",
    "FitResult": "dtnn_jax.training.loop",
    "evaluate": "dtnn_jax.training.loop",
    "fit": "dtnn_jax.training.loop",
    "OptimizerSpec": "dtnn_jax.training.step",
    "l1_loss": "dtnn_jax.training.step",
}

__all__ = sorted(_LAZY, key=str.lower)


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
