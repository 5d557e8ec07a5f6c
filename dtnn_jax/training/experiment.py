"""One experiment end to end: records -> cached features -> fit -> test metrics + baselines.

`train_and_evaluate(config, workdir)` is what ``experiments/train.py`` calls. It splits the
records with `dtnn_jax.data.split_indices` (seed = ``config.seed``), trains on the train part
with early stopping on validation, and writes ``metrics.json``, ``test_predictions.npz`` and a
one-member model bundle (``bundle.json`` + ``params.npz``, so ``load_model(workdir)`` and
``dtnn predict --model workdir`` use it) in ``workdir``. The metrics are the model's four
DESIGN section 5 metrics, the MAE_tensor per crystal system, and the same metrics for the
mean-tensor and ridge baselines on the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jraph
import numpy as np

from dtnn_jax.config import ExperimentConfig
from dtnn_jax.errors import InputError
from dtnn_jax.models.baselines import RidgeIsotropicBaseline, invariant_descriptors
from dtnn_jax.training.checkpoint import write_json_atomic
from dtnn_jax.training.contract import with_targets
from dtnn_jax.training.loop import FitResult, evaluate, fit


def train_and_evaluate(
    config: ExperimentConfig,
    workdir: str | Path,
    records: Sequence[Any] | None = None,
    graphs: Sequence[jraph.GraphsTuple] | None = None,
    cache_dir: str | Path | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Trains one readout, evaluates it on the held-out test split and writes its bundle.

    The JSON-ready summary of `run_experiment` (see there for the arguments); its
    ``"bundle"`` entry is the directory of the model bundle (``workdir``).
    """
    return run_experiment(config, workdir, records, graphs, cache_dir, restart)[0]


def run_experiment(
    config: ExperimentConfig,
    workdir: str | Path,
    records: Sequence[Any] | None = None,
    graphs: Sequence[jraph.GraphsTuple] | None = None,
    cache_dir: str | Path | None = None,
    restart: bool = False,
    model: Any = None,
    fold: tuple[int, int] | None = None,
) -> tuple[dict[str, Any], FitResult]:
    """Trains one readout and evaluates it on the held-out test split.

    With ``fold=(k, K)`` there is no test split: the model trains on 90 % and stops early on
    validation fold k of K (`dtnn_jax.data.fold_indices`), for ensembles that learn from every
    labelled crystal; the summary then holds validation metrics only.

    Args:
        config: the experiment.
        workdir: run directory (checkpoints, history, metrics); an existing run resumes.
        records: labelled records (``.target(name)``, ``.crystal_system``, ``.structure``);
            default: the shipped Petousis et al. 2017 set. Records without the target are
            dropped.
        graphs: featurised single-crystal graphs aligned with ``records`` (default: computed
            with the frozen encoder through the feature cache).
        cache_dir: feature cache directory (default: ``$DTNN_JAX_CACHE``).
        restart: discard checkpoints already in ``workdir`` instead of resuming them.
        model: a Flax module to train instead of the DTNN readout (see `fit`); the graphs
            must then carry what it reads, and no bundle is written.
        fold: ``(k, K)``: train on fold k of K 90/10 train/validation folds, no test split.

    Returns:
        A JSON-ready dict (sizes, fit summary, test metrics of the model and baselines) and
        the `FitResult` (best parameters and target scaler).
    """
    from dtnn_jax.data import MeanPredictor, fold_indices, load_petousis2017, split_indices
    from dtnn_jax.metrics import all_metrics, mae_tensor_by_crystal_system

    workdir = Path(workdir)
    shipped = records is None
    if records is None:
        records = load_petousis2017()
    keep = [i for i, r in enumerate(records) if r.has_target(config.target)]
    if graphs is None:
        from dtnn_jax.encoder.features import graphs_with_features

        if config.concatenates_layers:
            raise ValueError(
                "this config reads two encoder layers' features concatenated: pass the "
                "graphs (see benchmarks/layer_ablation.py), they are not built here"
            )

        graphs = graphs_with_features(
            [records[i].structure for i in keep],
            config.encoder_layer,
            cache_dir=cache_dir,
            progress=config.train.progress_bar,
            encoder=config.encoder,
        )
    else:
        if len(graphs) != len(records):
            raise ValueError(f"{len(graphs)} graphs for {len(records)} records")
        graphs = [graphs[i] for i in keep]
    records = [records[i] for i in keep]
    targets = np.stack([np.asarray(r.target(config.target), np.float64) for r in records])
    graphs = with_targets(graphs, targets)

    if len(records) < 10:
        raise InputError(
            f"{len(records)} labelled records with a {config.target} tensor are too few for an "
            "80/10/10 split into training, validation and test crystals; use at least 10"
        )
    if fold is None:
        train_idx, val_idx, test_idx = split_indices(len(records), config.seed)
        split = f"split seed {config.seed} (80/10/10)"
    else:
        train_idx, val_idx = fold_indices(len(records), *fold)
        test_idx = np.zeros(0, np.int64)
        split = f"fold {fold[0]} of {fold[1]} (90/10 train/validation, no test split)"

    def take(idx):
        return [graphs[i] for i in idx]

    result = fit(config, take(train_idx), take(val_idx), workdir, model=model, restart=restart)
    summary = {
        "config": config.to_dict(),
        "workdir": str(workdir),
        "split": split,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
        "best_val_mae_tensor": result.best_val_mae,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "target_scaler": result.scaler.as_dict(),
    }
    if fold is None:
        pred = evaluate(result.params, config, take(test_idx), result.scaler, model=model)
        true = targets[test_idx]
        systems = [records[i].crystal_system for i in test_idx]
        mean_pred = MeanPredictor.fit(targets[train_idx]).predict(len(test_idx))
        x = invariant_descriptors(graphs, config.readout.input_irreps)
        ridge = RidgeIsotropicBaseline.fit(
            x[train_idx], targets[train_idx], x[val_idx], targets[val_idx]
        )
        ridge_pred = ridge.predict(x[test_idx])
        summary |= {
            "test": all_metrics(pred, true),
            "test_by_crystal_system": {
                k: {"mae_tensor": v[0], "count": v[1]}
                for k, v in mae_tensor_by_crystal_system(pred, true, systems).items()
            },
            "baselines": {
                "mean_tensor": all_metrics(mean_pred, true),
                "ridge_isotropic": {**all_metrics(ridge_pred, true), "alpha": ridge.alpha},
            },
        }
        member_metrics = summary["test"]
    else:
        val_pred = evaluate(result.params, config, take(val_idx), result.scaler, model=model)
        summary["validation"] = all_metrics(val_pred, targets[val_idx])
        member_metrics = {f"val_{k}": v for k, v in summary["validation"].items()}
    from dtnn_jax.training.export import export_bundle, graphs_digest

    summary["bundle"] = str(workdir) if model is None else None
    if jax.process_index() != 0:  # in a multi-process run, process 0 writes the files
        return summary, result
    if model is None:
        export_bundle(
            workdir,
            {config.target: [(config, result, member_metrics)]},
            graphs_digest(graphs),
            len(graphs),
            description=(
                f"DTNN readout for the {config.target} tensor on {config.encoder} layer "
                f"{config.encoder_layer} features; {split}"
            ),
            training_data="shipped Petousis et al. 2017" if shipped else "user records",
            produced_by="dtnn_jax.train_and_evaluate",
        )
    write_json_atomic(workdir / "metrics.json", summary)
    if fold is None:
        np.savez(
            workdir / "test_predictions.npz",
            indices=np.asarray(keep)[test_idx],
            predicted=pred,
            mean_predictor=mean_pred,
            ridge=ridge_pred,
            true=true,
            crystal_system=np.array(systems),
        )
    return summary, result
