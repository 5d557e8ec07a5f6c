"""Training and evaluation of the readout on precomputed encoder features.

* `contract`: what a training graph carries (features, radial basis, target).
* `step`: the loss, the optimizer and the jitted init / train-step / predict functions.
* `state`: the training state, and resuming or refusing a run directory.
* `loop`: `fit` and `evaluate`.
* `checkpoint`: the Orbax wrapper; `experiment`: one run end to end; `report`: tables, plots.
"""

from dtnn_jax.training.checkpoint import Checkpointer, CheckpointError
from dtnn_jax.training.contract import check_graphs, targets_of, with_targets
from dtnn_jax.training.experiment import train_and_evaluate
from dtnn_jax.training.loop import FitResult, evaluate, fit
from dtnn_jax.training.step import OptimizerSpec, l1_loss

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "FitResult",
    "OptimizerSpec",
    "check_graphs",
    "evaluate",
    "fit",
    "l1_loss",
    "targets_of",
    "train_and_evaluate",
    "with_targets",
]
