"""Names and defaults the whole package agrees on, importable without JAX.

`dtnn_jax.config` builds its dataclasses on these; the command line reads them for its
choices and help texts without starting JAX (so ``dtnn --help`` is instant).
"""

TARGETS: tuple[str, ...] = ("electronic", "ionic", "total")
TARGET_SCALINGS: tuple[str, ...] = ("none", "standardize")
OUTPUT_MAPS: tuple[str, ...] = ("affine", "matrix_exp")

# Named readout variants (`ReadoutConfig` settings over the default): the full DTNN; DTNN-simple
# (no edge inputs); "head": no equivariant blocks and no edges, i.e. a gated MLP on the atom
# scalars (the isotropic part) plus linear maps of the l = 1 (v v^T) and l = 2 channels.
READOUT_VARIANTS: dict[str, dict] = {
    "dtnn": {},
    "dtnn_simple": {"use_edges": False},
    "head": {"use_edges": False, "n_blocks": 0},
}

# The encoder and layer whose features feed the readout by default: chosen on validation
# data (5 split seeds, all three targets; benchmarks/results/readout_variants.md and
# layer_ablation.md).
DEFAULT_ENCODER = "sevennet-0"
DEFAULT_ENCODER_LAYER = 3

# The physics ionic model (`dtnn train --physics`): the phonon-fine-tuned potential whose force
# constants enter eps_ion, and the layer of its features the Born-charge head reads (chosen on
# validation, benchmarks/results/ionic_physics.md).
PHYSICS_ENCODER = "nequix-oam-1-pft"
PHYSICS_ENCODER_LAYER = 2
