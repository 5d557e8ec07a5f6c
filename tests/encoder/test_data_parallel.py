"""Data parallelism: features computed on 2 (host) devices equal the single-device ones.

``XLA_FLAGS`` must be set before JAX starts, so the 2-device run is a subprocess; it checks
that it sees 2 devices and that every encoder input was really sharded over both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.encoder.features import featurize

pytestmark = pytest.mark.serial  # several JAX processes or devices (tests/conftest.py)
TWO_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np

    structures_json, cache_dir, out_npz, out_json = sys.argv[1:]
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    from pymatgen.core import Structure
    from dtnn_jax import parallel
    from dtnn_jax.encoder.features import featurize
    from dtnn_jax.graph import BatchBudget

    assert jax.local_device_count() == 2, jax.local_devices()
    seen = []
    shard = parallel.shard

    def spy(stacked):
        out = shard(stacked)
        leaf = out.nodes["positions"]
        real = np.asarray(stacked.n_node)[:, :-1].sum(axis=1) > 0  # shards with a crystal
        seen.append({
            "n_batches": int(real.sum()),
            "n_devices": int(stacked.n_node.shape[0]),
            "devices": sorted(str(d) for d in leaf.sharding.device_set),
            "shard_rows": [int(s.data.shape[0]) for s in leaf.addressable_shards],
        })
        return out

    parallel.shard = spy
    with open(structures_json) as f:
        structures = [Structure.from_dict(d) for d in json.load(f)]
    # 2 crystals per batch: 5 crystals = 3 batches = one full 2-device step + one half step
    features = featurize(structures, layer=4, budget=BatchBudget(max_graphs=2))
    np.savez(out_npz, *features)
    with open(out_json, "w") as f:
        json.dump(seen, f)
    """
)


def _crystals() -> list[Structure]:
    fcc = Lattice.from_parameters(4.0, 4.0, 4.0, 60, 60, 60)
    return [
        Structure(fcc, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(
            Lattice.from_parameters(3.1, 4.2, 5.3, 71.0, 83.0, 104.0),
            ["Si", "O", "O"],
            [[0.0, 0.0, 0.0], [0.31, 0.22, 0.13], [0.62, 0.71, 0.55]],
        ),
        Structure(fcc, ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(
            Lattice.hexagonal(3.2, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]
        ),
    ]


def test_two_devices_match_one(tmp_path):
    structures = _crystals()
    path = tmp_path / "structures.json"
    path.write_text(json.dumps([s.as_dict() for s in structures]))
    out_npz, out_json = tmp_path / "two.npz", tmp_path / "two.json"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    cache_dir = jax.config.jax_compilation_cache_dir or ""
    args = [str(path), str(cache_dir), str(out_npz), str(out_json)]
    proc = subprocess.run(
        [sys.executable, "-c", TWO_DEVICE_SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    seen = json.loads(out_json.read_text())
    assert [s["n_batches"] for s in seen] == [2, 1]
    for step in seen:
        assert step["n_devices"] == 2 and len(step["devices"]) == 2
        assert step["shard_rows"] == [1, 1]  # one padded batch per device

    single = featurize(structures, layer=4)
    with np.load(out_npz) as f:
        two = [f[f"arr_{i}"] for i in range(len(structures))]
    for i, (a, b) in enumerate(zip(single, two, strict=True)):
        assert a.shape == b.shape == (len(structures[i]), 480)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=f"crystal {i}")
