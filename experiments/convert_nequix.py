"""Converts a Nequix checkpoint (``.nqx``) into the package's equinox-free weight files.

A ``.nqx`` written by ``nequix.model.save_model`` is one line of JSON (the training config:
cutoff, atomic numbers, irreps, layers, energy shift and scale, ...) followed by
``equinox.tree_serialise_leaves`` of the ``nequix.model.Nequix`` module: every array leaf
of the module's pytree, one after another, each written by ``numpy.save``. This script reads
it with numpy only (no equinox, no nequix): it parses the header, then calls `numpy.load`
on the same file object until the end of the file, and names the leaves from the tree order
derived below from ``nequix/model.py`` (nequix 0.4.5, the code of the checkpoints of
atomicarchitects/nequix commit 0ffdf881603d2c97f9105c64c3ec2df74dc1c224).

Tree order of the leaves (equinox flattens a Module's non-static dataclass fields in
declaration order; lists in order; dicts by sorted key; ``None`` has no leaf; fields marked
``eqx.field(static=True)`` and the ``Sort`` module hold no leaf):

1. ``Nequix.atom_energies`` [n_species]: isolated-atom energies (eV), species index order;
2. ``Nequix.layers[k]`` for k = 0 .. n_layers - 1, each a ``NequixConvolution``:

   a. ``radial_mlp.layers[i].weights`` [in, out] for i = 0 .. radial_mlp_layers (nequix's own
      ``Linear``; ``bias`` is None: ``use_bias=False``), sizes
      ``[radial_basis_size] + [radial_mlp_size] * radial_mlp_layers + [n_tp_irreps]``;
   b. ``linear_1._weights`` (``e3nn.equinox.Linear``, input irreps -> input irreps),
   c. ``linear_2._weights`` (sorted tensor-product irreps -> output irreps + gate scalars),
   d. ``skip._weights`` (input irreps -> output irreps + gate scalars, ``force_irreps_out``):
      each a dict ``{"w[i_in,i_out] <mul_in>x<ir>,<mul_out>x<ir>": [mul_in, mul_out]}``, one
      entry per pair of equal irreps of the regrouped input and output, in sorted key order;
   e. ``layer_norm.affine_weight[i]`` [mul_i], one per irrep of the output + gate irreps
      (``RMSLayerNorm`` with ``centering=False``: ``affine_bias`` is None); absent without
      ``layer_norm``;

3. ``Nequix.readout._weights``: ``{"w[0,0] <mul>x0e,1x0e": [mul, 1]}``.

The published files carry more leaves after the model's (nequix-oam-1: 209 zero-dimensional
ones, the training config serialised as a pytree); ``nequix.model.load_model`` never reads
them. The converter requires them to be zero-dimensional, so a wrong tree order (a parameter
array left over) is an error, and records their count.

Outputs (default ``dtnn_jax/weights/``):

* ``<name>.npz``: the model's leaves (float32, as stored), keyed by their tree path, e.g.
  ``layers.1.linear_2.w[1,1] 352x1o,64x1o``, in tree order;
* ``<name>.json``: the architecture the JAX forward pass needs, the leaf order, provenance
  (source file, sha256, repository and commit, licence, citation) and the original header;
* ``LICENSE-Nequix.md``: the MIT licence of atomicarchitects/nequix and the provenance.

Usage::

    python experiments/convert_nequix.py                      # the two shipped models
    python experiments/convert_nequix.py --models nequix-mp-1-pft --out-dir /tmp/nqx
    python experiments/convert_nequix.py --nqx path/to/model.nqx --name my-model
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import numpy as np

CONVERTER_VERSION = "1.0.0"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE_DIR = Path("/work/shared/weights/nequix")
DEFAULT_OUT = REPO_ROOT / "dtnn_jax" / "weights"
SHIPPED_MODELS = ("nequix-oam-1", "nequix-oam-1-pft")
SOURCE_REPOSITORY = "https://github.com/atomicarchitects/nequix"
SOURCE_COMMIT = "0ffdf881603d2c97f9105c64c3ec2df74dc1c224"
MODEL_CODE = "nequix 0.4.5 (PyPI wheel), nequix/model.py"
CITATION = (
    "T. Koker, M. Kotak, T. Smidt, Training a foundation model for materials on a budget "
    "(Nequix), arXiv:2508.16067 (2025); T. Koker et al., phonon fine-tuning (PFT), "
    "arXiv:2601.07742 (2026)."
)
TRAINING_DATA = {
    "nequix-oam-1": "OMat24 + sAlex + MPtrj",
    "nequix-oam-1-pft": "OMat24 + sAlex + MPtrj, then phonon fine-tuning (PBE MDR phonons)",
    "nequix-mp-1-pft": "MPtrj, then phonon fine-tuning (PBE MDR phonons)",
}


class NqxFormatError(ValueError):
    """The file is not a Nequix checkpoint of the architecture this converter knows."""


# ---------------------------------------------------------------------------------------
# Irreps bookkeeping (pure python, the subset of e3nn's rules nequix relies on)
# ---------------------------------------------------------------------------------------
# An irrep is (l, p) with parity p = +1 ('e') or -1 ('o'); an irreps list is [(mul, (l, p))].


def parse_irreps(text: str) -> list[tuple[int, tuple[int, int]]]:
    """'128x0e + 64x1o' -> [(128, (0, 1)), (64, (1, -1))]."""
    out = []
    for term in text.replace(" ", "").split("+"):
        match = re.fullmatch(r"(?:(\d+)x)?(\d+)([eo])", term)
        if not match:
            raise NqxFormatError(f"cannot parse irreps {text!r} (term {term!r})")
        mul = int(match.group(1) or 1)
        out.append((mul, (int(match.group(2)), 1 if match.group(3) == "e" else -1)))
    return out


def irrep_str(ir: tuple[int, int]) -> str:
    return f"{ir[0]}{'e' if ir[1] == 1 else 'o'}"


def irreps_str(irreps) -> str:
    return "+".join(f"{mul}x{irrep_str(ir)}" for mul, ir in irreps)


def _irrep_sort_key(ir: tuple[int, int]) -> tuple[int, int]:
    """e3nn's order of irreps: by l, the 'natural' parity (-1)^l first."""
    l, p = ir
    return (l, -p * (-1) ** l)


def sort_irreps(irreps) -> list:
    """e3nn ``Irreps.sort().irreps``: stable sort by irrep (ties keep their order)."""
    order = sorted(range(len(irreps)), key=lambda i: (_irrep_sort_key(irreps[i][1]), i))
    return [irreps[i] for i in order]


def regroup(irreps) -> list:
    """e3nn ``Irreps.regroup()``: sort, merge neighbours of equal irrep, drop zero mul."""
    out: list = []
    for mul, ir in sort_irreps(irreps):
        if mul == 0:
            continue
        if out and out[-1][1] == ir:
            out[-1] = (out[-1][0] + mul, ir)
        else:
            out.append((mul, ir))
    return out


def irrep_product(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Irreps of a (x) b, l ascending (e3nn ``Irrep.__mul__``)."""
    return [(l, a[1] * b[1]) for l in range(abs(a[0] - b[0]), a[0] + b[0] + 1)]


def sh_irreps(lmax: int) -> list:
    """``e3nn.s2_irreps(lmax)``: 1x0e + 1x1o + 1x2e + ... (true spherical harmonics)."""
    return [(1, (l, (-1) ** l)) for l in range(lmax + 1)]


def tensor_product_irreps(irreps_in, irreps_sh, irreps_out) -> list:
    """Output irreps of nequix's 'uvu' convolution paths, in instruction order (unsorted)."""
    allowed = {ir for _, ir in irreps_out}
    paths = []
    for mul, ir_in in irreps_in:
        for _, ir_sh in irreps_sh:
            for ir in irrep_product(ir_in, ir_sh):
                if ir in allowed:
                    paths.append((mul, ir))
    return paths


def linear_weight_names(irreps_in, irreps_out, force_irreps_out: bool = False) -> list:
    """``e3nn.equinox.Linear`` weight names and shapes, in pytree (sorted key) order.

    Returns:
        [(name, (mul_in, mul_out))], name = ``"w[i_in,i_out] <mul_in>x<ir>,<mul_out>x<ir>"``.
    """
    irreps_in = regroup(irreps_in)
    if not force_irreps_out:  # e3nn: irreps_out.filter(keep=irreps_in).simplify()
        present = {ir for _, ir in irreps_in}
        kept = [(mul, ir) for mul, ir in irreps_out if ir in present]
        irreps_out = []
        for mul, ir in kept:
            if mul == 0:
                continue
            if irreps_out and irreps_out[-1][1] == ir:
                irreps_out[-1] = (irreps_out[-1][0] + mul, ir)
            else:
                irreps_out.append((mul, ir))
    names = []
    for i_in, (mul_in, ir_in) in enumerate(irreps_in):
        for i_out, (mul_out, ir_out) in enumerate(irreps_out):
            if ir_in == ir_out:
                name = (
                    f"w[{i_in},{i_out}] {mul_in}x{irrep_str(ir_in)},{mul_out}x{irrep_str(ir_out)}"
                )
                names.append((name, (mul_in, mul_out)))
    return sorted(names)  # jax flattens a dict in sorted key order


# ---------------------------------------------------------------------------------------
# The Nequix module tree
# ---------------------------------------------------------------------------------------


def layer_irreps(header: dict) -> list[str]:
    """Node irreps: the one-hot input, then the output of each interaction layer."""
    hidden = parse_irreps(header["hidden_irreps"])
    n_layers = int(header["n_layers"])
    out = [[(len(header["atomic_numbers"]), (0, 1))]]
    for k in range(n_layers):
        out.append(hidden if k < n_layers - 1 else [(m, ir) for m, ir in hidden if ir == (0, 1)])
    return [irreps_str(regroup(irreps)) for irreps in out]


def gated_irreps(irreps_out) -> list:
    """Output irreps plus one gate scalar per non-scalar channel, regrouped (nequix)."""
    n_scalar = sum(mul for mul, ir in irreps_out if ir == (0, 1))
    n_gates = sum(mul for mul, _ in irreps_out) - n_scalar
    return regroup([*irreps_out, (n_gates, (0, 1))])


def leaf_spec(header: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the ``Nequix`` module's array leaves, in tree order."""
    _check_supported(header)
    n_species = len(header["atomic_numbers"])
    irreps = [parse_irreps(text) for text in layer_irreps(header)]
    irreps_sh = sh_irreps(int(header["lmax"]))
    spec: list[tuple[str, tuple[int, ...]]] = [("atom_energies", (n_species,))]
    for k in range(int(header["n_layers"])):
        irreps_in, irreps_out = irreps[k], irreps[k + 1]
        tp = tensor_product_irreps(irreps_in, irreps_sh, irreps_out)
        n_tp_irreps = sum(mul for mul, _ in tp)
        out_gated = gated_irreps(irreps_out)
        sizes = (
            [int(header["radial_basis_size"])]
            + [int(header["radial_mlp_size"])] * int(header["radial_mlp_layers"])
            + [n_tp_irreps]
        )
        prefix = f"layers.{k}"
        for i in range(len(sizes) - 1):
            spec.append((f"{prefix}.radial_mlp.layers.{i}.weights", (sizes[i], sizes[i + 1])))
        for module, w_in, w_out, force in (
            ("linear_1", irreps_in, irreps_in, False),
            ("linear_2", sort_irreps(tp), out_gated, False),
            ("skip", irreps_in, out_gated, True),
        ):
            for name, shape in linear_weight_names(w_in, w_out, force):
                spec.append((f"{prefix}.{module}.{name}", shape))
        if header["layer_norm"]:
            for i, (mul, _) in enumerate(out_gated):
                spec.append((f"{prefix}.layer_norm.affine_weight.{i}", (mul,)))
    for name, shape in linear_weight_names(irreps[-1], [(1, (0, 1))]):
        spec.append((f"readout.{name}", shape))
    return spec


def _check_supported(header: dict) -> None:
    required = (
        "atomic_numbers",
        "cutoff",
        "hidden_irreps",
        "lmax",
        "n_layers",
        "radial_basis_size",
        "radial_mlp_size",
        "radial_mlp_layers",
        "radial_polynomial_p",
        "index_weights",
        "layer_norm",
        "shift",
        "scale",
        "avg_n_neighbors",
    )
    missing = [key for key in required if key not in header]
    if missing:
        raise NqxFormatError(f"the .nqx header lacks {missing}")
    if header["index_weights"]:
        raise NqxFormatError("index_weights=True (per-species skip weights) is not supported")
    if sorted(header["atomic_numbers"]) != list(header["atomic_numbers"]):
        raise NqxFormatError("atomic_numbers must be sorted (nequix's species index order)")


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


def read_nqx(path: str | Path) -> tuple[dict, list[np.ndarray]]:
    """Reads a ``.nqx``: (header config dict, every numpy leaf in file order)."""
    with open(path, "rb") as f:
        first = f.readline()
        try:
            header = json.loads(first.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise NqxFormatError(f"{path}: the first line is not a JSON config") from err
        leaves = []
        while True:
            start = f.tell()
            if not f.read(1):
                break
            f.seek(start)
            try:
                leaves.append(np.load(f, allow_pickle=False))
            except ValueError as err:
                raise NqxFormatError(f"{path}: no .npy record at byte {start}") from err
    return header, leaves


def name_leaves(header: dict, leaves: list[np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Maps the file's leaves onto the module tree; checks every shape.

    Returns:
        ({name: array} in tree order, number of trailing zero-dimensional leaves ignored).
    """
    spec = leaf_spec(header)
    if len(leaves) < len(spec):
        raise NqxFormatError(f"{len(leaves)} leaves in the file, the model has {len(spec)}")
    params = {}
    for (name, shape), leaf in zip(spec, leaves, strict=False):
        if leaf.shape != shape:
            raise NqxFormatError(f"leaf {name}: shape {leaf.shape}, the config needs {shape}")
        if leaf.dtype.kind != "f":
            raise NqxFormatError(f"leaf {name}: dtype {leaf.dtype}, expected floating point")
        params[name] = leaf
    trailing = leaves[len(spec) :]
    arrays = [i for i, leaf in enumerate(trailing) if leaf.ndim > 0]
    if arrays:
        raise NqxFormatError(
            f"{len(arrays)} array leaves after the model's {len(spec)} (first: shape "
            f"{trailing[arrays[0]].shape}): the tree order does not match this checkpoint"
        )
    return params, len(trailing)


def _check_atom_energies(header: dict, atom_energies: np.ndarray) -> None:
    """The header's isolated-atom energies (if any) must equal the first leaf."""
    table = header.get("atom_energies")
    if not table:
        return
    expected = np.array([table[str(z)] for z in header["atomic_numbers"]], np.float64)
    err = float(np.abs(expected - atom_energies.astype(np.float64)).max())
    if err > 1e-5:
        raise NqxFormatError(f"atom_energies leaf differs from the header by {err:.3g} eV")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def architecture(header: dict, name: str) -> dict:
    """The architecture block of the json, read by ``NequixConfig.from_json``."""
    return {
        "model_name": name,
        "cutoff_angstrom": float(header["cutoff"]),
        "n_radial_basis": int(header["radial_basis_size"]),
        "radial_polynomial_p": float(header["radial_polynomial_p"]),
        "radial_mlp_hidden": [int(header["radial_mlp_size"])] * int(header["radial_mlp_layers"]),
        "lmax_edge": int(header["lmax"]),
        "hidden_irreps": irreps_str(parse_irreps(header["hidden_irreps"])),
        "n_layers": int(header["n_layers"]),
        "node_irreps": layer_irreps(header),
        "avg_n_neighbors": float(header["avg_n_neighbors"]),
        "energy_scale": float(header["scale"]),
        "energy_shift_ev": float(header["shift"]),
        "species_z": [int(z) for z in header["atomic_numbers"]],
        "layer_norm": bool(header["layer_norm"]),
        "index_weights": bool(header["index_weights"]),
        "activation": "silu (e3nn-jax normalised), gates silu, radial MLP plain silu",
    }


def convert(nqx: Path, out_dir: Path, name: str) -> tuple[dict, dict]:
    """Converts one ``.nqx``; returns (params {name: float32 array}, json metadata)."""
    header, leaves = read_nqx(nqx)
    params, n_trailing = name_leaves(header, leaves)
    _check_atom_energies(header, params["atom_energies"])
    params = {key: value.astype(np.float32) for key, value in params.items()}
    meta = {
        "format": "dtnn_jax.nequix_weights",
        "converter_version": CONVERTER_VERSION,
        "source_file": nqx.name,
        "source_sha256": file_sha256(nqx),
        "source_repository": SOURCE_REPOSITORY,
        "source_commit": SOURCE_COMMIT,
        "source_folder": "models/",
        "model_code": MODEL_CODE,
        "licence": "MIT",
        "licence_file": "LICENSE-Nequix.md",
        "citation": CITATION,
        "training_data": TRAINING_DATA.get(name, "see the original header"),
        "n_parameters": int(sum(v.size for v in params.values())),
        "n_model_leaves": len(params),
        "n_trailing_scalar_leaves_ignored": n_trailing,
        "architecture": architecture(header, name),
        "leaf_order": list(params),
        "nequix_header": header,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / f"{name}.npz", **params)
    with open(out_dir / f"{name}.json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return params, meta


def write_license(out_dir: Path, source_dir: Path, metas: list[dict]) -> None:
    """``LICENSE-Nequix.md``: the MIT text of atomicarchitects/nequix plus provenance."""
    license_file = source_dir / "LICENSE"
    text = license_file.read_text().strip() if license_file.exists() else ""
    if not text:
        raise FileNotFoundError(f"{license_file} not found: the licence must ship with weights")
    rows = [
        f"| `{m['architecture']['model_name']}.npz` | `{m['source_file']}` | "
        f"`{m['source_sha256']}` | {m['training_data']} |"
        for m in metas
    ]
    notice = [
        "# Nequix pretrained weights: licence and provenance",
        "",
        "The `nequix-*.npz` files hold the parameters of the pretrained Nequix models of "
        f"{SOURCE_REPOSITORY} (commit `{SOURCE_COMMIT}`, folder `models/`), converted to "
        f"numpy by `experiments/convert_nequix.py` (converter {CONVERTER_VERSION}) without "
        "modification of the values (float32). The model code they belong to is "
        f"{MODEL_CODE}.",
        "",
        "| file | source | source sha256 | trained on |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Cite: {CITATION}",
        "",
        "The repository, its code and the model files it hosts are distributed under the MIT "
        "licence, reproduced below.",
        "",
        "```",
        text,
        "```",
        "",
    ]
    (out_dir / "LICENSE-Nequix.md").write_text("\n".join(notice))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source-dir", type=Path, default=DEFAULT_SOURCE_DIR)
    parser.add_argument("--models", nargs="+", default=list(SHIPPED_MODELS))
    parser.add_argument("--nqx", type=Path, help="one checkpoint file (overrides --models)")
    parser.add_argument("--name", help="output stem for --nqx (default: the file stem)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-license", action="store_true", help="do not write the notice")
    args = parser.parse_args(argv)
    jobs = (
        [(args.nqx, args.name or args.nqx.stem)]
        if args.nqx
        else [(args.source_dir / f"{m}.nqx", m) for m in args.models]
    )
    metas = []
    for nqx, name in jobs:
        _, meta = convert(nqx, args.out_dir, name)
        metas.append(meta)
        print(
            f"wrote {args.out_dir / (name + '.npz')}: {meta['n_parameters']} parameters in "
            f"{meta['n_model_leaves']} leaves (+{meta['n_trailing_scalar_leaves_ignored']} "
            f"trailing scalars ignored), irreps {meta['architecture']['node_irreps'][1]}, "
            f"sha256 {meta['source_sha256'][:12]}..."
        )
    if not args.no_license:
        write_license(args.out_dir, nqx.parent if args.nqx else args.source_dir, metas)


if __name__ == "__main__":
    main()
