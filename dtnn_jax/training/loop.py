"""Training the readout on precomputed encoder features: `fit` and `evaluate`.

`fit` is the core: in-memory single-crystal graphs in, best-on-validation parameters out. It
is deterministic for a seed (shuffling uses ``np.random.default_rng([seed, epoch])``,
dropout keys are folded from the step number) and resumable: the state saved in
``workdir`` holds everything the next epoch needs, so an interrupted run restarted with the
same data continues bit for bit where the last checkpoint left it.

Only the readout's parameters ever reach the optimizer: the frozen encoder is not part of
this loop at all (its features are inputs).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
from tqdm.auto import tqdm

from dtnn_jax import parallel
from dtnn_jax.config import ExperimentConfig, ReadoutConfig, TrainConfig
from dtnn_jax.graph import BatchBudget, group_indices, padded_batches
from dtnn_jax.models.factory import model_for
from dtnn_jax.models.readout import DTNN
from dtnn_jax.models.scaling import TargetScaler
from dtnn_jax.training.checkpoint import Checkpointer, write_json_atomic
from dtnn_jax.training.contract import check_graphs, model_inputs, targets_of
from dtnn_jax.training.state import (
    TrainState,
    checkpoint_metadata,
    clear_checkpoints,
    resume_or_start,
    run_identity,
)
from dtnn_jax.training.step import OptimizerSpec, init_fn, predict_fn, train_step_fn


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What `fit` returns.

    Attributes:
        params: the readout parameters with the best validation MAE.
        scaler: the target scaling (and output map) the parameters were trained with.
        best_val_mae: validation MAE_tensor (mean over 9 components, units of eps) of
            ``params``.
        best_epoch: the epoch (1-based count of completed epochs) that gave ``params``.
        epochs_run: epochs completed in total (over all resumed calls).
        start_epoch: the epoch this call resumed from (0 for a fresh run).
        stopped_early: whether patience ran out before ``max_epochs``.
        history: one dict per validated epoch: epoch, train_mae (with dropout), val_mae, lr,
            seconds (wall time of the epoch's training steps).
    """

    params: Any
    scaler: TargetScaler
    best_val_mae: float
    best_epoch: int
    epochs_run: int
    start_epoch: int
    stopped_early: bool
    history: list[dict[str, float]]


def n_shards(train: TrainConfig) -> int:
    """Batches per optimisation step: ``train.shards``, or one per device of all processes."""
    devices = jax.device_count()
    k = train.shards or devices
    if k % devices:
        raise ValueError(
            f"TrainConfig.shards={k} cannot be spread evenly over {devices} devices; use a "
            "multiple of the device count"
        )
    return k


def shard_budget(train: TrainConfig) -> BatchBudget:
    """The limits of one shard's batch: the global batch of ``train.batch`` split evenly."""
    k = n_shards(train)
    if k == 1:
        return train.batch
    return dataclasses.replace(
        train.batch,
        max_graphs=-(-train.batch.max_graphs // k),
        max_nodes=-(-train.batch.max_nodes // k),
        max_edges=-(-train.batch.max_edges // k),
    )


def _rounds(graphs, budget: BatchBudget, shards: int, order=None):
    """Stacked, model-input-only rounds of padded batches (see `padded_batches`)."""
    for indices, batch in padded_batches(graphs, budget, order=order, shards=shards):
        yield indices, model_inputs(batch)


def _predict_into(out: np.ndarray, predict, params, rounds, scaler: TargetScaler) -> None:
    for indices, batch in rounds:
        eps = parallel.to_host(
            predict(params, parallel.shard_global(batch), scaler)
        )  # [S, G, 3, 3]
        for s, idx in enumerate(indices):
            out[idx] = eps[s, : len(idx)]


def evaluate(
    params: Any,
    config: ExperimentConfig | ReadoutConfig,
    graphs: Sequence[jraph.GraphsTuple],
    scaler: TargetScaler | None = None,
    budget: BatchBudget | None = None,
    model: nn.Module | None = None,
) -> np.ndarray:
    """Predicted dielectric tensors [n, 3, 3] (units of eps) for single-crystal graphs.

    Jitted once per padded bucket shape; graphs keep their input order.

    Args:
        params: readout parameters (``FitResult.params``).
        config: the experiment or readout configuration they were trained with.
        graphs: single-crystal graphs with node ``features`` (and edge ``radial`` unless
            the readout is DTNN-simple).
        scaler: the target scaling used in training (``FitResult.scaler``); required unless
            ``target_scaling`` is "none".
        budget: padded-batch limits (default: from the config's TrainConfig).
        model: the network the parameters belong to, if not the DTNN readout of ``config``
            (see `fit`).
    """
    cfg = config.readout if isinstance(config, ExperimentConfig) else config
    train = config.train if isinstance(config, ExperimentConfig) else TrainConfig()
    if model is None and isinstance(config, ExperimentConfig):
        model = model_for(config)
    plain_readout = model is None or isinstance(model, DTNN)
    check_graphs(graphs, cfg if plain_readout else None, "evaluate", need_target=False)
    if scaler is None:
        if cfg.target_scaling != "none":
            raise ValueError(
                f"the readout was configured with target_scaling={cfg.target_scaling!r}: pass "
                "the scaler it was trained with (FitResult.scaler) to evaluate"
            )
        scaler = TargetScaler.create(0.0, 1.0, cfg.output_map)
    out = np.zeros((len(graphs), 3, 3), np.float32)
    shards = n_shards(train)
    rounds = _rounds(graphs, budget or shard_budget(train), shards)
    _predict_into(out, predict_fn(model or DTNN(cfg)), params, rounds, scaler)
    return out


def _mae(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - true)))


def fit(
    config: ExperimentConfig,
    train_graphs: Sequence[jraph.GraphsTuple],
    val_graphs: Sequence[jraph.GraphsTuple],
    workdir: str | Path | None = None,
    model: nn.Module | None = None,
    restart: bool = False,
) -> FitResult:
    """Trains the readout (or another tensor model); returns the best-on-validation parameters.

    Args:
        config: the experiment (its ``readout`` and ``train`` parts are used here).
        train_graphs: single-crystal graphs with node ``features``, edge ``radial`` and
            ``globals["target"]`` [1, 3, 3] in units of eps.
        val_graphs: likewise, for early stopping and model selection.
        workdir: run directory for checkpoints, ``history.json`` and ``run_config.json``.
            If it already holds a checkpoint of the same run (config, model, targets),
            training resumes from it; a checkpoint of another run raises ValueError.
            None: no checkpoints.
        model: a Flax module to train instead of `model_for(config)` (the DTNN readout, or
            the physics ionic model when ``config.physics`` is set), with the same
            call contract: ``model.apply(params, padded_batch, deterministic=..., rngs=
            {"dropout": key})`` -> [n_graph, 3, 3] in the units of ``to_eps``. Everything
            else (target scaling and output map from ``config.readout``, optimizer,
            schedule, loss, batching, early stopping, checkpoints) is shared, which is how
            the from-scratch baselines are trained in the very same harness. The graphs
            then need only what the module reads (plus ``globals["target"]``).
        restart: discard the checkpoints already in ``workdir`` and train from scratch.

    Returns:
        A `FitResult`.
    """
    cfg, tcfg = config.readout, config.train
    model = model_for(config) if model is None else model
    dtnn_inputs = cfg if isinstance(model, DTNN) else None
    check_graphs(train_graphs, dtnn_inputs, "train_graphs", need_target=True)
    check_graphs(val_graphs, dtnn_inputs, "val_graphs", need_target=True)
    shards, budget = n_shards(tcfg), shard_budget(tcfg)
    scaler = TargetScaler.fit(targets_of(train_graphs), cfg.target_scaling, cfg.output_map)
    val_targets = targets_of(val_graphs).astype(np.float64)
    val_rounds = list(_rounds(val_graphs, budget, shards))
    sizes = [(int(g.n_node[0]), int(g.n_edge[0])) for g in train_graphs]
    steps_per_epoch = -(-len(list(group_indices(sizes, budget))) // shards)

    spec = OptimizerSpec.from_config(tcfg, steps_per_epoch)
    init_key, dropout_root = jax.random.split(jax.random.key(config.seed))
    first = jax.tree.map(lambda x: x[0], val_rounds[0][1])  # one unstacked batch
    # host copies: replicated over whatever mesh the steps run on (one or many processes)
    state = TrainState.create(*jax.device_get(init_fn(model, spec)(init_key, first)))
    history: list[dict[str, float]] = []

    ckpt = None
    if workdir is not None:
        workdir = Path(workdir)
        if restart:
            clear_checkpoints(workdir)
        ckpt = Checkpointer(workdir)
        state, history = resume_or_start(ckpt, state, run_identity(config, model), scaler.as_dict())
        if jax.process_index() == 0:  # one writer in a multi-process run
            write_json_atomic(workdir / "run_config.json", config.to_dict())

    predict = predict_fn(model)
    schedule = spec.schedule()
    train_step = train_step_fn(model, spec)

    start_epoch = state.epoch
    stopped_early = state.epoch - state.best_epoch > tcfg.patience_epochs and state.best_epoch > 0
    last_saved = state.epoch if ckpt is not None and ckpt.latest_step() == state.epoch else None

    def save():
        nonlocal last_saved
        if ckpt is None or last_saved == state.epoch:
            return
        last_saved = state.epoch
        ckpt.save(state.epoch, state, checkpoint_metadata(config, model, scaler.as_dict(), history))
        if jax.process_index() == 0:
            write_json_atomic(workdir / "history.json", history)  # a readable copy

    bar = tqdm(
        total=tcfg.max_epochs,
        initial=state.epoch,
        disable=not tcfg.progress_bar,
        desc=f"{config.target} L{config.encoder_layer}",
        unit="epoch",
    )
    try:
        while state.epoch < tcfg.max_epochs and not stopped_early:
            epoch, step = state.epoch, state.step
            order = np.random.default_rng([config.seed, epoch]).permutation(len(train_graphs))
            params, opt_state = state.params, state.opt_state
            losses, sizes_ = [], []  # kept on device: no host sync inside the epoch
            started = time.perf_counter()
            for indices, batch in _rounds(train_graphs, budget, shards, order):
                params, opt_state, loss = train_step(
                    params, opt_state, parallel.shard_global(batch), step, dropout_root, scaler
                )
                step += 1
                losses.append(loss)
                sizes_.append(sum(len(idx) for idx in indices))
            epoch += 1
            # Normalised summed-L1 -> mean absolute error per component in units of eps.
            loss_mean = float(np.dot(np.asarray(jnp.stack(losses)), sizes_)) / sum(sizes_)
            seconds = time.perf_counter() - started  # the float() above waited for the steps
            train_mae = loss_mean * scaler.scale / 9.0
            if not math.isfinite(train_mae):
                raise FloatingPointError(
                    f"training loss became {train_mae} at epoch {epoch}; lower the learning rate"
                )
            state = state.replace(params=params, opt_state=opt_state, epoch=epoch, step=step)
            if epoch % tcfg.eval_every_epochs == 0 or epoch == tcfg.max_epochs:
                val_pred = np.zeros_like(val_targets)
                _predict_into(val_pred, predict, params, val_rounds, scaler)
                val_mae = _mae(val_pred, val_targets)
                if val_mae < state.best_val_mae:
                    state = state.replace(
                        best_val_mae=val_mae, best_epoch=epoch, best_params=params
                    )
                history.append(
                    {
                        "epoch": epoch,
                        "train_mae": train_mae,
                        "val_mae": val_mae,
                        "lr": float(schedule(step)),
                        "seconds": seconds,
                    }
                )
                bar.set_postfix(
                    train=f"{train_mae:.3f}", val=f"{val_mae:.3f}", best=f"{state.best_val_mae:.3f}"
                )
                stopped_early = epoch - state.best_epoch > tcfg.patience_epochs
            bar.update(1)
            if epoch % tcfg.checkpoint_every_epochs == 0 or stopped_early:
                save()
        save()
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()

    return FitResult(
        params=state.best_params,
        scaler=scaler,
        best_val_mae=state.best_val_mae,
        best_epoch=state.best_epoch,
        epochs_run=state.epoch,
        start_epoch=start_epoch,
        stopped_early=stopped_early,
        history=history,
    )
