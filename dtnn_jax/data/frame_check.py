"""Frame-consistency check: is each tensor invariant under its crystal's point group?

A dielectric tensor expressed in the Cartesian frame of its structure must satisfy
``T = R T R^T`` for every point-group rotation ``R`` of that structure (also expressed in
that Cartesian frame). A tensor given in another frame (for example a standardised cell
served beside a non-standard structure) generally is not, unless the crystal is cubic.
We average ``R T R^T`` over the group and measure how much that changes the tensor.

Limits: the test is blind where the point group constrains little. Triclinic crystals
(only identity and inversion) pass with any tensor; monoclinic ones catch only rotations
that move the unique axis; cubic ones pass any isotropic tensor in any frame. A pass rate
near 100 % on the higher-symmetry records of a source is the evidence to look for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from dtnn_jax.data.records import SYMPREC_ANGSTROM, TARGETS, DielectricRecord


def point_group_rotations(
    structure: Structure, symprec: float = SYMPREC_ANGSTROM
) -> np.ndarray:  # [n_ops, 3, 3]
    """Distinct Cartesian rotation matrices of the crystal's space-group operations."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ops = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations(cartesian=True)
    rotations = np.stack([op.rotation_matrix for op in ops])  # [n_ops_with_translations, 3, 3]
    _, unique = np.unique(
        np.round(rotations, 6).reshape(len(rotations), 9), axis=0, return_index=True
    )
    return rotations[np.sort(unique)]


def symmetrize_tensor(tensor: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Group average ``mean_R R T R^T`` of a [3, 3] tensor over [n_ops, 3, 3] rotations."""
    return np.einsum("nij,jk,nlk->il", rotations, tensor, rotations) / len(rotations)


def relative_deviation(tensor: np.ndarray, rotations: np.ndarray, floor: float) -> float:
    """``|T_avg - T|_F / max(|T|_F, floor)``: 0 for a tensor in the crystal's frame."""
    diff = np.linalg.norm(symmetrize_tensor(tensor, rotations) - tensor)
    return float(diff / max(float(np.linalg.norm(tensor)), floor))


@dataclasses.dataclass(frozen=True)
class FrameCheckReport:
    """Result of :func:`frame_check` for one target.

    Attributes:
        target: the dielectric target checked.
        symprec: spglib tolerance (Angstrom) used to find the point group.
        tol: pass threshold on the relative deviation.
        floor: lower bound on |T|_F in the denominator (near-zero ionic tensors).
        material_ids: ids of the checked records, [n_checked].
        deviations: relative deviation per checked record, [n_checked].
    """

    target: str
    symprec: float
    tol: float
    floor: float
    material_ids: tuple[str, ...]
    deviations: np.ndarray  # [n_checked]

    @property
    def passed(self) -> np.ndarray:  # [n_checked] bool
        return self.deviations < self.tol

    @property
    def n_checked(self) -> int:
        return len(self.material_ids)

    @property
    def n_pass(self) -> int:
        return int(np.sum(self.passed))

    @property
    def median_deviation(self) -> float:
        return float(np.median(self.deviations)) if self.n_checked else float("nan")

    @property
    def max_deviation(self) -> float:
        return float(np.max(self.deviations)) if self.n_checked else float("nan")

    def n_pass_at(self, tol: float) -> int:
        """Number of records whose relative deviation is below ``tol``."""
        return int(np.sum(self.deviations < tol))

    def failures(self) -> list[tuple[str, float]]:
        """(material_id, deviation) of records at or above the tolerance, worst first."""
        pairs = zip(self.material_ids, self.deviations, strict=True)
        bad = [(m, float(d)) for m, d in pairs if d >= self.tol]
        return sorted(bad, key=lambda item: -item[1])

    def summary(self) -> str:
        return (
            f"{self.target}: {self.n_pass}/{self.n_checked} pass (relative deviation < "
            f"{self.tol:g}, symprec {self.symprec:g} A); median {self.median_deviation:.2e}, "
            f"max {self.max_deviation:.2e}"
        )


def frame_check_targets(
    records: Sequence[DielectricRecord],
    targets: Sequence[str] = TARGETS,
    symprec: float = SYMPREC_ANGSTROM,
    tol: float = 0.01,
    floor: float = 1.0,
) -> dict[str, FrameCheckReport]:
    """Frame check of several targets, finding each crystal's point group once.

    Args:
        records: records to check; those without a target are skipped for it.
        targets: names from ``TARGETS``.
        symprec: spglib tolerance in Angstrom.
        tol: a record passes when its relative deviation is below ``tol``.
        floor: denominator floor; 1.0 (the vacuum permittivity) keeps near-zero ionic
            tensors from turning float noise into large relative deviations.
    """
    for target in targets:
        if target not in TARGETS:
            raise KeyError(f"unknown target {target!r}; expected one of {TARGETS}")
    ids: dict[str, list[str]] = {t: [] for t in targets}
    devs: dict[str, list[float]] = {t: [] for t in targets}
    for record in records:
        present = [t for t in targets if record.has_target(t)]
        if not present:
            continue
        rotations = point_group_rotations(record.structure, symprec)
        for target in present:
            ids[target].append(record.material_id)
            devs[target].append(relative_deviation(record.target(target), rotations, floor))
    return {
        t: FrameCheckReport(t, symprec, tol, floor, tuple(ids[t]), np.asarray(devs[t]))
        for t in targets
    }


def frame_check(
    records: Sequence[DielectricRecord],
    target: str,
    symprec: float = SYMPREC_ANGSTROM,
    tol: float = 0.01,
    floor: float = 1.0,
) -> FrameCheckReport:
    """Check that ``target`` tensors are in the Cartesian frame of their structures.

    For each record, averages the tensor over the crystal's point-group rotations R
    (Cartesian, from ``SpacegroupAnalyzer.get_symmetry_operations(cartesian=True)``),
    ``T_avg = mean_R R T R^T``, and passes it if
    ``|T_avg - T|_F / max(|T|_F, floor) < tol``. Run this on any new data source before
    training on it.

    Args:
        records: records to check; those without ``target`` are skipped.
        target: one of ``TARGETS``.
        symprec: spglib tolerance in Angstrom.
        tol: pass threshold on the relative deviation.
        floor: denominator floor (see :func:`frame_check_targets`).
    """
    return frame_check_targets(records, (target,), symprec, tol, floor)[target]
