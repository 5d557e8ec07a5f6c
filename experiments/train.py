"""Train and evaluate DTNN on the shipped data: ``python experiments/train.py [flags]``.

A thin command line over `dtnn_jax.train_and_evaluate` (identical to ``dtnn train``); see
``--help``. Defaults: all three targets, split seed 0, SevenNet-0 layer 3, run directory
``runs/dtnn``.
"""

import argparse
import sys

from dtnn_jax.training.cli import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
