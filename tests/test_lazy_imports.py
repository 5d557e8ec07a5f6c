"""The command line's import chain stays light (a fresh process, as ``dtnn`` starts).

``import dtnn_jax`` and parsing ``dtnn predict one.cif --target electronic`` import no JAX,
and loading the prediction code (`dtnn_jax.inference`, what ``dtnn predict`` imports to
load a model) imports nothing of the physics path (`dtnn_jax.physics`: the force constants
K, their Hessian and cache, the phonons): a prediction that needs no K does not pay for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
import dtnn_jax
after_import = sorted(sys.modules)
from dtnn_jax.cli import build_parser
build_parser().parse_args(["predict", "one.cif", "--target", "electronic"])
after_parse = sorted(sys.modules)
import dtnn_jax.inference
print(json.dumps([after_import, after_parse, sorted(sys.modules)]))
"""


def test_cli_predict_imports_no_jax_to_parse_and_no_physics_to_load():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    after_import, after_parse, after_load = json.loads(proc.stdout.splitlines()[-1])
    for modules in (after_import, after_parse):
        assert "jax" not in modules and "dtnn_jax.inference" not in modules
    assert "dtnn_jax.inference.predictor" in after_load  # the check below is not vacuous
    physics = [m for m in after_load if m.startswith("dtnn_jax.physics")]
    assert physics == [], physics  # dtnn_jax.physics.force_constants above all
