"""The trainable readout (DTNN), its Cartesian feature split, target scaling and baselines."""

from dtnn_jax.models.baselines import RidgeIsotropicBaseline, invariant_descriptors
from dtnn_jax.models.cartesian import CartesianFeatures, l2_to_matrix, split_irreps
from dtnn_jax.models.readout import DTNN, ChannelLinear, EquivariantBlock, count_params
from dtnn_jax.models.scaling import TargetScaler

__all__ = [
    "DTNN",
    "CartesianFeatures",
    "ChannelLinear",
    "EquivariantBlock",
    "RidgeIsotropicBaseline",
    "TargetScaler",
    "count_params",
    "invariant_descriptors",
    "l2_to_matrix",
    "split_irreps",
]
