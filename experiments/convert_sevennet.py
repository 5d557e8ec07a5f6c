"""Converts a SevenNet checkpoint (`.pth`) into the package's torch-free weight files.

A ``.pth`` written by ``torch.save`` is a zip archive holding ``<prefix>/data.pkl`` (a
pickle whose tensors are "persistent ids" pointing at raw storages) and the storages
themselves as ``<prefix>/data/<key>`` (raw little-endian bytes). This script reads it
*without torch*: a restricted `pickle.Unpickler` accepts only a short allow-list of
globals (tensor rebuild helpers, storage types, ``OrderedDict``, numpy array
reconstruction) and rebuilds every tensor as a numpy array. Anything else in the pickle is
refused with an error naming the global.

Outputs (default ``dtnn_jax/weights/``):

* ``<name>.npz``: float32 parameters and the stored Wigner-3j buffers, keyed by the
  checkpoint's own state-dict names (e.g. ``1_convolution.weight_nn.layer2.weight``);
* ``<name>.json``: the architecture (cutoff, switching function, radial basis, irreps per
  layer, convolution denominators, species map Z -> index, energy shift/scale, ...) plus
  provenance (sevenn version, sha256 of the source file, converter version);
* ``LICENSE-SevenNet.md``: the MIT notice of the ``sevenn`` wheel and the provenance.

The converter copies parameters as they are stored. It does not re-sort the radial-MLP output
columns or re-sign old Wigner-3j buffers the way ``sevenn``'s backward-compatibility code
does. The JAX model reads the stored column order and buffers as they are (the json
records ``instruction_order``), and the product of an old-sign buffer with its weights is
the same as the product after sevenn's re-signing.

Usage::

    python experiments/convert_sevennet.py                      # pip download sevenn==0.13.0
    python experiments/convert_sevennet.py --wheel-dir /work/dl/sevenn_whl
    python experiments/convert_sevennet.py --pth path/to/checkpoint.pth --name sevennet0
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CONVERTER_VERSION = "1.0.0"
DEFAULT_SEVENN_VERSION = "0.13.0"
CHECKPOINTS = {
    "sevennet0": "sevenn/pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "sevennet_l3i5": "sevenn/pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth",
    "sevennet_mf0": "sevenn/pretrained_potentials/SevenNet_MF_0/checkpoint_sevennet_mf_0.pth",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "dtnn_jax" / "weights"

# torch storage class name -> numpy dtype (little-endian, as torch.save writes them).
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointFormatError(ValueError):
    """The checkpoint is not a torch zip pickle this converter understands."""


class _Storage:
    """A torch storage type seen in the pickle: only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, *_args):
    """numpy version of ``torch._utils._rebuild_tensor_v2`` (a strided view of a storage)."""
    del requires_grad
    size = tuple(int(s) for s in size)
    if len(size) == 0:
        return np.array(storage[storage_offset], dtype=storage.dtype)
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:],
        shape=size,
        strides=tuple(int(s) * itemsize for s in stride),
        writeable=False,
    )
    return np.array(view, copy=True)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_args):
    """numpy version of ``torch._utils._rebuild_parameter``: a parameter is its data."""
    del requires_grad, backward_hooks
    return data


def _torch_device(name="cpu", *_args):
    return str(name)


def _numpy_reconstruct():
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _codecs_encode(obj, encoding="latin1"):
    import codecs

    return codecs.encode(obj, encoding)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for ``torch.save`` archives that never imports torch or arbitrary code."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file, encoding="utf-8")
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch", "device"): _torch_device,
            ("numpy", "dtype"): np.dtype,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy.core.multiarray", "scalar"): _numpy_scalar(),
            ("numpy._core.multiarray", "scalar"): _numpy_scalar(),
            ("_codecs", "encode"): _codecs_encode,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("builtins", "slice"): slice,
        }
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(name)
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise CheckpointFormatError(
            f"refusing to unpickle global {module}.{name}: not on the converter's allow-list"
        )

    def persistent_load(self, pid):
        # pid = ('storage', storage_type, key, location, numel)
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointFormatError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _Storage):
            raise CheckpointFormatError(f"unexpected storage type {storage_type!r}")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            arr = np.frombuffer(raw, dtype=storage_type.dtype)
            if arr.size != numel:
                raise CheckpointFormatError(
                    f"storage {key}: {arr.size} elements on disk, {numel} expected"
                )
            self._storages[key] = arr
        return self._storages[key]


def _numpy_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import scalar
    return scalar


def load_torch_checkpoint(path: Path) -> dict:
    """Reads a ``torch.save`` zip archive into python objects with numpy tensors."""
    with zipfile.ZipFile(path) as archive:
        pkl_names = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pkl_names) != 1:
            raise CheckpointFormatError(f"{path}: expected one */data.pkl, found {pkl_names}")
        prefix = pkl_names[0][: -len("/data.pkl")]
        byteorder_name = f"{prefix}/byteorder"
        if byteorder_name in archive.namelist():
            byteorder = archive.read(byteorder_name).decode().strip()
            if byteorder != "little":
                raise CheckpointFormatError(f"{path}: byte order {byteorder!r} not supported")
        with archive.open(pkl_names[0]) as f:
            return _RestrictedUnpickler(f, archive, prefix).load()


def _to_jsonable(obj):
    """Config values -> json (numpy arrays become lists)."""
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3])


def _parse_irreps(text: str) -> list[tuple[int, int]]:
    """'128x0e+64x1e' -> [(128, 0), (64, 1)] (SO(3) models: parity must be 'e')."""
    out = []
    for term in text.replace(" ", "").split("+"):
        mul, ir = term.split("x") if "x" in term else ("1", term)
        if ir[-1] != "e":
            raise CheckpointFormatError(f"irreps {text!r}: only even ('e') irreps expected")
        out.append((int(mul), int(ir[:-1])))
    return out


def _irreps_str(layer_irreps: list[tuple[int, int]]) -> str:
    return "+".join(f"{mul}x{l}e" for mul, l in layer_irreps)


def _shift_scale(config: dict, type_map: dict[int, int]) -> tuple[list[float], list[float]]:
    """Per-species (index order) energy shift and scale, expanded from scalars if needed."""
    n = len(type_map)
    out = []
    for key in ("shift", "scale"):
        value = config[key]
        value = np.asarray(value, dtype=np.float64).reshape(-1).tolist()
        if len(value) == 1:
            value = value * n
        if len(value) != n:
            raise CheckpointFormatError(f"config[{key!r}] has {len(value)} entries, {n} species")
        out.append(value)
    return out[0], out[1]


def architecture_from_checkpoint(checkpoint: dict, state: dict) -> dict:
    """Extracts the architecture of a NequIP-type SevenNet model from config + state dict."""
    config = checkpoint["config"]
    version = str(config.get("version", "0.0.0"))
    if config.get("interaction_type", "nequip") != "nequip":
        raise CheckpointFormatError(f"interaction_type {config['interaction_type']!r}")
    if config.get("use_modality", False):
        raise CheckpointFormatError("multi-fidelity (use_modality) checkpoints are not supported")
    if config.get("is_parity", False):
        raise CheckpointFormatError("is_parity=True checkpoints are not supported by this port")
    sc_type = config.get("self_connection_type", "nequip")
    if sc_type != "linear":
        raise CheckpointFormatError(f"self_connection_type {sc_type!r} (only 'linear')")
    if config.get("use_bias_in_linear", False):
        raise CheckpointFormatError("use_bias_in_linear=True is not supported")
    if config.get("readout_as_fcn", False):
        raise CheckpointFormatError("readout_as_fcn=True is not supported")

    n_layers = int(config["num_convolution_layer"])
    mul = int(config["channel"])
    lmax = int(config["lmax"])
    if int(config.get("lmax_node", -1)) > 0:
        lmax = int(config["lmax_node"])
    lmax_edge = lmax if int(config.get("lmax_edge", -1)) <= 0 else int(config["lmax_edge"])
    if config.get("irreps_manual", False):
        irreps = [_parse_irreps(layer) for layer in config["irreps_manual"]]
    else:
        irreps = [[(mul, 0)]]
        for t in range(n_layers):
            lm = 0 if t == n_layers - 1 else lmax
            irreps.append([(mul, l) for l in range(lm + 1)])

    type_map = {int(z): int(i) for z, i in config["_type_map"].items()}
    shift, scale = _shift_scale(config, type_map)
    denominators = []
    for t in range(n_layers):
        d = np.asarray(state[f"{t}_convolution.denominator"]).reshape(-1)
        denominators.append(float(d[0]))

    rbf = config["radial_basis"]
    cutoff_fn = config["cutoff_function"]
    if rbf["radial_basis_name"] != "bessel":
        raise CheckpointFormatError(f"radial basis {rbf['radial_basis_name']!r}")
    cutoff_name = cutoff_fn["cutoff_function_name"]
    if cutoff_name not in ("XPLOR", "poly_cut"):
        raise CheckpointFormatError(f"cutoff function {cutoff_name!r}")
    act_radial = config.get("act_radial", "silu")
    if act_radial != "silu" or config["act_scalar"].get("e") != "silu":
        raise CheckpointFormatError("only SiLU activations are supported")
    if config["act_gate"].get("e") != "silu":
        raise CheckpointFormatError("only SiLU gates are supported")
    major_minor = _version_tuple(version)
    # sevenn < 0.11 wrote the radial-MLP output columns in the unsorted tensor-product
    # instruction order (sevenn/scripts/backward_compatibility.py::sort_old_convolution).
    suffix = version.split(".")[3] if len(version.split(".")) == 4 else ""
    unsorted = major_minor < (0, 11, 0) or (major_minor == (0, 11, 0) and suffix == "dev0")
    return {
        "model_name": None,
        "sevenn_checkpoint_version": version,
        "cutoff_angstrom": float(config["cutoff"]),
        "cutoff_function": "xplor" if cutoff_name == "XPLOR" else "polynomial",
        "cutoff_on_angstrom": float(cutoff_fn["cutoff_on"]) if cutoff_name == "XPLOR" else None,
        "polynomial_cutoff_p": float(cutoff_fn.get("poly_cut_p_value", 6)),
        "n_radial_basis": int(rbf["bessel_basis_num"]),
        "radial_hidden": [int(h) for h in config["weight_nn_hidden_neurons"]],
        "lmax_edge": lmax_edge,
        "normalize_sph": bool(config.get("_normalize_sph", False)),
        "num_layers": n_layers,
        "node_irreps": [_irreps_str(layer) for layer in irreps],
        "conv_denominators": denominators,
        "num_species": int(config["_number_of_species"]),
        "type_map": {str(z): i for z, i in sorted(type_map.items())},
        "chemical_species": list(config["chemical_species"]),
        "energy_shift": shift,
        "energy_scale": scale,
        "activation": "silu",
        "instruction_order": "unsorted" if unsorted else "sorted",
    }


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _license_text(wheel_dir: Path | None) -> str:
    if wheel_dir is None:
        return ""
    for pattern in ("*.dist-info/licenses/LICENSE*", "*.dist-info/LICENSE*"):
        hits = sorted(wheel_dir.glob(pattern))
        if hits:
            return hits[0].read_text()
    return ""


def _fetch_wheel(version: str, workdir: Path) -> Path:
    """`pip download --no-deps sevenn==<version>` and unzip the wheel into workdir."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            f"sevenn=={version}",
            "-d",
            str(workdir),
        ],
        check=True,
    )
    wheels = sorted(workdir.glob("sevenn-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download produced no sevenn wheel in {workdir}")
    out = workdir / "wheel"
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extractall(out)
    return out


def convert(pth: Path, out_dir: Path, name: str, wheel_dir: Path | None, sevenn_version: str):
    """Converts one checkpoint; returns (params dict, architecture dict)."""
    checkpoint = load_torch_checkpoint(pth)
    state = checkpoint["model_state_dict"]
    arch = architecture_from_checkpoint(checkpoint, state)
    arch["model_name"] = name
    params = {}
    for key, value in state.items():
        arr = np.asarray(value)
        # output masks are e3nn bookkeeping and empty tensors (no bias) carry nothing.
        if arr.dtype.kind == "f" and arr.size > 0 and not key.endswith("output_mask"):
            params[key] = arr.astype(np.float32)
    meta = {
        "format": "dtnn_jax.sevennet_weights",
        "converter_version": CONVERTER_VERSION,
        "sevenn_wheel_version": sevenn_version,
        "source_file": pth.name,
        "source_sha256": _file_sha256(pth),
        "n_parameters_trainable": int(
            sum(v.size for k, v in params.items() if "_w3j_" not in k and "denominator" not in k)
        ),
        "architecture": arch,
        "sevenn_config": _to_jsonable(checkpoint["config"]),
        "epoch": _to_jsonable(checkpoint.get("epoch")),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / f"{name}.npz", **params)
    with open(out_dir / f"{name}.json", "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False)
        f.write("\n")
    license_text = _license_text(wheel_dir)
    notice = [
        "# SevenNet pretrained weights: licence and provenance",
        "",
        f"`{name}.npz` holds the parameters of the pretrained SevenNet checkpoint "
        f"`{pth.name}` (sha256 `{meta['source_sha256']}`), shipped in the `sevenn` "
        f"{sevenn_version} wheel on PyPI (https://github.com/MDIL-SNU/SevenNet), converted "
        f"to numpy by `experiments/convert_sevennet.py` (converter {CONVERTER_VERSION}) "
        "without modification of the values (float32).",
        "",
        "SevenNet: Park et al., J. Chem. Theory Comput. 20, 4857 (2024). SevenNet-0 was "
        "trained on MPtrj (Deng et al., Nat. Mach. Intell. 5, 1031 (2023)).",
        "",
        "The `sevenn` package and its pretrained weights are distributed under the MIT "
        "licence, reproduced below.",
        "",
        "```",
        license_text.strip() or "(licence file not found in the wheel; see upstream)",
        "```",
        "",
    ]
    (out_dir / "LICENSE-SevenNet.md").write_text("\n".join(notice))
    return params, meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pth", type=Path, help="checkpoint file (overrides --wheel-dir)")
    parser.add_argument("--wheel-dir", type=Path, help="an extracted sevenn wheel")
    parser.add_argument("--model", default="sevennet0", choices=sorted(CHECKPOINTS))
    parser.add_argument("--name", help="output file stem (default: --model)")
    parser.add_argument("--sevenn-version", default=DEFAULT_SEVENN_VERSION)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    name = args.name or args.model
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = args.wheel_dir
        if args.pth is None and wheel_dir is None:
            wheel_dir = _fetch_wheel(args.sevenn_version, Path(tmp))
        pth = args.pth or wheel_dir / CHECKPOINTS[args.model]
        _, meta = convert(pth, args.out_dir, name, wheel_dir, args.sevenn_version)
    arch = meta["architecture"]
    print(
        f"wrote {args.out_dir / (name + '.npz')}: {meta['n_parameters_trainable']} parameters, "
        f"irreps {arch['node_irreps']}, sha256 {meta['source_sha256'][:12]}..."
    )


if __name__ == "__main__":
    main()
