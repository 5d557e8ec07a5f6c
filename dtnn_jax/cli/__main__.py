"""``python -m dtnn_jax.cli`` = ``dtnn``."""

import sys

from dtnn_jax.cli import main

sys.exit(main())
