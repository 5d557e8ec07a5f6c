"""Reference outputs of the original Nequix models for the JAX parity tests.

Run ONLY in a separate environment with the original ``nequix`` code (it is never imported
by the package or the tests)::

    python3 -m venv /work/nequix-ref-venv
    /work/nequix-ref-venv/bin/pip install --no-deps nequix==0.4.5
    /work/nequix-ref-venv/bin/pip install "jax!=0.10.2" equinox pyyaml matscipy e3nn-jax \
        jraph numpy ase tqdm
    /work/nequix-ref-venv/bin/python experiments/nequix_reference.py \
        --source-dir /work/shared/weights/nequix

(``--no-deps`` because the wheel's dependencies pull a CUDA build of jax and wandb; jax must
be a CPU build; these are what ``nequix.model`` and ``nequix.data`` import. Written with jax
0.10.1, equinox 0.13.8, e3nn-jax 0.21.0, matscipy 1.3.1, ase 3.29.0; it takes ~3.5 minutes
on 2 cores.)

For each model it loads the ``.nqx`` with nequix's own ``load_model`` (``kernel=False``: the
e3nn-jax tensor product, as on CPU), checks that the converted ``dtnn_jax/weights/<name>.npz``
holds exactly the module's leaves, in the module's tree order and under the matching tree
paths, and then evaluates a few shipped crystals (``dtnn_jax/data/petousis2017.json.gz``,
read with gzip + json) in float32 on the graphs nequix builds itself (matscipy neighbour
list, padded as ``NequixCalculator`` pads). It writes
``tests/encoder/fixtures/nequix_reference.npz``:

* ``keys``, ``material_ids``, ``models`` (the model names), ``model_tags``, versions;
* ``<key>_numbers`` [n], ``<key>_positions`` [n, 3] (angstrom, float64), ``<key>_lattice``
  [3, 3] (rows), ``<key>_n_edges`` [] (nequix's edge count at the 6 A cutoff);
* per model tag ``<t>`` (``oam1``, ``oam1pft``): ``<key>_<t>_energy`` [] (eV),
  ``<key>_<t>_node_energies`` [n] (eV), ``<key>_<t>_forces`` [n, 3] (eV/A) from the model's
  own ``__call__``, and ``<key>_<t>_features_<k>`` [m, dim_k] for k = 1..n_layers, the node
  features after interaction layer k (after its gate) of the first m = min(n, 4) atoms, in
  e3nn-jax's ``mul_ir`` layout and basis. The features come from a verbatim copy of
  ``Nequix.node_energies`` that keeps the output of each layer; its energies are checked
  against ``__call__``'s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "encoder" / "fixtures" / "nequix_reference.npz"
DEFAULT_DATA = REPO_ROOT / "dtnn_jax" / "data" / "petousis2017.json.gz"
DEFAULT_WEIGHTS = REPO_ROOT / "dtnn_jax" / "weights"
DEFAULT_SOURCE = Path("/work/shared/weights/nequix")
MODELS = {"nequix-oam-1": "oam1", "nequix-oam-1-pft": "oam1pft"}

# Chosen to cover: the smallest cells (2 atoms: every cell vector is below the 6 A cutoff, so
# atoms see many of their own images), triclinic cells (P-1 and P1), the largest cells of the
# set (20 atoms), a light element (H) next to heavy ones.
MATERIALS = {
    "srs": "mp-1087",  # SrS rock salt, 2 atoms, shortest cell vector 4.2 A
    "rb2te": "mp-441",  # Rb2Te, 3 atoms, cubic
    "pi2": "mp-29443",  # PI2, 6 atoms, triclinic P-1
    "si4p4ru": "mp-14983",  # Si4P4Ru, 9 atoms, triclinic P1
    "fep4": "mp-570553",  # FeP4, 20 atoms, monoclinic (largest)
    "h2s": "mp-33024",  # H2S, 12 atoms, triclinic, hydrogen
}
# Relaxed DFPT cells have near-zero forces: rattled copies make the force parity test bite.
RATTLED = {"srs_rattled": "srs", "pi2_rattled": "pi2", "si4p4ru_rattled": "si4p4ru"}
RATTLE_ANGSTROM = 0.05
FEATURE_ATOMS = 4


def read_structures(path: Path) -> dict:
    """key -> ase.Atoms of the chosen crystals (and rattled copies)."""
    import ase

    with gzip.open(path, "rt", encoding="utf-8") as f:
        records = {r["material_id"]: r for r in json.load(f)["records"]}
    out = {}
    for key, mp_id in MATERIALS.items():
        s = records[mp_id]["structure"]
        lattice = np.asarray(s["lattice"], np.float64)  # [3, 3] rows
        positions = np.asarray(s["frac"], np.float64) @ lattice  # [n, 3]
        out[key] = ase.Atoms(symbols=s["species"], positions=positions, cell=lattice, pbc=True)
    rng = np.random.default_rng(7)
    for key, base in RATTLED.items():
        atoms = out[base].copy()
        atoms.positions += rng.normal(scale=RATTLE_ANGSTROM, size=atoms.positions.shape)
        out[key] = atoms
    return out


def _path_to_name(path) -> str:
    """equinox tree path -> the converter's leaf name (``layers.0.linear_1.w[0,0] ...``)."""
    import jax

    text = jax.tree_util.keystr(path)  # .layers[0].linear_1._weights['w[0,0] 89x0e,89x0e']
    text = re.sub(r"\[(\d+)\]", r".\1", text)
    text = re.sub(r"\._weights\['(.*)'\]$", r".\1", text)
    return text.lstrip(".")


def check_converted_leaves(model, npz_path: Path) -> None:
    """The converter's npz holds exactly equinox's leaves, same order, same tree paths."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(model)[0]
    with np.load(npz_path) as data:
        names = list(data.files)
        if len(names) != len(leaves):
            raise AssertionError(f"{npz_path}: {len(names)} arrays, model has {len(leaves)}")
        for name, (path, leaf) in zip(names, leaves, strict=True):
            if _path_to_name(path) != name:
                raise AssertionError(f"tree path {jax.tree_util.keystr(path)} vs npz {name}")
            np.testing.assert_array_equal(np.asarray(leaf), data[name], err_msg=name)
    print(f"  {npz_path.name}: {len(leaves)} leaves identical to equinox's, in tree order")


def node_energies_and_features(model, displacements, species, senders, receivers):
    """Verbatim ``Nequix.node_energies`` (nequix 0.4.5) that also returns each layer's output."""
    import e3nn_jax as e3nn
    import jax
    import jax.numpy as jnp
    from nequix.model import bessel_basis, polynomial_cutoff

    self = model
    features = e3nn.IrrepsArray(
        e3nn.Irreps(f"{self.n_species}x0e"), jax.nn.one_hot(species, self.n_species)
    )
    square_r_norm = jnp.sum(displacements**2, axis=-1)
    r_norm = jnp.where(square_r_norm == 0.0, 0.0, jnp.sqrt(square_r_norm))
    radial_basis = (
        bessel_basis(r_norm, self.radial_basis_size, self.cutoff)
        * polynomial_cutoff(r_norm, self.cutoff, self.radial_polynomial_p)[:, None]
    )
    sh = e3nn.spherical_harmonics(
        e3nn.s2_irreps(self.lmax), displacements, normalize=True, normalization="component"
    )
    per_layer = []
    for layer in self.layers:
        features = layer(features, species, sh, radial_basis, senders, receivers)
        per_layer.append(features.array)
    node_energies = self.readout(features)
    node_energies = node_energies * jax.lax.stop_gradient(self.scale) + jax.lax.stop_gradient(
        self.shift
    )
    node_energies = node_energies + jax.lax.stop_gradient(self.atom_energies[species, None])
    return node_energies.array[:, 0], per_layer


def displacements(graph):
    """r_ij as ``Nequix.__call__`` computes it (zero strain)."""
    import jax.numpy as jnp

    cell_per_edge = jnp.repeat(
        graph.globals["cell"],
        graph.n_edge,
        axis=0,
        total_repeat_length=graph.edges["shifts"].shape[0],
    )
    offsets = jnp.einsum("ij,ijk->ik", graph.edges["shifts"], cell_per_edge)
    positions = graph.nodes["positions"]
    return positions[graph.senders] - positions[graph.receivers] + offsets


def main(argv=None):
    import ase
    import e3nn_jax
    import equinox as eqx
    import jax
    import jraph
    import matscipy
    import nequix
    from nequix.data import atomic_numbers_to_indices, dict_to_graphstuple, preprocess_graph
    from nequix.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source-dir", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--weights-dir", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if jax.default_backend() != "cpu":
        raise SystemExit("run the reference with a CPU jax")

    structures = read_structures(args.data)
    keys = list(structures)
    result = {
        "keys": np.array(keys),
        "material_ids": np.array(
            [*MATERIALS.values(), *(MATERIALS[b] + " rattled" for b in RATTLED.values())]
        ),
        "models": np.array(list(MODELS)),
        "model_tags": np.array(list(MODELS.values())),
        "versions": np.array(
            f"nequix {getattr(nequix, '__version__', '0.4.5')}, jax {jax.__version__}, "
            f"equinox {eqx.__version__}, e3nn-jax {e3nn_jax.__version__}, "
            f"matscipy {matscipy.__version__}, ase {ase.__version__}"
        ),
        "features_basis": np.array("e3nn-jax mul_ir layout, irreps per layer from the json"),
        "feature_atoms": np.array(FEATURE_ATOMS),
    }
    for key, atoms in structures.items():
        result[f"{key}_numbers"] = atoms.get_atomic_numbers().astype(np.int32)
        result[f"{key}_positions"] = atoms.get_positions().astype(np.float64)
        result[f"{key}_lattice"] = np.array(atoms.get_cell()).astype(np.float64)

    for name, tag in MODELS.items():
        print(name)
        model, config = load_model(args.source_dir / f"{name}.nqx", kernel=False)
        check_converted_leaves(model, args.weights_dir / f"{name}.npz")
        atom_indices = atomic_numbers_to_indices(config["atomic_numbers"])
        call = eqx.filter_jit(model)
        features_fn = eqx.filter_jit(node_energies_and_features)
        for key, atoms in structures.items():
            graph = dict_to_graphstuple(
                preprocess_graph(atoms, atom_indices, config["cutoff"], False)
            )
            n, n_edge = len(atoms), int(graph.n_edge[0])
            # padded as NequixCalculator pads (nodes to a multiple of 8, 2 graphs)
            padded = jraph.pad_with_graphs(
                graph, n_node=((n + 8) // 8) * 8, n_edge=((n_edge + 63) // 64) * 64, n_graph=2
            )
            energy, forces, _ = call(padded)
            node_e, per_layer = features_fn(
                model, displacements(padded), padded.nodes["species"], padded.senders,
                padded.receivers,
            )  # fmt: skip
            node_e = np.asarray(node_e)[:n]
            if abs(node_e.sum() - float(energy[0])) > 1e-5 * max(1.0, abs(float(energy[0]))):
                raise AssertionError(f"{key}: copied node_energies disagree with __call__")
            result[f"{key}_n_edges"] = np.array(n_edge)
            result[f"{key}_{tag}_energy"] = np.array(float(energy[0]))
            result[f"{key}_{tag}_node_energies"] = node_e.astype(np.float32)
            result[f"{key}_{tag}_forces"] = np.asarray(forces)[:n].astype(np.float32)
            m = min(n, FEATURE_ATOMS)
            for k, feats in enumerate(per_layer, start=1):
                result[f"{key}_{tag}_features_{k}"] = np.asarray(feats)[:m].astype(np.float32)
            print(
                f"  {key:16s} n={n:3d} edges={n_edge:5d} E={float(energy[0]):.6f} eV"
                f" |F|max={np.abs(np.asarray(forces)[:n]).max():.4f} eV/A"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **result)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
