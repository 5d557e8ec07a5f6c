"""One optimisation step: the loss, the optimizer and the jitted functions of the loop.

Every jitted function takes a round of padded batches stacked on a leading shard axis
([n_shard, ...], `dtnn_jax.graph.padded_batches(..., shards=n)`) and vmaps the model over
it; with the round sharded over the device mesh (`dtnn_jax.parallel.shard`) each device runs
its own batch and XLA reduces the gradients across devices. On one device the shard axis has
length 1. The functions are cached per (model, output map, optimizer), so repeated `fit`
calls (resumes, seeds, splits) reuse the compiled step; the target scaler is an argument,
so one compilation serves every split and target.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dtnn_jax.config import TrainConfig
from dtnn_jax.graph import graph_mask
from dtnn_jax.models.scaling import TargetScaler


def l1_loss(pred: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """L1 over the 9 components summed, averaged over real crystals (paper's loss).

    Args:
        pred: [..., n_graph, 3, 3] (any leading shard axes).
        target: [..., n_graph, 3, 3], same units as ``pred``.
        mask: [..., n_graph] bool, True for real crystals.
    """
    per_graph = jnp.sum(jnp.abs(pred - target), axis=(-2, -1))  # [..., n_graph]
    weights = mask.astype(pred.dtype)
    return jnp.sum(per_graph * weights) / jnp.maximum(jnp.sum(weights), 1.0)


class OptimizerSpec(NamedTuple):
    """The settings that define the optimizer (a hashable key for compiled steps)."""

    grad_clip_norm: float
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    decay_steps: int
    end_learning_rate: float

    @classmethod
    def from_config(cls, train: TrainConfig, steps_per_epoch: int) -> OptimizerSpec:
        epochs = train.decay_epochs if train.decay_epochs is not None else train.max_epochs
        return cls(
            grad_clip_norm=train.grad_clip_norm,
            learning_rate=train.learning_rate,
            weight_decay=train.weight_decay,
            warmup_steps=train.warmup_steps,
            decay_steps=max(epochs * steps_per_epoch, train.warmup_steps + 1),
            end_learning_rate=train.learning_rate * train.end_lr_fraction,
        )

    def schedule(self) -> optax.Schedule:
        """Linear warm-up to ``learning_rate``, then cosine decay to ``end_learning_rate``."""
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=self.learning_rate,
            warmup_steps=self.warmup_steps,
            decay_steps=self.decay_steps,
            end_value=self.end_learning_rate,
        )

    def optimizer(self) -> optax.GradientTransformation:
        """Clip by global norm, then AdamW on `schedule`."""
        return optax.chain(
            optax.clip_by_global_norm(self.grad_clip_norm),
            optax.adamw(self.schedule(), weight_decay=self.weight_decay),
        )


@functools.cache
def init_fn(model: nn.Module, spec: OptimizerSpec):
    """Jitted ``(key, batch) -> (params, opt_state)`` on one (unstacked) padded batch.

    Eager initialisation would compile op by op (slow).
    """
    optimizer = spec.optimizer()

    @jax.jit
    def init(key, batch):
        params = model.init(key, batch)
        return params, optimizer.init(params)

    return init


@functools.cache
def predict_fn(model: nn.Module):
    """Jitted ``(params, stacked_batch, scaler) -> eps [n_shard, n_graph, 3, 3]``."""

    @jax.jit
    def predict(params, batch, scaler: TargetScaler):
        y = jax.vmap(lambda g: model.apply(params, g, deterministic=True))(batch)
        return scaler.to_eps(y)

    return predict


def shard_keys(key: jax.Array, n_shard: int) -> jax.Array:
    """[n_shard] dropout keys of one step: shard 0 uses the step's key itself."""
    return jnp.stack([key, *(jax.random.fold_in(key, s) for s in range(1, n_shard))])


@functools.cache
def train_step_fn(model: nn.Module, spec: OptimizerSpec):
    """Jitted ``(params, opt_state, stacked_batch, step, dropout_root, scaler)`` ->
    ``(params, opt_state, loss)``.

    The loss is the summed L1 on eps over the real crystals of all shards, averaged over
    them and divided by the scaler's ``scale`` (see `dtnn_jax.models.scaling`).
    """
    optimizer = spec.optimizer()

    def loss_fn(params, batch, key, scaler: TargetScaler):
        keys = shard_keys(key, batch.n_node.shape[0])
        y = jax.vmap(lambda g, k: model.apply(params, g, deterministic=False, rngs={"dropout": k}))(
            batch, keys
        )  # [n_shard, n_graph, 3, 3]
        eps = scaler.to_eps(y)
        mask = jax.vmap(graph_mask)(batch)  # [n_shard, n_graph]
        return l1_loss(eps, batch.globals["target"], mask) / scaler.scale

    @jax.jit
    def train_step(params, opt_state, batch, step, dropout_root, scaler: TargetScaler):
        key = jax.random.fold_in(dropout_root, step)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key, scaler)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step
