"""``dtnn featurize FILES... --layer K --out feats.npz``."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.io.cif import CifWriter

from dtnn_jax.cli import main
from dtnn_jax.encoder.features import featurize


@pytest.fixture
def cif_files(tmp_path, nacl, triclinic):
    """Two good CIFs (NaCl, 2 atoms; a triclinic SiO2-like cell, 3 atoms) and a corrupt one."""
    a, b, bad = tmp_path / "a.cif", tmp_path / "b.cif", tmp_path / "bad.cif"
    CifWriter(nacl).write_file(a)
    CifWriter(triclinic).write_file(b)
    bad.write_text("data_bad\nloop_\n_atom_site_label\n_atom_site_fract_x\nNa 0.0 0.1\n")
    return str(a), str(b), str(bad)


def test_featurize_writes_features(cif_files, tmp_path, capsys):
    a, b, _ = cif_files
    out = tmp_path / "x.npz"
    assert main(["featurize", a, b, "--layer", "3", "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f[a].shape == (2, 480) and f[b].shape == (3, 480)
        assert str(f["irreps"]) == "128x0e+64x1e+32x2e" and int(f["layer"]) == 3
        assert list(f["files"]) == [a, b]
        assert f["energy_ev"].shape == (2,) and np.all(f["energy_ev"] < 0)
        np.testing.assert_allclose(f[b], featurize(b, layer=3)[0], rtol=1e-5, atol=1e-6)
    assert "wrote 2 crystals" in capsys.readouterr().out


def test_bad_file_is_reported_and_others_written(cif_files, tmp_path, capsys):
    a, b, bad = cif_files
    out = tmp_path / "x.npz"
    assert main(["featurize", a, bad, b, "--layer", "5", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert bad in err and "error" in err
    assert a not in err and b not in err
    with np.load(out) as f:
        assert f[a].shape == (2, 128) and f[b].shape == (3, 128)
        assert bad not in f.files
        assert list(f["files"]) == [a, b]


def test_layer_out_of_range_is_an_error(cif_files, tmp_path, capsys):
    out = tmp_path / "x.npz"
    assert main(["featurize", cif_files[0], "--layer", "7", "--out", str(out)]) == 2
    assert "layer must be in 1..5" in capsys.readouterr().err
    assert not out.exists()
