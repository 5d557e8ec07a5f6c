"""Parity of the JAX encoder before and after a change, on the whole shipped set.

Runs the production path (`dtnn_jax.encoder.features.encode`: the sharded, jitted forward
over the encoder's padded batches) on all 1,056 crystals of Petousis et al. (2017) and
either saves every layer's per-atom features and the energies (``--save``), or compares
them with a saved run (``--against``): per layer, max |new - old| / max |old| over the whole
set, and the same for the energies (and the max per-atom energy difference in eV/atom).

Usage::

    python benchmarks/encoder_parity.py --save /tmp/sevennet_before.npz   # before a change
    python benchmarks/encoder_parity.py --against /tmp/sevennet_before.npz --tol 1e-6

exits 1 if a relative difference exceeds ``--tol``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def outputs(encoder_name: str | None) -> dict[str, np.ndarray]:
    """Energies [n_crystal] and per-layer features [n_atoms_total, D_k] of the shipped set."""
    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.encoder.features import encode
    from dtnn_jax.inputs import crystal_graph

    encoder = get_encoder(encoder_name)
    structures = [r.structure for r in load_petousis2017()]
    graphs = [crystal_graph(s, encoder) for s in structures]
    energies = np.zeros(len(graphs))
    n_node = np.array([int(g.n_node[0]) for g in graphs])
    offsets = np.concatenate([[0], np.cumsum(n_node)])
    feats = [np.zeros((offsets[-1], 0), np.float32)] * encoder.num_layers
    for idx, out in encode(encoder, graphs):
        energies[idx] = out["energy"]
        if feats[0].shape[1] == 0:
            feats = [np.zeros((offsets[-1], f.shape[1]), np.float32) for f in out["features"]]
        rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx])
        for k, f in enumerate(out["features"]):
            feats[k][rows] = f
    result = {"energy": energies, "n_node": n_node}
    result |= {f"layer{k + 1}": f for k, f in enumerate(feats)}
    return result


def compare(new: dict, old: dict) -> dict[str, float]:
    """Relative max differences per array (max |new - old| / max |old|)."""
    report = {}
    for key in sorted(old):
        if key == "n_node":
            continue
        a, b = np.asarray(new[key], np.float64), np.asarray(old[key], np.float64)
        report[key] = float(np.abs(a - b).max() / np.abs(b).max())
    report["energy_ev_per_atom_max"] = float(
        (np.abs(new["energy"] - old["energy"]) / old["n_node"]).max()
    )
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default=None, help="registry name (default sevennet-0)")
    parser.add_argument("--save", type=Path, help="write this run's outputs (.npz)")
    parser.add_argument("--against", type=Path, help="compare with a saved run (.npz)")
    parser.add_argument("--tol", type=float, default=1e-6, help="max relative difference")
    args = parser.parse_args(argv)
    if not (args.save or args.against):
        parser.error("give --save and/or --against")
    new = outputs(args.encoder)
    if args.save:
        np.savez(args.save, **new)
        print(f"saved {args.save}", file=sys.stderr)
    if args.against:
        with np.load(args.against) as f:
            old = {k: f[k] for k in f.files}
        if not np.array_equal(old["n_node"], new["n_node"]):
            sys.exit("the saved run has different graphs")
        report = compare(new, old)
        print(json.dumps(report, indent=1))
        worst = max(v for k, v in report.items() if k != "energy_ev_per_atom_max")
        if worst > args.tol:
            print(f"FAIL: relative difference {worst:.2e} > {args.tol:.0e}", file=sys.stderr)
            sys.exit(1)
        print(f"OK: max relative difference {worst:.2e} <= {args.tol:.0e}", file=sys.stderr)


if __name__ == "__main__":
    main()
