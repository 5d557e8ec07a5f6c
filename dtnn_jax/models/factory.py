"""The network a configuration trains: the DTNN readout or the physics ionic model."""

from __future__ import annotations

import flax.linen as nn

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.models.readout import DTNN


def model_for(config: ExperimentConfig) -> nn.Module:
    """``DTNN(config.readout)``, the PSD ionic head `dtnn_jax.models.ionic.GramIonic` when
    ``config.readout.ionic_channels`` > 0, or `dtnn_jax.physics.born.IonicDielectric` when
    ``config.physics`` is set (its readout config then describes the Born-charge trunk)."""
    if config.physics is None:
        if config.readout.ionic_channels:
            from dtnn_jax.models.ionic import GramIonic

            return GramIonic(config.readout)
        return DTNN(config.readout)
    from dtnn_jax.physics.born import IonicDielectric

    return IonicDielectric(config.readout)
