"""The project's one configuration system: frozen, validated dataclasses.

Every setting of an experiment lives here, grouped by the part of the pipeline it
controls: the readout's architecture (`ReadoutConfig`, `dtnn_jax.config.readout`), the
optimisation (`TrainConfig`, `dtnn_jax.config.training`), and one run that combines them
(`ExperimentConfig`, with the physics model's `PhysicsConfig`,
`dtnn_jax.config.experiment`). The dataclasses are frozen and check their values on
construction, so a bad value fails where it is written, not deep inside a jitted function.
Command-line flags only exist at the edge (``experiments/``, `dtnn_jax.cli`) and build
these objects.

Example:
    >>> from dtnn_jax.config import ExperimentConfig
    >>> cfg = ExperimentConfig.default()
    >>> cfg.readout.width, cfg.readout.n_blocks, cfg.train.batch_size
    (128, 2, 64)
    >>> ExperimentConfig.quick().train.max_epochs
    6
"""

from __future__ import annotations

from dtnn_jax.config.experiment import ExperimentConfig, PhysicsConfig, Target
from dtnn_jax.config.readout import (
    OutputMap,
    ReadoutConfig,
    TargetScaling,
    encoder_layer_irreps,
)
from dtnn_jax.config.training import TrainConfig

# The settings' vocabularies (`dtnn_jax.constants`), importable from here as before.
from dtnn_jax.constants import (
    DEFAULT_ENCODER,
    DEFAULT_ENCODER_LAYER,
    OUTPUT_MAPS,
    PHYSICS_ENCODER,
    READOUT_VARIANTS,
    TARGET_SCALINGS,
    TARGETS,
)

__all__ = [
    "DEFAULT_ENCODER",
    "DEFAULT_ENCODER_LAYER",
    "OUTPUT_MAPS",
    "PHYSICS_ENCODER",
    "READOUT_VARIANTS",
    "TARGETS",
    "TARGET_SCALINGS",
    "ExperimentConfig",
    "OutputMap",
    "PhysicsConfig",
    "ReadoutConfig",
    "Target",
    "TargetScaling",
    "TrainConfig",
    "encoder_layer_irreps",
]
