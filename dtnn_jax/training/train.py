"""Training the DTNN readout on precomputed encoder features.

`fit` is the core: in-memory single-crystal graphs in, best-on-validation parameters out. It
is deterministic for a seed (shuffling uses ``np.random.default_rng([seed, epoch])``,
dropout keys are folded from the step number) and resumable: the state saved in
``workdir`` holds everything the next epoch needs, so an interrupted run restarted with the
same data continues bit-for-bit where the last checkpoint left it.

Only the readout's parameters ever reach the optimizer: the frozen encoder is not part of
this loop at all (its features are inputs).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
from tqdm.auto import tqdm

from dtnn_jax.config import ExperimentConfig, ReadoutConfig, TrainConfig
from dtnn_jax.graph.batching import BatchBudget, batch_indices, graph_mask, pad_to_bucket
from dtnn_jax.models.readout import DTNN
from dtnn_jax.models.scaling import TargetScaler, to_eps
from dtnn_jax.training.checkpoint import Checkpointer, write_json_atomic


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What `fit` returns.

    Attributes:
        params: the readout parameters with the best validation MAE.
        scaler: the target scaling the parameters were trained with.
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


def batch_budget(train: TrainConfig) -> BatchBudget:
    """The padded-batch limits of a training configuration."""
    return BatchBudget(
        max_graphs=train.batch_size,
        max_nodes=train.max_nodes_per_batch,
        max_edges=train.max_edges_per_batch,
        growth=train.bucket_growth,
        min_nodes=train.min_bucket_nodes,
        min_edges=train.min_bucket_edges,
    )


def targets_of(graphs: Sequence[jraph.GraphsTuple]) -> np.ndarray:
    """[n, 3, 3] the ``globals["target"]`` of single-crystal graphs."""
    return np.stack([np.asarray(g.globals["target"], np.float32).reshape(3, 3) for g in graphs])


def with_targets(graphs: Sequence[jraph.GraphsTuple], targets: np.ndarray) -> list:
    """Copies of single-crystal graphs with ``globals["target"]`` [1, 3, 3] set."""
    targets = np.asarray(targets, np.float32)
    if targets.shape != (len(graphs), 3, 3):
        raise ValueError(f"need [{len(graphs)}, 3, 3] targets, got {targets.shape}")
    return [
        g._replace(globals={**(g.globals or {}), "target": t[None]})
        for g, t in zip(graphs, targets, strict=True)
    ]


def check_graphs(
    graphs: Sequence[jraph.GraphsTuple], cfg: ReadoutConfig | None, name: str, need_target: bool
):
    """Checks single-crystal graphs against the readout's input contract (clear errors).

    ``cfg=None`` checks only what every model needs (single crystals, finite targets).
    """
    import e3nn_jax as e3nn

    if len(graphs) == 0:
        raise ValueError(f"{name}: no graphs")
    dim = None if cfg is None else e3nn.Irreps(cfg.input_irreps).dim
    for i, g in enumerate(graphs):
        if len(np.asarray(g.n_node)) != 1:
            raise ValueError(f"{name}[{i}]: expected a single-crystal graph, got {g.n_node}")
        if cfg is not None:
            _check_dtnn_inputs(g, cfg, dim, f"{name}[{i}]")
        if need_target:
            target = (g.globals or {}).get("target")
            if target is None or np.shape(target) != (1, 3, 3):
                raise ValueError(f"{name}[{i}]: globals['target'] must be [1, 3, 3]")
            if not np.all(np.isfinite(target)):
                raise ValueError(f"{name}[{i}]: non-finite target")


def _check_dtnn_inputs(g: jraph.GraphsTuple, cfg: ReadoutConfig, dim: int, name: str) -> None:
    """The DTNN readout reads node ``features`` [n, dim] and (with edges) ``radial``."""
    feats = g.nodes.get("features") if isinstance(g.nodes, dict) else None
    if feats is None or feats.shape != (int(g.n_node[0]), dim):
        shape = None if feats is None else feats.shape
        raise ValueError(
            f"{name}: nodes['features'] must be [n_atoms, {dim}] for irreps "
            f"{cfg.input_irreps}, got {shape}"
        )
    if cfg.use_edges:
        radial = g.edges.get("radial") if isinstance(g.edges, dict) else None
        if radial is None or radial.shape != (int(g.n_edge[0]), cfg.n_radial):
            raise ValueError(
                f"{name}: edges['radial'] must be [n_edges, {cfg.n_radial}], got "
                f"{None if radial is None else radial.shape}"
            )


def make_batches(
    graphs: Sequence[jraph.GraphsTuple], budget: BatchBudget, order: np.ndarray | None = None
) -> list[tuple[list[int], jraph.GraphsTuple]]:
    """Padded batches of ``graphs`` (taken in ``order``), with the graph indices of each."""
    order = np.arange(len(graphs)) if order is None else order
    n_nodes = [int(graphs[i].n_node[0]) for i in order]
    n_edges = [int(graphs[i].n_edge[0]) for i in order]
    out = []
    for group in batch_indices(n_nodes, n_edges, budget):
        idx = [int(order[k]) for k in group]
        out.append((idx, pad_to_bucket([graphs[i] for i in idx], budget)))
    return out


def l1_loss(pred: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """L1 over the 9 components summed, averaged over real crystals (paper's loss).

    Args:
        pred: [n_graph, 3, 3].
        target: [n_graph, 3, 3], same units as ``pred``.
        mask: [n_graph] bool, True for real crystals.
    """
    per_graph = jnp.sum(jnp.abs(pred - target), axis=(-2, -1))  # [n_graph]
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
def _init_fn(model: nn.Module, spec: OptimizerSpec):
    """Jitted ``(key, batch) -> (params, opt_state)``; eager init compiles op by op (slow)."""
    optimizer = spec.optimizer()

    @jax.jit
    def init(key, batch):
        params = model.init(key, batch)
        return params, optimizer.init(params)

    return init


@functools.cache
def _predict_fn(model: nn.Module, output_map: str):
    """Jitted ``(params, batch, offset, scale) -> eps [n_graph, 3, 3]``, cached per model.

    The scaler constants are arguments, not constants, so one compilation serves every
    split and target.
    """

    @jax.jit
    def predict(params, batch, offset, scale):
        y = model.apply(params, batch, deterministic=True)
        return to_eps(y, offset, scale, output_map)

    return predict


@functools.cache
def _train_step_fn(model: nn.Module, output_map: str, spec: OptimizerSpec):
    """Jitted ``(params, opt_state, batch, step, dropout_root, offset, scale)`` ->
    ``(params, opt_state, loss)``.

    Cached per model/optimizer so repeated `fit` calls (resumes, seeds, splits) reuse the
    compiled step. The loss is the summed L1 on eps divided by the scaler's ``scale`` (see
    `dtnn_jax.models.scaling`).
    """
    optimizer = spec.optimizer()

    def loss_fn(params, batch, key, offset, scale):
        y = model.apply(params, batch, deterministic=False, rngs={"dropout": key})
        eps = to_eps(y, offset, scale, output_map)
        return l1_loss(eps, batch.globals["target"], graph_mask(batch)) / scale

    @jax.jit
    def train_step(params, opt_state, batch, step, dropout_root, offset, scale):
        key = jax.random.fold_in(dropout_root, step)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key, offset, scale)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def _scaler_args(scaler: TargetScaler) -> tuple[np.ndarray, np.ndarray]:
    return np.float32(scaler.offset), np.float32(scaler.scale)


def _strip(batch: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Drops the fields no model reads (less host->device traffic)."""
    nodes = {k: batch.nodes[k] for k in ("positions", "species", "features") if k in batch.nodes}
    edges = {k: batch.edges[k] for k in ("shifts", "radial") if k in batch.edges}
    glob = {k: v for k, v in (batch.globals or {}).items() if k == "target"}
    return batch._replace(nodes=nodes, edges=edges, globals=glob)


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
    if budget is None:
        train = config.train if isinstance(config, ExperimentConfig) else TrainConfig()
        budget = batch_budget(train)
    check_graphs(graphs, cfg if model is None else None, "evaluate", need_target=False)
    if scaler is None:
        if cfg.target_scaling != "none":
            raise ValueError(
                f"the readout was configured with target_scaling={cfg.target_scaling!r}: pass "
                "the scaler it was trained with (FitResult.scaler) to evaluate"
            )
        scaler = TargetScaler()
    predict = _predict_fn(model or DTNN(cfg), cfg.output_map)
    consts = _scaler_args(scaler)
    out = np.zeros((len(graphs), 3, 3), np.float32)
    for idx, batch in make_batches(graphs, budget):
        out[idx] = np.asarray(predict(params, _strip(batch), *consts))[: len(idx)]
    return out


def _mae(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - true)))


def fit(
    config: ExperimentConfig,
    train_graphs: Sequence[jraph.GraphsTuple],
    val_graphs: Sequence[jraph.GraphsTuple],
    workdir: str | Path | None = None,
    model: nn.Module | None = None,
) -> FitResult:
    """Trains the readout (or another tensor model); returns the best-on-validation parameters.

    Args:
        config: the experiment (its ``readout`` and ``train`` parts are used here).
        train_graphs: single-crystal graphs with node ``features``, edge ``radial`` and
            ``globals["target"]`` [1, 3, 3] in units of eps.
        val_graphs: likewise, for early stopping and model selection.
        workdir: run directory for checkpoints and ``history.json``. If it already holds a
            checkpoint of the same model, training resumes from it. None: no checkpoints.
        model: a Flax module to train instead of ``DTNN(config.readout)``, with the same
            call contract: ``model.apply(params, padded_batch, deterministic=..., rngs=
            {"dropout": key})`` -> [n_graph, 3, 3] in the units of ``to_eps``. Everything
            else (target scaling and output map from ``config.readout``, optimizer,
            schedule, loss, batching, early stopping, checkpoints) is shared, which is how
            the from-scratch baselines are trained in the very same harness. The graphs
            then need only what the module reads (plus ``globals["target"]``).

    Returns:
        A `FitResult`.
    """
    cfg, tcfg = config.readout, config.train
    dtnn_inputs = cfg if model is None else None
    check_graphs(train_graphs, dtnn_inputs, "train_graphs", need_target=True)
    check_graphs(val_graphs, dtnn_inputs, "val_graphs", need_target=True)
    model = DTNN(cfg) if model is None else model
    budget = batch_budget(tcfg)
    scaler = TargetScaler.fit(targets_of(train_graphs), cfg.target_scaling)
    val_targets = targets_of(val_graphs).astype(np.float64)
    val_batches = make_batches(val_graphs, budget)
    steps_per_epoch = len(make_batches(train_graphs, budget))

    spec = OptimizerSpec.from_config(tcfg, steps_per_epoch)
    init_key, dropout_root = jax.random.split(jax.random.key(config.seed))
    params, opt_state = _init_fn(model, spec)(init_key, _strip(val_batches[0][1]))
    state = {
        "params": params,
        "opt_state": opt_state,
        "best_params": params,
        "epoch": 0,
        "step": 0,
        "best_val_mae": np.inf,
        "best_epoch": 0,
        "scaler": scaler.as_dict(),
    }
    history: list[dict[str, float]] = []

    ckpt = None
    if workdir is not None:
        workdir = Path(workdir)
        _check_run_config(workdir, config, model)
        ckpt = Checkpointer(workdir)
        if ckpt.latest_step() is not None:
            state = ckpt.restore(state)
            restored = TargetScaler(
                float(state["scaler"]["offset"]), float(state["scaler"]["scale"])
            )
            if not np.allclose(
                [restored.offset, restored.scale], [scaler.offset, scaler.scale], rtol=1e-6
            ):
                raise ValueError(
                    f"checkpoint in {workdir} was trained on different targets "
                    f"(scaler {restored} vs {scaler}); use a fresh workdir"
                )
            history = _read_history(workdir, int(state["epoch"]))

    predict = _predict_fn(model, cfg.output_map)
    schedule = spec.schedule()
    train_step = _train_step_fn(model, cfg.output_map, spec)
    consts = _scaler_args(scaler)

    epoch = start_epoch = int(state["epoch"])
    step = int(state["step"])
    best_val = float(state["best_val_mae"])
    best_epoch = int(state["best_epoch"])
    p, opt_state, best_params = state["params"], state["opt_state"], state["best_params"]
    stopped_early = epoch - best_epoch > tcfg.patience_epochs and best_epoch > 0

    last_saved = epoch if ckpt is not None and ckpt.latest_step() == epoch else None

    def save():
        nonlocal last_saved
        if ckpt is None or last_saved == epoch:
            return
        last_saved = epoch
        # History first: a kill between the two writes leaves a history that reaches at
        # least the checkpoint's epoch, and resuming truncates it to that epoch.
        write_json_atomic(workdir / "history.json", history)
        ckpt.save(
            epoch,
            {
                "params": p,
                "opt_state": opt_state,
                "best_params": best_params,
                "epoch": epoch,
                "step": step,
                "best_val_mae": best_val,
                "best_epoch": best_epoch,
                "scaler": scaler.as_dict(),
            },
        )

    bar = tqdm(
        total=tcfg.max_epochs,
        initial=epoch,
        disable=not tcfg.progress_bar,
        desc=f"{config.target} L{config.encoder_layer}",
        unit="epoch",
    )
    try:
        while epoch < tcfg.max_epochs and not stopped_early:
            order = np.random.default_rng([config.seed, epoch]).permutation(len(train_graphs))
            losses, sizes = [], []  # kept on device: no host sync inside the epoch
            started = time.perf_counter()
            for idx, batch in make_batches(train_graphs, budget, order):
                p, opt_state, loss = train_step(
                    p, opt_state, _strip(batch), step, dropout_root, *consts
                )
                step += 1
                losses.append(loss)
                sizes.append(len(idx))
            epoch += 1
            # Normalised summed-L1 -> mean absolute error per component in units of eps.
            loss_mean = float(np.dot(np.asarray(jnp.stack(losses)), sizes)) / sum(sizes)
            seconds = time.perf_counter() - started  # the float() above waited for the steps
            train_mae = loss_mean * scaler.scale / 9.0
            if not math.isfinite(train_mae):
                raise FloatingPointError(
                    f"training loss became {train_mae} at epoch {epoch}; lower the learning rate"
                )
            if epoch % tcfg.eval_every_epochs == 0 or epoch == tcfg.max_epochs:
                val_pred = np.zeros_like(val_targets)
                for idx, batch in val_batches:
                    val_pred[idx] = np.asarray(predict(p, _strip(batch), *consts))[: len(idx)]
                val_mae = _mae(val_pred, val_targets)
                if val_mae < best_val:
                    best_val, best_epoch, best_params = val_mae, epoch, p
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
                    train=f"{train_mae:.3f}", val=f"{val_mae:.3f}", best=f"{best_val:.3f}"
                )
                stopped_early = epoch - best_epoch > tcfg.patience_epochs
            bar.update(1)
            if epoch % tcfg.checkpoint_every_epochs == 0 or stopped_early:
                save()
        save()
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()

    return FitResult(
        params=best_params,
        scaler=scaler,
        best_val_mae=best_val,
        best_epoch=best_epoch,
        epochs_run=epoch,
        start_epoch=start_epoch,
        stopped_early=stopped_early,
        history=history,
    )


def _check_run_config(workdir: Path, config: ExperimentConfig, model: nn.Module) -> None:
    """Refuses to resume a run whose model, target or seed differ from ``config``.

    ``run_config.json`` holds the `ExperimentConfig`; ``model.txt`` the module's repr (which
    is what tells a PaiNN run from a DTNN run with the same config).
    """
    path, model_path = workdir / "run_config.json", workdir / "model.txt"
    current = config.to_dict()
    if path.exists():
        # Rebuilt through the config classes, so a setting added later with its default
        # value does not count as a change.
        saved = ExperimentConfig.from_dict(json.loads(path.read_text())).to_dict()
        keys = ("target", "encoder_layer", "seed", "readout")
        diff = [k for k in keys if saved.get(k) != current[k]]
        if model_path.exists() and model_path.read_text() != repr(model):
            diff.append("model")
        if diff:
            raise ValueError(
                f"{workdir} holds a run with a different {', '.join(diff)}; "
                "use a fresh workdir or the original config"
            )
    write_json_atomic(path, current)
    model_path.write_text(repr(model))


def _read_history(workdir: Path, up_to_epoch: int) -> list[dict[str, float]]:
    path = workdir / "history.json"
    if not path.exists():
        return []
    return [h for h in json.loads(path.read_text()) if h["epoch"] <= up_to_epoch]
