"""Reference outputs of the torch SevenNet-0 for the JAX parity tests.

Run ONLY with the separate torch environment (never imported by the package or the tests)::

    /work/torchvenv/bin/python experiments/sevennet_reference.py \
        --pth <wheel>/sevenn/pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth \
        --csv <matminer-0.4.0 sdist>/matminer/datasets/dielectric_constant.csv

(the defaults point at /work/dl). The torch environment is
``pip install torch==2.13.0 sevenn==0.13.0`` (CPU); sevenn 0.13.0 also needs
torch_geometric, which its dependencies pull in.

It runs ``sevenn``'s own model (float32, CPU, force module kept) on a few real crystals of
the Petousis et al. dielectric set and writes ``tests/encoder/fixtures/sevennet0_reference.npz``:

* ``<key>_numbers`` [n], ``<key>_positions`` [n, 3] (angstrom), ``<key>_lattice`` [3, 3]
  (rows), the structure;
* ``<key>_energy`` [] (eV), ``<key>_atomic_energies`` [n], ``<key>_forces`` [n, 3] (eV/A);
* ``<key>_features_<k>`` [n, dim_k] for k = 1..5: node features after the gate of
  interaction layer k, in the torch e3nn layout (irreps "128x0e+64x1e+32x2e", channel-major
  ``mul_ir`` layout, l=1 components in e3nn's order of the spherical harmonics of (x, y, z),
  which for l <= 2 is the same polynomial basis as e3nn-jax's);
* ``keys``: the crystal keys; ``material_ids``; ``sevenn_version``, ``torch_version``.
"""

from __future__ import annotations

import argparse
import ast
import io
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "encoder" / "fixtures" / "sevennet0_reference.npz"
DEFAULT_PTH = Path(
    "/work/dl/sevenn_whl/sevenn/pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth"
)
DEFAULT_CSV = Path("/work/dl/matminer-0.4.0/matminer/datasets/dielectric_constant.csv")

# Chosen to cover: the smallest cell (2 atoms, the 5 A cutoff exceeds every cell vector),
# triclinic cells (P-1 and P1), the largest cells of the set (20 atoms), hydrogen.
MATERIALS = {
    "snse": "mp-2693",  # SnSe rock salt, 2 atoms
    "rb2te": "mp-441",  # Rb2Te, 3 atoms, cubic
    "pi2": "mp-29443",  # PI2, 6 atoms, triclinic P-1
    "si4p4ru": "mp-14983",  # Si4P4Ru, 9 atoms, triclinic P1
    "fep4": "mp-570553",  # FeP4, 20 atoms, monoclinic (largest)
    "sih4": "mp-23739",  # SiH4, 20 atoms, monoclinic
}
# Relaxed DFPT cells have near-zero forces: rattled copies make the force parity test bite.
RATTLED = {"pi2_rattled": "pi2", "si4p4ru_rattled": "si4p4ru", "snse_rattled": "snse"}
RATTLE_ANGSTROM = 0.05


def read_structures(csv_path: Path) -> dict:
    import ase.io
    import pandas as pd

    df = pd.read_csv(csv_path, skiprows=1)
    out = {}
    for key, mp_id in MATERIALS.items():
        row = df[df.material_id == mp_id]
        if len(row) != 1:
            raise KeyError(f"{mp_id} not found once in {csv_path}")
        poscar = row.poscar.iloc[0]
        if poscar.startswith(("u'", 'u"', "'", '"')):
            poscar = ast.literal_eval(poscar.lstrip("u"))
        out[key] = ase.io.read(io.StringIO(poscar), format="vasp")
    rng = np.random.default_rng(7)
    for key, base in RATTLED.items():
        atoms = out[base].copy()
        atoms.positions += rng.normal(scale=RATTLE_ANGSTROM, size=atoms.positions.shape)
        out[key] = atoms
    return out


def main(argv=None):
    import sevenn
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from sevenn.util import model_from_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pth", type=Path, default=DEFAULT_PTH)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    model, config = model_from_checkpoint(str(args.pth))
    model.eval()
    model.set_is_batch_data(False)
    cutoff = float(config["cutoff"])

    captured = []
    n_layers = int(config["num_convolution_layer"])
    for t in range(n_layers):
        module = model._modules[f"{t}_equivariant_gate"]
        module.register_forward_hook(lambda _m, _inp, out: captured.append(out["x"].detach()))

    result = {
        "keys": np.array([*MATERIALS, *RATTLED]),
        "material_ids": np.array(
            [*MATERIALS.values(), *(MATERIALS[b] + " rattled" for b in RATTLED.values())]
        ),
        "sevenn_version": np.array(sevenn.__version__),
        "torch_version": np.array(torch.__version__),
        "features_basis": np.array("torch e3nn, mul_ir layout, irreps per layer from config"),
    }
    for key, atoms in read_structures(args.csv).items():
        captured.clear()
        data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, cutoff))
        out = model(data)
        energy = float(out["inferred_total_energy"].detach())
        forces = out["inferred_force"].detach().numpy()
        atomic = out["atomic_energy"].detach().numpy().reshape(-1)
        result[f"{key}_numbers"] = atoms.get_atomic_numbers().astype(np.int32)
        result[f"{key}_positions"] = atoms.get_positions().astype(np.float64)
        result[f"{key}_lattice"] = np.array(atoms.get_cell()).astype(np.float64)
        result[f"{key}_energy"] = np.array(energy)
        result[f"{key}_atomic_energies"] = atomic.astype(np.float32)
        result[f"{key}_forces"] = forces.astype(np.float32)
        result[f"{key}_n_edges"] = np.array(data["edge_index"].shape[1])
        assert len(captured) == n_layers, len(captured)
        for k, feats in enumerate(captured, start=1):
            result[f"{key}_features_{k}"] = feats.numpy().astype(np.float32)
        print(
            f"{key:16s} n={len(atoms):3d} edges={result[f'{key}_n_edges']}"
            f" E={energy:.6f} eV |F|max={np.abs(forces).max():.4f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **result)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
