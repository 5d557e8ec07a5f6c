"""Training and evaluation of the readout on precomputed encoder features."""

from dtnn_jax.training.checkpoint import Checkpointer, CheckpointError
from dtnn_jax.training.experiment import train_and_evaluate
from dtnn_jax.training.train import (
    FitResult,
    OptimizerSpec,
    batch_budget,
    evaluate,
    fit,
    l1_loss,
    make_batches,
    targets_of,
    with_targets,
)

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "FitResult",
    "OptimizerSpec",
    "batch_budget",
    "evaluate",
    "fit",
    "l1_loss",
    "make_batches",
    "targets_of",
    "train_and_evaluate",
    "with_targets",
]
