"""The torch-free checkpoint reader of experiments/convert_sevennet.py."""

from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dtnn_jax.encoder.interface import WEIGHTS_DIR

REPO = Path(__file__).resolve().parents[2]
WHEEL_PTH = Path(
    "/work/dl/sevenn_whl/sevenn/pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth"
)


@pytest.fixture(scope="module")
def converter():
    spec = importlib.util.spec_from_file_location(
        "convert_sevennet", REPO / "experiments" / "convert_sevennet.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Global:
    """Stands for a global (module.name) in a hand-written pickle."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle only accepts callables as reduce functions
        raise NotImplementedError


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class _Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class _TorchLikePickler(pickle._Pickler):
    """Writes the pickle torch.save would write, without torch (globals by name)."""

    def save_global(self, obj, name=None):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            return self.save_global(obj)
        return super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", "FloatStorage"), obj.key, "cpu", obj.numel)
        return None


def _tensor(key, numel, offset, size, stride):
    rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
    return _Reduce(
        rebuild, (_Storage(key, numel), offset, size, stride, False, collections.OrderedDict())
    )


def _write_archive(path, payload, storages):
    buf = io.BytesIO()
    _TorchLikePickler(buf, protocol=2).dump(payload)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for key, arr in storages.items():
            zf.writestr(f"archive/data/{key}", np.asarray(arr, "<f4").tobytes())


def test_reads_tensors_views_and_config(converter, tmp_path):
    raw = np.arange(12, dtype=np.float32)
    payload = {
        "model_state_dict": collections.OrderedDict(
            [
                ("a.weight", _tensor("0", 12, 0, (3, 4), (4, 1))),
                ("a.transposed", _tensor("0", 12, 0, (4, 3), (1, 4))),  # strided view
                ("b.bias", _tensor("0", 12, 5, (2,), (1,))),  # offset into the storage
                ("c.scalar", _tensor("0", 12, 7, (), ())),
            ]
        ),
        "config": {"cutoff": 5.0, "chemical_species": ["H", "O"], "version": "0.9.1"},
    }
    path = tmp_path / "tiny.pth"
    _write_archive(path, payload, {"0": raw})
    checkpoint = converter.load_torch_checkpoint(path)
    state = checkpoint["model_state_dict"]
    np.testing.assert_array_equal(state["a.weight"], raw.reshape(3, 4))
    np.testing.assert_array_equal(state["a.transposed"], raw.reshape(3, 4).T)
    np.testing.assert_array_equal(state["b.bias"], raw[5:7])
    assert float(state["c.scalar"]) == 7.0 and state["a.weight"].dtype == np.float32
    assert checkpoint["config"]["chemical_species"] == ["H", "O"]


def test_refuses_unknown_globals(converter, tmp_path):
    payload = {"evil": _Reduce(_Global("os", "system"), ("echo pwned",))}
    path = tmp_path / "evil.pth"
    _write_archive(path, payload, {})
    with pytest.raises(converter.CheckpointFormatError, match=r"os\.system"):
        converter.load_torch_checkpoint(path)


@pytest.mark.skipif(not WHEEL_PTH.exists(), reason="sevenn 0.13.0 wheel not downloaded here")
def test_reconverting_the_wheel_reproduces_shipped_weights(converter, tmp_path):
    converter.convert(WHEEL_PTH, tmp_path, "sevennet0", None, "0.13.0")
    with np.load(tmp_path / "sevennet0.npz") as new, np.load(WEIGHTS_DIR / "sevennet0.npz") as old:
        assert sorted(new.files) == sorted(old.files)
        for key in old.files:
            np.testing.assert_array_equal(new[key], old[key], err_msg=key)
