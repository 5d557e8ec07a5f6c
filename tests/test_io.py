"""Structure input: every supported format round-trips; every bad input names the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dtnn_jax.encoder import get_encoder
from dtnn_jax.inputs import graphs_or_raise
from dtnn_jax.io import StructureInputError, as_structure, check_elements


def _same(a: Structure, b: Structure) -> bool:
    return (
        np.allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-5)
        and np.allclose(a.cart_coords, b.cart_coords, atol=1e-4)
        and [s.specie.Z for s in a] == [s.specie.Z for s in b]
    )


@pytest.mark.parametrize("fmt", ["cif", "poscar", "json", "extxyz"])
def test_file_round_trip(tmp_path, triclinic, fmt):
    path = tmp_path / {"cif": "x.cif", "poscar": "POSCAR", "json": "x.json", "extxyz": "x.xyz"}[fmt]
    if fmt == "json":
        path.write_text(json.dumps(triclinic.as_dict()))
    elif fmt == "extxyz":
        from ase.io import write
        from pymatgen.io.ase import AseAtomsAdaptor

        write(path, AseAtomsAdaptor.get_atoms(triclinic), format="extxyz")
    else:
        triclinic.to(filename=str(path), fmt=fmt)
    got = as_structure(path)
    if fmt == "cif":  # CIF stores the cell as parameters: compare frame-free
        assert got.matches(triclinic)
    else:
        assert _same(got, triclinic)


def test_ase_atoms_and_lists(nacl):
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(nacl)
    assert _same(as_structure(atoms), nacl)
    encoder = get_encoder()
    assert len(graphs_or_raise([nacl, atoms], encoder)) == 2
    assert len(graphs_or_raise(nacl, encoder)) == 1


def test_missing_empty_corrupt_files(tmp_path):
    with pytest.raises(StructureInputError, match="file not found"):
        as_structure(tmp_path / "nope.cif")
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    with pytest.raises(StructureInputError, match=r"empty\.cif: file is empty"):
        as_structure(empty)
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell_length_a 3.0\nloop_\n_atom_site_label\nthis is not a cif\n")
    with pytest.raises(StructureInputError, match=r"bad\.cif: could not parse"):
        as_structure(bad)


def test_bad_structures_are_named(nacl):
    with pytest.raises(StructureInputError, match="no atoms"):
        as_structure(Structure(Lattice.cubic(3.0), [], []))
    coords = nacl.frac_coords.copy()
    coords[1, 0] = np.nan
    with pytest.raises(StructureInputError, match="non-finite"):
        as_structure(Structure(nacl.lattice, ["Na", "Cl"], coords), index=7)
    with pytest.raises(StructureInputError, match="overlapping atoms"):  # found on the graph
        graphs_or_raise(
            Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]), get_encoder()
        )
    flat = Lattice([[3, 0, 0], [0, 3, 0], [3, 3, 0]])
    with pytest.raises(StructureInputError, match="degenerate lattice"):
        as_structure(Structure(flat, ["Na"], [[0, 0, 0]]))
    with pytest.raises(StructureInputError, match="unsupported input type"):
        as_structure(42)


def test_unsupported_element_message(nacl):
    with pytest.raises(StructureInputError, match=r"unsupported element\(s\) Cl for M"):
        check_elements(nacl, supported_z=[11], source="nacl.cif", model="M")
    check_elements(nacl, supported_z=[11, 17], source="nacl.cif", model="M")
