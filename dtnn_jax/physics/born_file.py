"""phonopy ``BORN`` files: predicted eps_inf and Born charges as non-analytic-correction input.

phonopy adds the non-analytic term (LO-TO splitting) to the dynamical matrix from a ``BORN``
file: eps_inf and the Born charges Z* of the symmetry-independent atoms (first index the
field direction, as here), in the units of its VASP interface (e, Angstrom; no factor line).
phonopy's own writer (`phonopy.file_IO.get_BORN_lines`) symmetrises Z* and eps with the
crystal's space group and picks the independent atoms; `phonopy.file_IO.parse_BORN` reads the
file back and expands the charges to every atom. So a user who computes phonons with any
potential gets LO-TO splitting from the predicted charges:

    dtnn predict POSCAR --born-file nac/        # writes nac/<id>/BORN
    phonopy-load --nac --born nac/POSCAR/BORN ...   (or NAC = .TRUE. with BORN beside)

The cell must be the one phonopy is given (its unit cell); pass ``primitive_matrix`` when
phonopy uses ``PRIMITIVE_AXES``, so the atoms are numbered in phonopy's primitive cell.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def phonopy_cell(structure):
    """The pymatgen Structure as a `phonopy.structure.atoms.PhonopyAtoms`."""
    from pymatgen.io.phonopy import get_phonopy_structure

    return get_phonopy_structure(structure)


def born_file_text(
    structure,
    born_charges: np.ndarray,
    eps_inf: np.ndarray,
    primitive_matrix: np.ndarray | None = None,
    symprec: float = 1e-5,
) -> str:
    """The text of a BORN file for ``structure`` (phonopy's symmetrising writer).

    Args:
        structure: the unit cell phonopy is given (pymatgen Structure).
        born_charges: [N, 3, 3] Z* (e; first index the field direction).
        eps_inf: [3, 3] the electronic dielectric tensor.
        primitive_matrix: [3, 3] phonopy's PRIMITIVE_AXES, if it uses one.
        symprec: symmetry tolerance (Angstrom) of the symmetrisation.
    """
    from phonopy.file_IO import get_BORN_lines

    z = np.asarray(born_charges, np.float64)
    if z.shape != (len(structure), 3, 3):
        raise ValueError(f"born_charges must be [{len(structure)}, 3, 3], got {z.shape}")
    eps = np.asarray(eps_inf, np.float64)
    lines = get_BORN_lines(
        phonopy_cell(structure),
        z,
        0.5 * (eps + eps.T),
        primitive_matrix=None if primitive_matrix is None else np.asarray(primitive_matrix),
        symprec=symprec,
    )
    return "\n".join(lines) + "\n"


def write_born_file(structure, born_charges, eps_inf, path: str | os.PathLike, **options) -> Path:
    """Writes `born_file_text` to ``path`` (a directory gets ``path/BORN``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "BORN"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(born_file_text(structure, born_charges, eps_inf, **options))
    return path


def _physics_model(model):
    from dtnn_jax.inference.ionic import physics_model

    return physics_model(model, "a BORN file")


def _predicted(model, inputs, **prepare):
    """[(crystal, Z* [N, 3, 3] or None, eps_inf [3, 3] or None)] from one model pass."""
    from dtnn_jax.inputs import prepare_inputs

    crystals = list(prepare_inputs(inputs, model.encoder, **prepare))
    prediction = model.predict_inputs(crystals)
    return [
        (c, prediction.born_charges[k], prediction.mean["electronic"][k])
        if c.error is None
        else (c, None, None)
        for k, c in enumerate(crystals)
    ]


def write_phonopy_born(
    structure,
    path: str | os.PathLike,
    model=None,
    primitive_matrix: np.ndarray | None = None,
    symprec: float = 1e-5,
) -> Path:
    """Predicts eps_inf and Z* of ``structure`` and writes them as a phonopy BORN file.

    Args:
        structure: a pymatgen Structure, ASE Atoms or structure file (phonopy's unit cell).
        path: the file (a directory gets ``path/BORN``).
        model: a physics model, bundle name or directory (default: the shipped one).
        primitive_matrix: phonopy's PRIMITIVE_AXES, if it uses one.
        symprec: symmetry tolerance (Angstrom).

    Returns:
        The path written.

    Raises:
        StructureInputError: the structure cannot be used (the message says why).
        ValueError: the model has no Born-charge head.
    """
    ((crystal, z, eps),) = _predicted(_physics_model(model), [structure])
    if crystal.error:
        from dtnn_jax.io import StructureInputError

        raise StructureInputError(crystal.source, crystal.error)
    return write_born_file(
        crystal.structure, z, eps, path, primitive_matrix=primitive_matrix, symprec=symprec
    )


def write_born_files(
    model, inputs, directory: str | os.PathLike, name=str, **prepare
) -> list[tuple[str, str | None]]:
    """`dtnn predict --born-file DIR`: ``DIR/<name(id)>/BORN`` per crystal of ``inputs``.

    Returns (source, None) per file written and (source, reason) per failed input.
    """
    done = []
    for crystal, z, eps in _predicted(_physics_model(model), inputs, **prepare):
        if crystal.error is None:
            write_born_file(crystal.structure, z, eps, Path(directory) / name(crystal.id) / "BORN")
        done.append((crystal.source, crystal.error))
    return done
