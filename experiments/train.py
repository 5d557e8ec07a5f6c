"""Train and evaluate DTNN on the shipped data: ``python experiments/train.py [flags]``.

The same command as ``dtnn train`` (see ``--help``): all three targets, split seed 0,
SevenNet-0 layer 3 and run directory ``runs/dtnn`` by default; it writes the accuracy table,
parity plots and a model bundle that ``dtnn predict --model WORKDIR`` uses.
"""

import sys

from dtnn_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
