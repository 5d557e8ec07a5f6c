# ruff: noqa: E501  (the case table reads best one case per line)
"""The command line's failure modes, driven as a subprocess, one case per row of a table.

Every user error must be one message on stderr with exit status 2 (never a traceback), and
no computed result may be lost: destinations are checked (or created) before the work,
partial inputs still give results. The cases are the ones a new user hit in the first hour
(issue 12); each fails without its fix.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import write as ase_write
from pymatgen.core import Lattice, Structure

from dtnn_jax.inference import save_bundle
from tests.properties.tiny_model import tiny_bundle

ROOT = Path(__file__).resolve().parents[2]
CACHE = os.environ.get("DTNN_JAX_TEST_CACHE", str(ROOT / ".jax_cache"))


def _mgo() -> Structure:
    return Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Every input of the table, good and bad, written once."""
    d = tmp_path_factory.mktemp("inputs")
    out = {"dir": d}
    good = d / "mgo.cif"
    _mgo().to(filename=str(good))
    out["good"] = good
    nacl = Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]], cell=[5.6] * 3, pbc=True)
    out["frames"] = d / "two.extxyz"
    ase_write(out["frames"], [nacl, nacl * (1, 1, 2)], format="extxyz")
    out["blocks"] = d / "two_blocks.cif"
    out["blocks"].write_text(
        good.read_text().replace("data_", "data_first_", 1)
        + "\n"
        + good.read_text().replace("data_", "data_second_", 1)
    )
    out["molecule"] = d / "water.xyz"
    ase_write(out["molecule"], Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [0, 0.96, 0]]))
    slab = Structure(Lattice.tetragonal(4.2, 30.0), ["Mg", "O"], [[0, 0, 0.5], [0.5, 0.5, 0.5]])
    out["slab"] = d / "slab.json"
    out["slab"].write_text(json.dumps(slab.as_dict()))
    out["lonely"] = d / "lonely.json"
    lonely = Structure(Lattice.cubic(12.0), ["Na"], [[0, 0, 0]])
    out["lonely"].write_text(json.dumps(lonely.as_dict()))
    out["garbage"] = d / "POSCAR_garbage"
    out["garbage"].write_bytes(bytes(range(256)) * 4)
    out["empty_dir"] = d / "empty"
    out["empty_dir"].mkdir()
    pool = d / "pool"
    pool.mkdir()
    _mgo().to(filename=str(pool / "mgo.cif"))
    (pool / "README.txt").write_text("crystals for the screen\n")
    (pool / "older").mkdir()
    out["pool"] = pool
    out["gaps_bom"] = d / "gaps.csv"
    out["gaps_bom"].write_bytes("id,band_gap_ev\r\nmgo,7.8\r\n".encode("utf-8-sig"))
    out["a_file"] = d / "plain_file"  # a directory cannot be created below a file
    out["a_file"].write_text("x")
    out["labelled_bad"] = d / "labelled.json"
    out["labelled_bad"].write_text(
        json.dumps(
            [
                {"id": "ok-1", "structure": _mgo().as_dict(), "e_total": np.eye(3).tolist()},
                {"id": "no-structure", "e_total": np.eye(3).tolist()},
                {"id": "bad-tensor", "structure": _mgo().as_dict(), "e_total": [[1, 2]]},
            ]
        )
    )
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """The tiny model's bundle, and copies damaged in each way a bundle can be."""
    d = tmp_path_factory.mktemp("bundles")
    good = save_bundle(tiny_bundle(), d / "good")
    meta = json.loads((good / "bundle.json").read_text())
    with np.load(good / "params.npz") as f:
        arrays = {k: f[k] for k in f.files}
    out = {"good": good}

    def damaged(name, meta_change=None, arrays_change=None):
        path = d / name
        path.mkdir()
        m = json.loads(json.dumps(meta))
        a = dict(arrays)
        if meta_change:
            meta_change(m)
        if arrays_change:
            arrays_change(a)
        (path / "bundle.json").write_text(json.dumps(m))
        np.savez(path / "params.npz", **a)
        out[name] = path

    damaged("no_encoder_sha", lambda m: m.pop("encoder_sha256"))
    damaged("no_scaler", lambda m: m["targets"]["total"]["members"][0].pop("scaler"))
    damaged("no_config", lambda m: m["targets"]["total"].pop("config"))
    first = sorted(arrays)[0]
    damaged("array_dropped", arrays_change=lambda a: a.pop(first))
    damaged("wrong_shape", arrays_change=lambda a: a.update({first: np.zeros((3, 3, 3))}))
    return out


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "DTNN_JAX_COMPILATION_CACHE": CACHE}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "dtnn_jax.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# (case, argv with {placeholders}, exit status, regex stderr must match, regex stdout must match)
CASES = [
    # --- the train -> predict workflow and its destinations
    ("train: missing --data", ["train", "--data", "{dir}/nope.json"], 2, r"--data .*nope\.json not found", None),
    ("train: dataset too small", ["train", "--quick", "--limit", "4", "--workdir", "{tmp}/w", "--target", "total", "--no-progress"], 2, r"4 labelled records .* too few", None),
    ("train: labelled data invalid", ["train", "--data", "{labelled_bad}", "--workdir", "{tmp}/w"], 2, r"2 problem\(s\).*\n.*no-structure.*missing structure", None),
    ("train: workdir not writable", ["train", "--workdir", "{a_file}/run"], 2, r"--workdir .* cannot be written", None),
    ("train: bad layer", ["train", "--layer", "9", "--workdir", "{tmp}/w"], 2, r"layer must be in 1\.\.5", None),
    ("train: --folds and --seeds", ["train", "--folds", "5", "--seeds", "0", "1", "--workdir", "{tmp}/w"], 2, r"--folds and --seeds are two ways", None),
    ("train: --physics trains no total", ["train", "--physics", "--target", "total", "--workdir", "{tmp}/w"], 2, r"with --physics the total is electronic \+ ionic, not trained", None),
    # --- predict: inputs
    ("predict: empty directory alone", ["predict", "{empty_dir}", "--model", "{good_bundle}"], 2, r"nothing to predict: .*empty: the directory holds no structure files", None),
    ("predict: empty directory counts", ["predict", "{empty_dir}", "{good}", "--model", "{good_bundle}"], 1, r"1 of 2 inputs failed", None),
    ("predict: README and subdirectory", ["predict", "{pool}", "--model", "{good_bundle}"], 0, r"skipped 1 file\(s\) .*README\.txt.*\n.*1 subdirectory\(ies\) not read \(older/\)", r"mgo\.cif"),
    ("predict: multi-frame extxyz", ["predict", "{frames}", "--model", "{good_bundle}", "--format", "csv"], 0, None, r"two\.extxyz#0,two#0,.*\n.*two\.extxyz#1,two#1,"),
    ("predict: multi-block CIF", ["predict", "{blocks}", "--model", "{good_bundle}", "--format", "csv"], 0, None, r"two_blocks\.cif#first_.*\n.*two_blocks\.cif#second_"),
    ("predict: no cell", ["predict", "{molecule}", "{good}", "--model", "{good_bundle}"], 1, r"water\.xyz: has no periodic cell", None),
    ("predict: slab warns", ["predict", "{slab}", "--model", "{good_bundle}"], 0, r"warning: .*slab\.json: a vacuum gap of \d+\.\d A", r"WARNING: a vacuum gap"),
    ("predict: garbage is escaped", ["predict", "{garbage}", "--model", "{good_bundle}"], 1, r"POSCAR_garbage: could not parse", None),
    ("predict: isolated atom refused", ["predict", "{lonely}", "--model", "{good_bundle}"], 1, r"no neighbour within the cutoff .*allow_isolated", None),
    ("predict: --allow-isolated", ["predict", "{lonely}", "--model", "{good_bundle}", "--allow-isolated"], 0, None, r"lonely\.json"),
    ("predict: --max-atoms", ["predict", "{good}", "--model", "{good_bundle}", "--max-atoms", "1"], 1, r"2 atoms exceed the limit of 1", None),
    # --- predict: destinations
    ("predict: -o into a new directory", ["predict", "{good}", "--model", "{good_bundle}", "-o", "{tmp}/new/sub/out.json", "--format", "json"], 0, None, None),
    ("predict: -o not writable", ["predict", "{good}", "--model", "{good_bundle}", "-o", "{a_file}/out.json"], 2, r"--output .* cannot be written", None),
    # --- bundles
    ("bundle: no encoder identity", ["predict", "{good}", "--model", "{no_encoder_sha}"], 2, r"encoder_sha256: missing", None),
    ("bundle: scaler removed", ["predict", "{good}", "--model", "{no_scaler}"], 2, r"members\[0\]\.scaler: missing", None),
    ("bundle: config removed", ["predict", "{good}", "--model", "{no_config}"], 2, r"targets\.total\.config: missing", None),
    ("bundle: array dropped", ["predict", "{good}", "--model", "{array_dropped}"], 2, r"member 0: missing array", None),
    ("bundle: wrong shape", ["predict", "{good}", "--model", "{wrong_shape}"], 2, r"has shape \(3, 3, 3\), the readout config needs", None),
    ("predict: --phonons needs physics", ["predict", "{good}", "--model", "{good_bundle}", "--phonons"], 2, r"--phonons needs a physics model", None),
    # --- screen
    ("screen: empty pool directory", ["screen", "{empty_dir}", "--model", "{good_bundle}", "--out", "{tmp}/s"], 2, r"holds no structure files; nothing to screen", None),
    ("screen: band gaps with a BOM", ["screen", "{pool}", "--model", "{good_bundle}", "--band-gaps", "{gaps_bom}", "--out", "{tmp}/s", "--no-progress"], 0, None, r"ranked by FOM"),
    ("screen: out not writable", ["screen", "{pool}", "--model", "{good_bundle}", "--out", "{a_file}/s"], 2, r"--out .* cannot be written", None),
    # --- featurize
    ("featurize: .npz suffix reported", ["featurize", "{good}", "--out", "{tmp}/fzout"], 0, None, r"to .*fzout\.npz;"),
    ("featurize: bad encoder", ["featurize", "{good}", "--encoder", "nosuch"], 2, r"unknown encoder 'nosuch'", None),
]  # fmt: skip


@pytest.fixture(scope="module")
def outcomes(files, bundles, tmp_path_factory) -> dict:
    """Every case of the table run once, three subprocesses at a time (each case has its own
    working directory): case -> (CompletedProcess, working directory)."""
    from concurrent.futures import ThreadPoolExecutor

    names = {k: str(v) for k, v in files.items()}
    names |= {k: str(v) for k, v in bundles.items() if k != "good"}
    names |= {"good_bundle": str(bundles["good"])}

    def one(case):
        name, argv = case[0], case[1]
        cwd = tmp_path_factory.mktemp("case")
        return name, (_run([a.format(**names, tmp=cwd) for a in argv], cwd=cwd), cwd)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, CASES))


@pytest.mark.parametrize(
    ("case", "argv", "status", "stderr", "stdout"), CASES, ids=[c[0] for c in CASES]
)
def test_cli_fault(case, argv, status, stderr, stdout, outcomes):
    proc, cwd = outcomes[case]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == status, (proc.returncode, proc.stderr[-2000:])
    if stderr:
        assert re.search(stderr, proc.stderr), proc.stderr[-2000:]
    if stdout:
        assert re.search(stdout, proc.stdout), proc.stdout[-2000:]
    if status == 2:  # one message, not a dump
        errors = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, proc.stderr
    assert not re.search(r"[\x00-\x08\x0e-\x1f]", proc.stderr + proc.stdout)  # no raw binary
    if case == "predict: -o into a new directory":
        out = json.loads((cwd / "new/sub/out.json").read_text())
        assert out["crystals"][0]["error"] is None
    if case == "featurize: .npz suffix reported":
        assert (cwd / "fzout.npz").exists() and not (cwd / "fzout").exists()


def test_help_is_fast_distinct_and_plain():
    import time

    descriptions = {}
    for command in ("data", "featurize", "train", "predict", "screen"):
        start = time.perf_counter()
        proc = _run([command, "--help"], cwd=ROOT)
        assert proc.returncode == 0
        assert time.perf_counter() - start < 3.0 * 4  # no JAX import (a loaded machine is slow)
        assert "``" not in proc.stdout, command  # plain text, not reST markup
        descriptions[command] = proc.stdout.split("\n\n")[1]
    assert len(set(descriptions.values())) == len(descriptions)  # screen is not predict's
    assert "rank a pool" in descriptions["screen"].lower()


def test_train_resume_says_so_and_refuses_a_changed_schedule(tmp_path):
    """A finished quick run, rerun: 'resuming'; rerun with another --max-epochs: refused."""
    base = ["train", "--quick", "--limit", "12", "--target", "total", "--no-progress"]
    base += ["--workdir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "a_file" / "x")]
    (tmp_path / "a_file").write_text("not a directory")  # an unusable cache: a warning only
    first = _run(base, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "not writable" in first.stderr and "without caching" in first.stderr
    assert (tmp_path / "run" / "bundle.json").exists()
    again = _run(base, cwd=tmp_path)
    assert again.returncode == 0 and "resuming from epoch 6" in again.stderr
    changed = _run([*base, "--max-epochs", "9"], cwd=tmp_path)
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert re.search(r"different train\.max_epochs.*--restart", changed.stderr)
    restarted = _run([*base, "--max-epochs", "3", "--restart"], cwd=tmp_path)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "resuming" not in restarted.stderr
    history = json.loads((tmp_path / "run" / "total" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
