"""The configuration dataclasses validate their values and round-trip through dicts."""

from __future__ import annotations

import dataclasses

import pytest

from dtnn_jax.config import (
    ExperimentConfig,
    ReadoutConfig,
    TrainConfig,
    encoder_layer_irreps,
)
from dtnn_jax.graph import BatchBudget


def test_defaults_follow_the_paper():
    cfg = ExperimentConfig.default()
    assert (cfg.readout.n_blocks, cfg.readout.width, cfg.readout.dropout_rate) == (2, 128, 0.2)
    assert (cfg.train.batch_size, cfg.train.grad_clip_norm) == (64, 2.0)
    assert cfg.readout.input_irreps == "128x0e+64x1e+32x2e"
    assert ExperimentConfig.default(encoder_layer=5).readout.input_irreps == "128x0e"


def test_round_trip_through_dict():
    cfg = ExperimentConfig.quick(target="ionic", encoder_layer=5, seed=3)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: ReadoutConfig(width=0), "width"),
        (lambda: ReadoutConfig(dropout_rate=1.0), "dropout_rate"),
        (lambda: ReadoutConfig(input_irreps="4x1e"), "l=0"),
        (lambda: ReadoutConfig(input_irreps="4x0e+1x4e"), "l <= 3"),
        (lambda: ReadoutConfig(input_irreps="nonsense"), "input_irreps"),
        (lambda: ReadoutConfig(target_scaling="log"), "target_scaling"),
        (lambda: TrainConfig(batch=BatchBudget(max_graphs=0)), "max_graphs"),
        (lambda: TrainConfig(batch=BatchBudget(growth=1.0)), "growth"),
        (lambda: TrainConfig(shards=0), "shards"),
        (lambda: TrainConfig(decay_epochs=0), "decay_epochs"),
        (lambda: ExperimentConfig(target="static"), "target"),
        (lambda: encoder_layer_irreps(6), "1..5"),
    ],
)
def test_bad_values_fail_on_construction(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_layer_and_irreps_must_agree():
    cfg = ExperimentConfig.default(encoder_layer=4)
    with pytest.raises(ValueError, match="encoder layer 5"):
        dataclasses.replace(cfg, encoder_layer=5)


def test_two_layer_concatenation_is_allowed_and_flagged():
    cfg = ExperimentConfig.default(encoder_layer=3)
    assert not cfg.concatenates_layers
    both = f"{encoder_layer_irreps(3)}+{encoder_layer_irreps(5)}"
    concat = dataclasses.replace(cfg, readout=dataclasses.replace(cfg.readout, input_irreps=both))
    assert concat.concatenates_layers
    with pytest.raises(ValueError, match="encoder layer 3"):  # three layers: not an option
        dataclasses.replace(
            cfg, readout=dataclasses.replace(cfg.readout, input_irreps=f"{both}+128x0e")
        )


def test_configs_written_before_output_map_read_as_affine():
    old = ExperimentConfig.default().to_dict()
    del old["readout"]["output_map"]
    assert ExperimentConfig.from_dict(old).readout.output_map == "affine"
    assert ExperimentConfig.default().readout.output_map == "matrix_exp"


def test_configs_written_with_flat_batch_fields_still_load():
    old = ExperimentConfig.default().to_dict()
    batch = old["train"].pop("batch")
    old["train"] |= {"batch_size": 32, "max_nodes_per_batch": batch["max_nodes"]}
    cfg = ExperimentConfig.from_dict(old)
    assert cfg.train.batch_size == 32 and cfg.train.batch.max_nodes == batch["max_nodes"]
    assert cfg.encoder == "sevennet-0"
