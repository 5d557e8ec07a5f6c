"""One training run's configuration: `ExperimentConfig` (and the physics model's `PhysicsConfig`).

It combines the readout's architecture (`dtnn_jax.config.readout`) and the optimisation's
settings (`dtnn_jax.config.training`) with the target, the encoder and its layer, the seed,
and checks that they agree.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from dtnn_jax.config.readout import ReadoutConfig, encoder_layer_irreps, readout_for
from dtnn_jax.config.training import TrainConfig
from dtnn_jax.constants import (
    DEFAULT_ENCODER,
    DEFAULT_ENCODER_LAYER,
    PHYSICS_ENCODER,
    READOUT_VARIANTS,
    TARGETS,
)
from dtnn_jax.graph.batching import BatchBudget
from dtnn_jax.validation import check_at_least

Target = Literal["electronic", "ionic", "total"]


@dataclasses.dataclass(frozen=True)
class PhysicsConfig:
    """The physics ionic model: eps_ion from learned Born charges and the encoder's own K.

    eps_ion = 4 pi e^2 / Omega * Z^T Kinv Z with Kinv the optical pseudo-inverse of the
    encoder's Gamma force constants at the given geometry (`dtnn_jax.physics`); the readout
    config then describes the Born-charge head's trunk (`dtnn_jax.physics.born`).

    Attributes:
        treatment: how negative optical eigenvalues of K enter Kinv
            (`dtnn_jax.physics.TREATMENTS`; chosen on validation).
        floor: lower bound on |eigenvalue| before inversion (eV/A^2).
    """

    treatment: str = "drop_negative"
    floor: float = 0.01

    def __post_init__(self):
        from dtnn_jax.physics.dielectric import TREATMENTS

        if self.treatment not in TREATMENTS:
            raise ValueError(
                f"PhysicsConfig.treatment must be one of {TREATMENTS}, got {self.treatment!r}"
            )
        check_at_least(self, 0, "floor")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One training run: which target, which encoder and layer, which split, how to train.

    Attributes:
        target: dielectric tensor to learn: "electronic", "ionic" or "total".
        encoder_layer: the encoder's interaction layer whose node features feed the
            readout; must agree with ``readout.input_irreps`` (or, for the two-layer
            ablation, be the first of the two layers whose features are concatenated).
        seed: seed of the data split, the parameter initialisation, dropout and shuffling.
        readout: the readout architecture.
        train: the optimisation settings.
        encoder: registry name of the frozen encoder (`dtnn_jax.encoder.available_encoders`);
            configs saved before this setting existed read as "sevennet-0".
        physics: None for the feature readout; a `PhysicsConfig` for the physics ionic
            model (target "ionic", no target scaling, affine output: the model outputs eps_ion
            itself). The encoder must then be a potential whose Hessian K is available.
    """

    target: Target = "total"
    encoder_layer: int = DEFAULT_ENCODER_LAYER
    seed: int = 0
    readout: ReadoutConfig = dataclasses.field(default_factory=ReadoutConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    encoder: str = DEFAULT_ENCODER
    physics: PhysicsConfig | None = None

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"ExperimentConfig.target must be one of {TARGETS}: {self.target!r}")
        if self.physics is not None and (
            self.target != "ionic"
            or self.readout.target_scaling != "none"
            or self.readout.output_map != "affine"
        ):
            raise ValueError(
                "the physics model predicts eps_ion itself: it needs target 'ionic', "
                "target_scaling 'none' and output_map 'affine' (ExperimentConfig.physics_ionic)"
            )
        import e3nn_jax as e3nn

        expected = e3nn.Irreps(self.encoder_irreps(self.encoder_layer))
        # The two-layer ablation feeds encoder_layer's features followed by another layer's
        # (the caller concatenates them, see benchmarks/layer_ablation.py).
        from dtnn_jax.encoder.registry import get_encoder

        n_layers = get_encoder(self.encoder).num_layers
        allowed = [expected] + [
            e3nn.Irreps(f"{expected}+{self.encoder_irreps(k)}") for k in range(1, n_layers + 1)
        ]
        if e3nn.Irreps(self.readout.input_irreps) not in allowed:
            raise ValueError(
                f"encoder layer {self.encoder_layer} gives irreps {expected}, but "
                f"readout.input_irreps is {self.readout.input_irreps!r}; build the config with "
                "ExperimentConfig.default(encoder_layer=...) or set both."
            )

    def encoder_irreps(self, layer: int) -> str:
        """Irreps of this config's encoder after ``layer``."""
        return encoder_layer_irreps(layer, self.encoder)

    @property
    def concatenates_layers(self) -> bool:
        """Whether the readout reads two layers' features concatenated (an ablation)."""
        import e3nn_jax as e3nn

        return e3nn.Irreps(self.readout.input_irreps) != e3nn.Irreps(
            self.encoder_irreps(self.encoder_layer)
        )

    def to_dict(self) -> dict:
        """A JSON-serialisable nested dict (inverse of `from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentConfig:
        """Rebuilds (and re-validates) a config written by `to_dict`."""
        data = dict(data)
        # Written before output_map existed: those models were trained with the affine map;
        # before edge_cutoff_angstrom existed: un-enveloped bond inputs.
        readout = {
            "output_map": "affine",
            "edge_cutoff_angstrom": None,
            **data.pop("readout", {}),
        }
        readout = ReadoutConfig(**readout)
        train = TrainConfig.from_dict(data.pop("train", {}))
        physics = data.pop("physics", None)
        physics = None if physics is None else PhysicsConfig(**physics)
        return cls(readout=readout, train=train, physics=physics, **data)

    @classmethod
    def physics_ionic(
        cls,
        encoder_layer: int = 2,
        seed: int = 0,
        encoder: str = PHYSICS_ENCODER,
        readout: str = "dtnn",
        treatment: str = "drop_negative",
    ) -> ExperimentConfig:
        """The physics ionic model: a Born-charge head with the DTNN trunk (``readout``
        variant) on ``encoder``'s layer features, eps_ion through the encoder's own K."""
        return cls.default("ionic", encoder_layer, seed, encoder, readout).with_physics(treatment)

    def with_physics(self, treatment: str = "drop_negative") -> ExperimentConfig:
        """This ionic config as the physics model: its readout becomes the Born-charge head's
        trunk (eps_ion unscaled, identity output map), eps_ion through the encoder's own K."""
        head = dataclasses.replace(self.readout, target_scaling="none", output_map="affine")
        return dataclasses.replace(self, readout=head, physics=PhysicsConfig(treatment))

    @classmethod
    def default(
        cls,
        target: Target = "total",
        encoder_layer: int = DEFAULT_ENCODER_LAYER,
        seed: int = 0,
        encoder: str = DEFAULT_ENCODER,
        readout: str = "dtnn",
    ) -> ExperimentConfig:
        """The paper's hyperparameters (2 blocks, width 128, dropout 0.2, batch 64).

        ``readout`` names a variant of `dtnn_jax.constants.READOUT_VARIANTS` ("dtnn",
        "dtnn_simple", "head").
        """
        if readout not in READOUT_VARIANTS:
            raise ValueError(f"readout must be one of {list(READOUT_VARIANTS)}, got {readout!r}")
        return cls(
            target=target,
            encoder_layer=encoder_layer,
            seed=seed,
            readout=readout_for(encoder, encoder_layer, **READOUT_VARIANTS[readout]),
            train=TrainConfig(),
            encoder=encoder,
        )

    @classmethod
    def quick(cls, **kwargs) -> ExperimentConfig:
        """A tiny configuration for tests and smoke runs (seconds on a CPU).

        Takes the arguments of `default` (target, encoder_layer, seed, encoder, readout).
        """
        config = cls.default(**kwargs)
        readout = dataclasses.replace(
            config.readout,
            width=16,
            vector_channels=8,
            tensor_channels=4,
            n_blocks=min(config.readout.n_blocks, 1),
            dropout_rate=0.1,
        )
        train = TrainConfig(
            batch=BatchBudget(
                max_graphs=8, max_nodes=256, max_edges=4096, growth=1.5, min_nodes=64, min_edges=512
            ),
            learning_rate=3e-3,
            warmup_steps=2,
            max_epochs=6,
            patience_epochs=50,
            checkpoint_every_epochs=2,
            progress_bar=False,
        )
        return dataclasses.replace(config, readout=readout, train=train)
