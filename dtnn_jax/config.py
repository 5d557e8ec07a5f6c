"""The project's one configuration system: frozen, validated dataclasses.

Every setting of an experiment lives here, grouped by the part of the pipeline it
controls. The dataclasses are frozen and check their values on construction, so a bad
value fails where it is written, not deep inside a jitted function. Command-line flags
only exist at the edge (``experiments/``) and build these objects.

Example:
    >>> from dtnn_jax.config import ExperimentConfig
    >>> cfg = ExperimentConfig.default()
    >>> cfg.readout.width, cfg.readout.n_blocks, cfg.train.batch_size
    (128, 2, 64)
    >>> ExperimentConfig.quick().train.max_epochs
    6
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from dtnn_jax.constants import (
    DEFAULT_ENCODER,
    DEFAULT_ENCODER_LAYER,
    OUTPUT_MAPS,
    PHYSICS_ENCODER,
    READOUT_VARIANTS,
    TARGET_SCALINGS,
    TARGETS,
)
from dtnn_jax.graph.batching import BatchBudget
from dtnn_jax.validation import check_at_least, check_positive

Target = Literal["electronic", "ionic", "total"]
TargetScaling = Literal["none", "standardize"]

OutputMap = Literal["affine", "matrix_exp"]


def encoder_layer_irreps(layer: int, encoder: str = DEFAULT_ENCODER) -> str:
    """Irreps of an encoder's node features after interaction layer ``layer``.

    Read from the encoder's own architecture config (cheap: no weights are loaded).
    """
    from dtnn_jax.encoder.registry import get_encoder

    return get_encoder(encoder).layer_irreps(layer)


def _default_input_irreps() -> str:
    return encoder_layer_irreps(DEFAULT_ENCODER_LAYER)


@dataclasses.dataclass(frozen=True)
class ReadoutConfig:
    """The trainable equivariant readout (DTNN blocks + tensor readout).

    Attributes:
        input_irreps: irreps of the flat per-atom input features ("features" in the graph
            nodes), in e3nn-jax's basis convention. Only l <= 2 is used; l = 1 becomes
            Cartesian vectors, l = 2 symmetric traceless 3x3 tensors, l = 3 is dropped
            (`dtnn_jax.models.cartesian`). Parity labels are ignored (SevenNet-0 is
            SO(3)-only; Nequix's 1o/2e are the true vectors/tensors the head needs).
        n_radial: width of the per-edge radial features ("radial" in the graph edges).
        width: hidden width of every scalar MLP (paper: 128).
        vector_channels: number of atom/bond vector channels inside the blocks.
        tensor_channels: number of atom rank-2 tensor channels inside the blocks.
        n_blocks: number of equivariant blocks (paper: 2).
        mlp_layers: dense layers per scalar MLP (the last one has no activation).
        dropout_rate: dropout on the atom scalars (paper: 0.2).
        use_edges: False gives DTNN-simple (no bond scalars/vectors at all).
        avg_num_neighbors: bond messages summed into an atom are divided by this constant,
            so the sum stays O(1) whatever the cutoff (SevenNet-0's 5 A cutoff gives 27.1
            edges per atom on the shipped set; 40 is a round upper value; 27 gave the same
            validation MAE on total, seed 0: 1.27 vs 1.25).
        target_scaling: "none": the network predicts eps directly; "standardize": it
            predicts (eps - offset I) / scale with offset and scale taken from the training
            targets (see `dtnn_jax.models.scaling`).
        output_map: how the network's symmetric output y becomes eps: "matrix_exp"
            (``expm(log(offset) I + y)``: positive definite, log-eigenvalue space; needs
            ``target_scaling="standardize"``) or "affine" (``offset I + scale y``, which can
            predict negative eigenvalues). On validation (5 seeds, layer 3) matrix_exp was
            better on electronic (0.489 vs 0.556, in 5 of 5 seeds) and tied on ionic and total
            (``benchmarks/results/readout_variants.md``); with that, and because its tensors
            are always physical, it is the default. Configs saved before this setting
            existed were affine, and `ExperimentConfig.from_dict` reads them so.
        edge_cutoff_angstrom: the cutoff of the graphs the readout reads (the encoder's):
            every bond input (radial columns, neighbour count, unit-vector sums) is weighted
            by a polynomial envelope that vanishes with its first two derivatives there, so
            eps is continuous in the geometry (issue 23). None is the legacy readout, an
            un-enveloped neighbour count, which jumps when a shell crosses the cutoff;
            configs saved before this setting existed were legacy and
            `ExperimentConfig.from_dict` reads them so.
        ionic_channels: 0 gives the tensor head above; C > 0 the PSD ionic head
            (`dtnn_jax.models.ionic.GramIonic`, C effective-charge channels): eps_ion PSD and
            exactly 0 for a one-atom cell; it outputs eps_ion itself (target_scaling "none",
            output_map "affine").
    """

    input_irreps: str = dataclasses.field(default_factory=_default_input_irreps)
    n_radial: int = 8
    width: int = 128
    vector_channels: int = 64
    tensor_channels: int = 32
    n_blocks: int = 2
    mlp_layers: int = 2
    dropout_rate: float = 0.2
    use_edges: bool = True
    avg_num_neighbors: float = 40.0
    target_scaling: TargetScaling = "standardize"
    output_map: OutputMap = "matrix_exp"
    edge_cutoff_angstrom: float | None = 5.0
    ionic_channels: int = 0

    def __post_init__(self):
        import e3nn_jax as e3nn  # here, not at import: the CLI's --help must stay fast

        try:
            irreps = e3nn.Irreps(self.input_irreps)
        except Exception as err:  # e3nn raises bare ValueError/AssertionError
            raise ValueError(f"ReadoutConfig.input_irreps {self.input_irreps!r}: {err}") from err
        if irreps.dim == 0 or not any(ir.l == 0 for _, ir in irreps):
            raise ValueError(f"ReadoutConfig.input_irreps needs l=0 channels: {irreps}")
        if any(ir.l > 3 for _, ir in irreps):
            raise ValueError(
                f"ReadoutConfig.input_irreps must have l <= 3 (l = 3 is dropped), got {irreps}"
            )
        check_at_least(
            self, 1, "n_radial", "width", "vector_channels", "tensor_channels", "mlp_layers"
        )
        check_at_least(self, 0, "n_blocks")
        check_positive(self, "avg_num_neighbors")
        if self.edge_cutoff_angstrom is not None:
            check_positive(self, "edge_cutoff_angstrom")
        check_at_least(self, 0, "ionic_channels")
        if self.ionic_channels and (self.target_scaling != "none" or self.output_map != "affine"):
            raise ValueError(
                "ReadoutConfig.ionic_channels > 0 (the PSD ionic head) outputs eps_ion itself: "
                "it needs target_scaling 'none' and output_map 'affine'"
            )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"ReadoutConfig.dropout_rate must be in [0, 1): {self.dropout_rate}")
        if self.target_scaling not in TARGET_SCALINGS:
            raise ValueError(
                f"ReadoutConfig.target_scaling must be one of {TARGET_SCALINGS}, "
                f"got {self.target_scaling!r}"
            )
        if self.output_map not in OUTPUT_MAPS:
            raise ValueError(
                f"ReadoutConfig.output_map must be one of {OUTPUT_MAPS}, got {self.output_map!r}"
            )
        if self.output_map == "matrix_exp" and self.target_scaling != "standardize":
            raise ValueError(
                "ReadoutConfig.output_map='matrix_exp' needs target_scaling='standardize' "
                "(its reference point log(offset) comes from the training targets)"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the readout on precomputed encoder features.

    Attributes:
        batch: limits of one padded batch: ``max_graphs`` real crystals (paper: 64), atoms
            and edges (a larger crystal gets a batch of its own) and the bucket ladder
            (``growth`` 1.5: less padding than doubling, a few more compiled shapes).
        learning_rate: peak learning rate after warm-up.
        warmup_steps: linear warm-up from 0 to ``learning_rate``.
        end_lr_fraction: the cosine decay ends at ``learning_rate * end_lr_fraction``.
        weight_decay: AdamW decoupled weight decay (the authors' code: 0.01).
        grad_clip_norm: global gradient-norm clip (paper: 2.0).
        max_epochs: epochs at most. The paper trains on a GPU with early-stopping patience
            200; on 2 CPU cores we use a 100-epoch cosine schedule (about 0.3-0.4 s per epoch
            over the 845 training crystals, so one run takes about 1 min on a quiet machine,
            3-5 min on a loaded one). With the shipped configuration (layer 3, matrix-exp
            output) the best validation epoch was 47-89 of 100 in 14 of the 15 benchmark
            runs (one ionic run peaked at 16 and stopped at 67); 100 epochs keep the
            README's three-target run and the 5-seed benchmark within their time budgets.
        decay_epochs: the cosine decay spans this many epochs (None: ``max_epochs``). Set it
            when a run may be resumed with a larger ``max_epochs`` and must continue on the
            same learning-rate schedule.
        patience_epochs: stop after this many epochs without a better validation MAE
            (paper: 200 on a far longer run; ours: 50, half the schedule, so it only cuts
            runs that have clearly stalled while the learning rate is still high).
        eval_every_epochs: validate every this many epochs.
        checkpoint_every_epochs: save a resumable checkpoint every this many epochs (always
            at the end and on a new best).
        progress_bar: show a tqdm bar with the running train loss and validation MAE.
        shards: each optimisation step's batch is split into this many padded batches, one
            per device of the data-parallel mesh (None: one per device). ``batch`` then
            bounds the whole step (each shard gets an even part of its limits), so the
            optimisation does not depend on the device count; runs with the same ``shards``
            give the same losses on one device or many.
    """

    batch: BatchBudget = dataclasses.field(
        default_factory=lambda: BatchBudget(
            max_graphs=64,
            max_nodes=4096,
            max_edges=262144,
            growth=1.5,
            min_nodes=16,
            min_edges=256,
        )
    )
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    end_lr_fraction: float = 0.01
    weight_decay: float = 0.01
    grad_clip_norm: float = 2.0
    max_epochs: int = 100
    decay_epochs: int | None = None
    patience_epochs: int = 50
    eval_every_epochs: int = 1
    checkpoint_every_epochs: int = 10
    progress_bar: bool = True
    shards: int | None = None

    def __post_init__(self):
        if self.shards is not None:
            check_at_least(self, 1, "shards")
        if not isinstance(self.batch, BatchBudget):
            raise ValueError(f"TrainConfig.batch must be a BatchBudget, got {self.batch!r}")
        check_at_least(
            self, 1, "max_epochs", "patience_epochs", "eval_every_epochs", "checkpoint_every_epochs"
        )
        if self.decay_epochs is not None:
            check_at_least(self, 1, "decay_epochs")
        check_positive(self, "learning_rate", "grad_clip_norm")
        check_at_least(self, 0, "warmup_steps", "weight_decay")
        if not 0.0 <= self.end_lr_fraction <= 1.0:
            raise ValueError(
                f"TrainConfig.end_lr_fraction must be in [0, 1]: {self.end_lr_fraction}"
            )

    @property
    def batch_size(self) -> int:
        """Real crystals per batch (``batch.max_graphs``)."""
        return self.batch.max_graphs

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuilds a config written by ``dataclasses.asdict`` (also the flat batch fields
        of configs saved before `BatchBudget` was part of it)."""
        data = dict(data)
        legacy = {
            "batch_size": "max_graphs",
            "max_nodes_per_batch": "max_nodes",
            "max_edges_per_batch": "max_edges",
            "bucket_growth": "growth",
            "min_bucket_nodes": "min_nodes",
            "min_bucket_edges": "min_edges",
        }
        batch = {legacy[k]: data.pop(k) for k in list(data) if k in legacy}
        if "batch" in data:
            batch = {**data.pop("batch"), **batch}
        return cls(batch=BatchBudget(**{**dataclasses.asdict(cls().batch), **batch}), **data)


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
            readout=_readout_for(encoder, encoder_layer, **READOUT_VARIANTS[readout]),
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


def _readout_for(encoder: str, layer: int, **settings) -> ReadoutConfig:
    """A readout reading ``encoder``'s layer ``layer`` (its irreps and radial basis width)."""
    from dtnn_jax.encoder.registry import get_encoder

    enc = get_encoder(encoder)
    return ReadoutConfig(
        input_irreps=enc.layer_irreps(layer),
        n_radial=enc.n_radial,
        edge_cutoff_angstrom=enc.cutoff_angstrom,
        **settings,
    )
