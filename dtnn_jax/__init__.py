"""dtnn-jax: dielectric tensors of inorganic crystals from a frozen pretrained encoder."""

__version__ = "0.1.0"
