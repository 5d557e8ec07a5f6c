"""Names and defaults the whole package agrees on, importable without JAX.

`dtnn_jax.config` builds its dataclasses on these; the command line reads them for its
choices and help texts without starting JAX (so ``dtnn --help`` is instant).
"""

TARGETS: tuple[str, ...] = ("electronic", "ionic", "total")
TARGET_SCALINGS: tuple[str, ...] = ("none", "standardize")
OUTPUT_MAPS: tuple[str, ...] = ("affine", "matrix_exp")

# The encoder and layer whose features feed the readout by default: chosen on validation
# data (5 split seeds, all three targets; benchmarks/results/readout_variants.md and
# layer_ablation.md).
DEFAULT_ENCODER = "sevennet-0"
DEFAULT_ENCODER_LAYER = 3
