"""From-scratch equivariant baselines (PaiNN, NequIP) trained in the DTNN readout's harness.

Both networks see only atomic numbers and geometry (no pretrained encoder) and are trained
end to end with the *same* optimizer, schedule, loss, target scaling, batching and early
stopping as the DTNN readout (`dtnn_jax.config.TrainConfig`, `dtnn_jax.training`): AdamW on
a linear warm-up + cosine schedule, global-norm clip, normalised summed-L1 loss, best
validation MAE_tensor kept, patience in epochs. Splits are `dtnn_jax.data.split_indices`.

`dtnn_jax.training.fit` builds the DTNN itself and checks for encoder features, so this
script carries `fit_module`, a copy of its loop for any Flax module with the same call
contract (``module.apply(params, graph, deterministic=..., rngs=...) -> [n_graph, 3, 3]``)
and without checkpoints. It reuses the harness's pieces (`OptimizerSpec`, `make_batches`,
`l1_loss`, `TargetScaler`), so the optimisation is the same code, not a re-implementation.

Usage (the full benchmark: 2 models x 3 targets x 5 seeds, hours on a 2-core CPU):

    python benchmarks/scratch_baselines.py --out benchmarks/results/scratch_baselines.json

Cost measured on the 2-core project CPU shared with other jobs (load average ~6), seed-0
training split (845 crystals), default TrainConfig batching: PaiNN ~6.8 s and NequIP ~16 s
per epoch once every padded batch shape is compiled (8 shapes; each new one costs 10-30 s,
mostly in the first 5 epochs). TrainConfig's 1000 epochs / patience 200 are therefore days
for the 30 runs on this CPU: pass ``--max-epochs`` / ``--patience`` (recorded in the JSON),
or run on an accelerator.

A quick check (one seed, one target, a few epochs, reports the time per epoch):

    python benchmarks/scratch_baselines.py --models painn nequip --targets electronic \\
        --seeds 0 --max-epochs 3 --out /tmp/scratch_quick.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax

from dtnn_jax.config import TARGETS, TrainConfig
from dtnn_jax.data import MeanPredictor, load_petousis2017, split_indices
from dtnn_jax.graph import graph_from_structure, graph_mask
from dtnn_jax.metrics import all_metrics, mae_tensor_by_crystal_system
from dtnn_jax.models.nequip import NequIP, NequIPConfig
from dtnn_jax.models.painn import PaiNN, PaiNNConfig
from dtnn_jax.models.readout import count_params
from dtnn_jax.models.scaling import TargetScaler
from dtnn_jax.training.train import (
    OptimizerSpec,
    batch_budget,
    l1_loss,
    make_batches,
    targets_of,
    with_targets,
)

CUTOFF_ANGSTROM = 5.0
MODELS = ("painn", "nequip")


def build_model(name: str, avg_num_neighbors: float) -> nn.Module:
    """The baseline called ``name`` at its default (published-like) size."""
    if name == "painn":
        return PaiNN(PaiNNConfig(avg_num_neighbors=avg_num_neighbors))
    if name == "nequip":
        return NequIP(NequIPConfig(avg_num_neighbors=avg_num_neighbors))
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def average_num_neighbors(graphs: Sequence[jraph.GraphsTuple]) -> float:
    """Mean number of edges per atom over single-crystal graphs (training split only)."""
    edges = sum(int(g.n_edge[0]) for g in graphs)
    atoms = sum(int(g.n_node[0]) for g in graphs)
    return edges / atoms


def _strip(batch: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Keeps only what the baselines read (positions, species, shifts, target)."""
    return batch._replace(
        nodes={k: batch.nodes[k] for k in ("positions", "species")},
        edges={"shifts": batch.edges["shifts"]},
        globals={k: v for k, v in (batch.globals or {}).items() if k == "target"},
    )


@dataclasses.dataclass
class ModuleFit:
    """Result of `fit_module`.

    Attributes:
        params: parameters with the best validation MAE_tensor.
        scaler: the target scaling used.
        best_val_mae: validation MAE_tensor (units of eps) of ``params``.
        best_epoch: epoch that gave ``params``.
        epochs_run: epochs completed.
        stopped_early: patience ran out before ``max_epochs``.
        epoch_seconds: wall time of each epoch (training steps only).
        epoch_compiled: whether the epoch met a new padded batch shape (so its time
            includes a jit compilation).
        history: per epoch: epoch, train_mae, val_mae, lr.
    """

    params: Any
    scaler: TargetScaler
    best_val_mae: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    epoch_seconds: list[float]
    epoch_compiled: list[bool]
    history: list[dict[str, float]]


def fit_module(
    model: nn.Module,
    train: TrainConfig,
    train_graphs: Sequence[jraph.GraphsTuple],
    val_graphs: Sequence[jraph.GraphsTuple],
    seed: int,
    target_scaling: str = "standardize",
    log_every: int = 10,
) -> ModuleFit:
    """`dtnn_jax.training.fit`'s loop for any module with the DTNN call contract.

    Same shuffling (``default_rng([seed, epoch])``), batching, optimizer, schedule, loss,
    target scaling and early stopping as `fit`; no checkpoints.
    """
    budget = batch_budget(train)
    scaler = TargetScaler.fit(targets_of(train_graphs), target_scaling)
    offset, scale = np.float32(scaler.offset), np.float32(scaler.scale)
    val_targets = targets_of(val_graphs).astype(np.float64)
    val_batches = [(idx, _strip(b)) for idx, b in make_batches(val_graphs, budget)]
    steps_per_epoch = len(make_batches(train_graphs, budget))
    spec = OptimizerSpec.from_config(train, steps_per_epoch)
    optimizer = spec.optimizer()
    schedule = spec.schedule()

    init_key, dropout_root = jax.random.split(jax.random.key(seed))
    params = jax.jit(model.init)(init_key, val_batches[0][1])
    opt_state = jax.jit(optimizer.init)(params)

    def loss_fn(p, batch, key):
        pred = model.apply(p, batch, deterministic=False, rngs={"dropout": key})
        target = (batch.globals["target"] - offset * jnp.eye(3, dtype=pred.dtype)) / scale
        return l1_loss(pred, target, graph_mask(batch))

    @jax.jit
    def train_step(p, state, batch, step):
        key = jax.random.fold_in(dropout_root, step)
        loss, grads = jax.value_and_grad(loss_fn)(p, batch, key)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    @jax.jit
    def predict(p, batch):
        y = model.apply(p, batch, deterministic=True)
        return offset * jnp.eye(3, dtype=y.dtype) + scale * y

    best = (math.inf, 0, params)
    history: list[dict[str, float]] = []
    epoch_seconds: list[float] = []
    epoch_compiled: list[bool] = []
    shapes_seen: set[tuple[int, int]] = set()
    step, epoch, stopped_early = 0, 0, False
    while epoch < train.max_epochs and not stopped_early:
        order = np.random.default_rng([seed, epoch]).permutation(len(train_graphs))
        start = time.perf_counter()
        loss_sum = n_seen = 0.0
        n_shapes = len(shapes_seen)
        for idx, batch in make_batches(train_graphs, budget, order):
            shapes_seen.add((batch.nodes["species"].shape[0], batch.senders.shape[0]))
            params, opt_state, loss = train_step(params, opt_state, _strip(batch), step)
            step += 1
            loss_sum += float(loss) * len(idx)
            n_seen += len(idx)
        epoch_seconds.append(time.perf_counter() - start)
        epoch_compiled.append(len(shapes_seen) > n_shapes)
        epoch += 1
        train_mae = loss_sum / n_seen * scaler.scale / 9.0
        if not math.isfinite(train_mae):
            raise FloatingPointError(f"training loss became {train_mae} at epoch {epoch}")
        if epoch % train.eval_every_epochs == 0 or epoch == train.max_epochs:
            val_pred = np.zeros_like(val_targets)
            for idx, batch in val_batches:
                val_pred[idx] = np.asarray(predict(params, batch))[: len(idx)]
            val_mae = float(np.mean(np.abs(val_pred - val_targets)))
            if val_mae < best[0]:
                best = (val_mae, epoch, params)
            history.append(
                {
                    "epoch": epoch,
                    "train_mae": train_mae,
                    "val_mae": val_mae,
                    "lr": float(schedule(step)),
                }
            )
            stopped_early = epoch - best[1] > train.patience_epochs
            if epoch % log_every == 0 or epoch <= 3:
                print(
                    f"  epoch {epoch}: train {train_mae:.3f} val {val_mae:.3f} "
                    f"best {best[0]:.3f}@{best[1]} ({epoch_seconds[-1]:.1f} s)",
                    flush=True,
                )
    return ModuleFit(
        params=best[2],
        scaler=scaler,
        best_val_mae=best[0],
        best_epoch=best[1],
        epochs_run=epoch,
        stopped_early=stopped_early,
        epoch_seconds=epoch_seconds,
        epoch_compiled=epoch_compiled,
        history=history,
    )


def predict_module(
    model: nn.Module,
    params: Any,
    graphs: Sequence[jraph.GraphsTuple],
    scaler: TargetScaler,
    train: TrainConfig,
) -> np.ndarray:
    """[n, 3, 3] predictions in units of eps, in input order."""
    apply = jax.jit(lambda p, b: model.apply(p, b, deterministic=True))
    out = np.zeros((len(graphs), 3, 3), np.float64)
    for idx, batch in make_batches(graphs, batch_budget(train)):
        y = np.asarray(apply(params, _strip(batch)), np.float64)[: len(idx)]
        out[idx] = scaler.offset * np.eye(3) + scaler.scale * y
    return out


def run_one(
    name: str,
    target: str,
    seed: int,
    records: Sequence[Any],
    graphs: Sequence[jraph.GraphsTuple],
    train: TrainConfig,
) -> dict[str, Any]:
    """Trains and tests one baseline on one split; returns a JSON-ready summary."""
    keep = [i for i, r in enumerate(records) if r.has_target(target)]
    recs = [records[i] for i in keep]
    targets = np.stack([np.asarray(r.target(target), np.float64) for r in recs])
    labelled = with_targets([graphs[i] for i in keep], targets)
    train_idx, val_idx, test_idx = split_indices(len(recs), seed)
    train_graphs = [labelled[i] for i in train_idx]
    avg_nn = average_num_neighbors(train_graphs)
    model = build_model(name, avg_nn)

    start = time.perf_counter()
    result = fit_module(model, train, train_graphs, [labelled[i] for i in val_idx], seed)
    wall = time.perf_counter() - start
    pred = predict_module(
        model, result.params, [labelled[i] for i in test_idx], result.scaler, train
    )
    true = targets[test_idx]
    systems = [recs[i].crystal_system for i in test_idx]
    mean_pred = MeanPredictor.fit(targets[train_idx]).predict(len(test_idx))
    steady = [t for t, c in zip(result.epoch_seconds, result.epoch_compiled, strict=True) if not c]
    return {
        "model": name,
        "target": target,
        "seed": seed,
        "config": dataclasses.asdict(model.config),
        "n_params": count_params(result.params),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
        "best_val_mae_tensor": result.best_val_mae,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "epoch_seconds": result.epoch_seconds,
        "epoch_compiled": result.epoch_compiled,
        # Median over the epochs that compiled nothing (None if every epoch compiled).
        "median_epoch_seconds": float(np.median(steady)) if steady else None,
        "fit_wall_seconds": wall,
        "target_scaler": result.scaler.as_dict(),
        "test": all_metrics(pred, true),
        "test_by_crystal_system": {
            k: {"mae_tensor": v[0], "count": v[1]}
            for k, v in mae_tensor_by_crystal_system(pred, true, systems).items()
        },
        "mean_predictor": all_metrics(mean_pred, true),
        "history": result.history,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--targets", nargs="+", default=list(TARGETS), choices=TARGETS, help="dielectric targets"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-epochs", type=int, default=None, help="override TrainConfig")
    parser.add_argument("--patience", type=int, default=None, help="override TrainConfig")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    args = parser.parse_args(argv)

    overrides = {"progress_bar": False}
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.patience is not None:
        overrides["patience_epochs"] = args.patience
    train = dataclasses.replace(TrainConfig(), **overrides)

    records = load_petousis2017()
    graphs = [graph_from_structure(r.structure, CUTOFF_ANGSTROM) for r in records]
    runs = []
    for name in args.models:
        for target in args.targets:
            for seed in args.seeds:
                print(f"{name} {target} seed {seed}", flush=True)
                summary = run_one(name, target, seed, records, graphs, train)
                print(
                    f"  test MAE_tensor {summary['test']['mae_tensor']:.3f} "
                    f"(mean predictor {summary['mean_predictor']['mae_tensor']:.3f}), "
                    f"{summary['n_params']} params, "
                    f"median epoch without compilation {summary['median_epoch_seconds']} s",
                    flush=True,
                )
                runs.append(summary)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(
                    json.dumps(
                        {
                            "machine": {
                                "platform": platform.platform(),
                                "processor": platform.processor(),
                                "jax": jax.__version__,
                                "backend": jax.default_backend(),
                                "devices": [str(d) for d in jax.devices()],
                            },
                            "train_config": dataclasses.asdict(train),
                            "cutoff_angstrom": CUTOFF_ANGSTROM,
                            "runs": runs,
                        },
                        indent=1,
                    )
                )


if __name__ == "__main__":
    main()
