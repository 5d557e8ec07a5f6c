"""Two real processes on localhost (JAX's CPU collectives): the same results as one process.

Each test starts the processes as subprocesses with ``--coordinator 127.0.0.1:PORT
--num-processes 2 --process-id I`` (free ports picked per test) and a bounded timeout, and
compares with a one-process run of the same command: screening, featurization, a few
training steps, a peer that never arrives, and the merge of incomplete shards.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.distributed import free_port_pair
from dtnn_jax.inference import DEFAULT_MODEL, save_bundle
from tests.properties.tiny_model import tiny_bundle

pytestmark = pytest.mark.serial  # several JAX processes or devices (tests/conftest.py)
ROOT = Path(__file__).resolve().parents[2]
CACHE = os.environ.get("DTNN_JAX_TEST_CACHE", str(ROOT / ".jax_cache"))
TIMEOUT_S = 300
# A stuck child prints every thread's Python stack and exits before the test gives up on it.
STACK_DUMP_S = TIMEOUT_S - 30


def _env() -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "DTNN_JAX_COMPILATION_CACHE": CACHE}
    env["PYTHONPATH"] = str(ROOT)
    env.pop("XLA_FLAGS", None)  # one device per process
    return env


def _cli(args, cwd, processes: int = 1, port: int | None = None):
    """Runs ``dtnn ARGS`` as one process, or as ``processes`` processes of one run."""
    if processes == 1:
        cmds = [[sys.executable, "-m", "dtnn_jax.cli", *args]]
    else:
        port = port or free_port_pair()
        flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes)]
        cmds = [
            [sys.executable, "-m", "dtnn_jax.cli", *args, *flags, "--process-id", str(i)]
            for i in range(processes)
        ]
    procs = [
        subprocess.Popen(c, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in cmds
    ]
    results = _communicate(procs)
    return [
        (p.returncode, o.decode(), e.decode()) for p, (o, e) in zip(procs, results, strict=True)
    ]


def _communicate(procs) -> list[tuple[bytes, bytes]]:
    """Every process's (stdout, stderr); on a timeout all are killed and their stderr shown."""
    try:
        return [p.communicate(timeout=TIMEOUT_S) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        tails = [
            f"--- process {i} ---\n{p.communicate()[1].decode()[-4000:]}"
            for i, p in enumerate(procs)
        ]
        pytest.fail(f"no result within {TIMEOUT_S} s:\n" + "\n".join(tails))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    pool = d / "pool"
    pool.mkdir()
    for i, (a, b) in enumerate([("Na", "Cl"), ("Mg", "O"), ("K", "Br"), ("Li", "F"), ("Ca", "O")]):
        s = Structure(Lattice.cubic(4.1 + 0.1 * i), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
        s.to(filename=str(pool / f"c{i}.cif"))
    bundle = save_bundle(tiny_bundle(), d / "bundle")
    return d, pool, bundle


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_screen_on_two_processes_equals_one(setup, tmp_path):
    _, pool, bundle = setup
    args = ["screen", str(pool), "--model", str(bundle), "--no-progress", "--top", "3"]
    ((rc1, _, err1),) = _cli([*args, "--out", str(tmp_path / "one")], tmp_path)
    assert rc1 == 0, err1[-2000:]
    runs = _cli([*args, "--out", str(tmp_path / "two")], tmp_path, processes=2)
    for rc, _, err in runs:
        assert rc == 0, err[-3000:]
    assert _csv(tmp_path / "one" / "ranked.csv") == _csv(tmp_path / "two" / "ranked.csv")
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert one == two
    shards = sorted(p.name for p in (tmp_path / "two" / "shards").iterdir())
    assert shards == ["screen-0000-of-0002.json", "screen-0001-of-0002.json"]
    assert (tmp_path / "two" / "fom_distribution.png").stat().st_size > 1000


def test_the_readme_screen_command_runs_on_two_processes(tmp_path):
    """The README's two-process command, as written (default models: the fast pre-screen
    and the physics refine), on the first 10 crystals of the shipped pool (--limit; one of
    them, BAs, is not a likely metal, so the refine stage has a crystal to refine)."""
    runs = _cli(["screen", "shipped", "-o", "scr", "--limit", "10"], tmp_path, processes=2)
    for rc, _, err in runs:
        assert rc == 0 and "Traceback" not in err, err[-3000:]
    summary = json.loads((tmp_path / "scr" / "summary.json").read_text())
    assert summary["n_pool"] == 10 and summary["refine_model"] == DEFAULT_MODEL
    assert summary["n_refined"] >= 1
    assert "refined the best" in runs[0][1]


def test_featurize_on_two_processes_equals_one(setup, tmp_path):
    _, pool, _ = setup
    files = sorted(str(p) for p in pool.iterdir())
    ((rc, _, err),) = _cli(["featurize", *files, "--out", str(tmp_path / "one.npz")], tmp_path)
    assert rc == 0, err[-2000:]
    runs = _cli(["featurize", *files, "--out", str(tmp_path / "two.npz")], tmp_path, 2)
    assert all(r[0] == 0 for r in runs), runs[0][2][-2000:] + runs[1][2][-2000:]
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_merge_refuses_a_missing_shard_and_a_shard_rerun_completes_it(setup, tmp_path):
    _, pool, bundle = setup
    args = ["screen", str(pool), "--model", str(bundle), "--no-progress", "--out", str(tmp_path)]
    ((rc, out, err),) = _cli([*args, "--shard", "0/2"], tmp_path)
    assert rc == 0 and "merge the 2 shards" in out, err[-2000:]
    ((rc, _, err),) = _cli([*args, "--merge"], tmp_path)
    assert rc == 2 and "Traceback" not in err
    assert "shard(s) [1] of 2 missing; re-run them alone with --shard 1/2" in err
    ((rc, _, err),) = _cli([*args, "--shard", "1/2"], tmp_path)  # the 'killed' shard, alone
    assert rc == 0, err[-2000:]
    ((rc, out, err),) = _cli([*args, "--merge"], tmp_path)
    assert rc == 0 and "screened 5 crystals" in out, err[-2000:]


def test_a_peer_that_never_arrives_is_a_clear_error(setup, tmp_path):
    _, pool, bundle = setup
    port = free_port_pair()
    args = ["screen", str(pool), "--model", str(bundle), "--out", str(tmp_path)]
    args += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0"]
    ((rc, _, err),) = _cli([*args, "--distributed-timeout", "5"], tmp_path)
    assert rc == 2 and "Traceback" not in err
    assert "process(es) [1] of 2 did not arrive" in err


TRAIN_SCRIPT = textwrap.dedent(
    """
    import faulthandler, json, sys
    faulthandler.dump_traceback_later({stack_dump_s}, exit=True)
    import jax
    jax.config.update("jax_compilation_cache_dir", {cache!r})
    from dtnn_jax import distributed
    from tests.distributed.test_two_processes import config, data
    from dtnn_jax.training import fit

    if len(sys.argv) > 3:
        distributed.initialize("127.0.0.1:" + sys.argv[3], 2, int(sys.argv[4]), timeout_s=60)
    result = fit(config(int(sys.argv[2])), *data(), sys.argv[1])
    if jax.process_index() == 0:
        print(json.dumps({{"start": result.start_epoch, "history": result.history}}))
    """
)


def config(max_epochs: int):
    """The quick config, a batch split over 2 shards whatever the process count."""
    import dataclasses

    from dtnn_jax.config import ExperimentConfig

    base = ExperimentConfig.quick()
    train = dataclasses.replace(
        base.train, max_epochs=max_epochs, decay_epochs=4, shards=2, checkpoint_every_epochs=1
    )
    return dataclasses.replace(base, train=train)


def data():
    from dtnn_jax.training.synthetic import synthetic_graphs

    graphs = synthetic_graphs(20, config(1).readout.input_irreps, seed=0)
    return graphs[:16], graphs[16:]


def _train(workdir, epochs: int, processes: int, cwd) -> list[dict]:
    script = TRAIN_SCRIPT.format(cache=CACHE, stack_dump_s=STACK_DUMP_S)
    base = [sys.executable, "-c", script, str(workdir), str(epochs)]
    if processes == 1:
        cmds = [base]
    else:
        port = str(free_port_pair())
        cmds = [[*base, port, str(i)] for i in range(processes)]
    procs = [
        subprocess.Popen(c, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in cmds
    ]
    results = _communicate(procs)
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    return json.loads(results[0][0].decode().strip().splitlines()[-1])


def test_training_on_two_processes_follows_one_and_resumes_on_one(tmp_path):
    two = _train(tmp_path / "two", 2, processes=2, cwd=ROOT)
    one = _train(tmp_path / "one", 2, processes=1, cwd=ROOT)
    assert [h["epoch"] for h in two["history"]] == [1, 2]
    for a, b in zip(one["history"], two["history"], strict=True):
        for key in ("train_mae", "val_mae", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    # written once (by process 0), and resumed by a single process
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["1", "2"]
    resumed = _train(tmp_path / "two", 3, processes=1, cwd=ROOT)
    assert resumed["start"] == 2 and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
