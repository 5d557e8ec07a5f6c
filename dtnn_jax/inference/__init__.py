"""Pretrained model bundles and batch inference: `load_model`, `predict`."""

from dtnn_jax.inference.bundle import (
    DEFAULT_MODEL,
    FAST_MODEL,
    BundleError,
    Member,
    ModelBundle,
    TargetModel,
    available_models,
    load_bundle,
    save_bundle,
)
from dtnn_jax.inference.predictor import DielectricModel, Prediction, load_model, predict

__all__ = [
    "DEFAULT_MODEL",
    "FAST_MODEL",
    "BundleError",
    "DielectricModel",
    "Member",
    "ModelBundle",
    "Prediction",
    "TargetModel",
    "available_models",
    "load_bundle",
    "load_model",
    "predict",
    "save_bundle",
]
