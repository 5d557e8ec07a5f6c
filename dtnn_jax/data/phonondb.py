"""Read one Togo phonondb (2018-04-17) archive: DFT Gamma force constants, eps_inf, Z*, eps_ion.

An archive (``phonon_db_tarred/*.tar.lzma`` of the mirror ``github:WMD-group/phononDB``; xz
despite its name) holds ``POSCAR-unitcell``, ``phonopy.conf`` (``DIM``, ``PRIMITIVE_AXIS``),
``disp.yaml``, ``FORCE_SETS`` (supercell finite displacements, VASP PBEsol) and, for about
half of them, ``BORN`` (eps_inf and the Born charges of the symmetry-independent atoms).

Everything phonopy knows how to do is done by phonopy (BSD-3): the force constants from
``FORCE_SETS`` (``phonopy.load``), the dynamical matrix at Gamma, and the expansion of the
BORN charges to the primitive cell (``phonopy.file_IO.parse_BORN``). From those this module
takes the Gamma force-constant matrix of the primitive cell, ``K = D(q=0) * sqrt(m_i m_j)``
(eV/A^2, the same object as the autodiff Hessian of `dtnn_jax.physics.force_constants`), the
Gamma frequencies (`dtnn_jax.physics.gamma_phonons`) and, with BORN, the DFT ionic tensor
``eps_ion = 4 pi 14.399645 / Omega * Z Kinv Z^T`` (`dtnn_jax.physics.ionic_dielectric` with
the exact optical pseudo-inverse of K). A crystal with an unstable (imaginary) optical mode at
Gamma gets no ionic tensor.

Every archive that cannot give a record raises `ArchiveSkipped` with one of `SKIP_REASONS`;
the preparation script (``experiments/prepare_phonondb.py``) logs them.
"""

from __future__ import annotations

import dataclasses
import io
import lzma
import re
import tarfile
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from dtnn_jax.errors import InputError

REQUIRED_FILES: tuple[str, ...] = ("POSCAR-unitcell", "phonopy.conf", "disp.yaml", "FORCE_SETS")
"""Files an archive must hold to give force constants."""

NEAR_METAL_EPS_INF = 100.0
"""Largest eigenvalue of eps_inf above which a BORN crystal counts as a near-metal and is
skipped (``near_metal``). Measured on the 2018 archives: 38 of the 4,908 BORN crystals lie
above it (106 to 22,245, vanishing-gap crystals); the 1,056 Petousis 2017 labels hold 4
above it (max 381, SrAgP, PBE). See ``dtnn_jax/data/PROVENANCE.md``."""

UNSTABLE_CM1 = 0.0
"""An optical Gamma frequency below this (cm^-1; negative = imaginary) flags the crystal
unstable: it keeps eps_inf and Z* but gets no ionic tensor."""

SKIP_REASONS: tuple[str, ...] = (
    "truncated_archive",  # the xz stream or the tar inside it ends early
    "missing_file",  # one of REQUIRED_FILES is absent
    "bad_phonopy_conf",  # no DIM, or DIM / PRIMITIVE_AXIS not 9 numbers
    "bad_structure",  # POSCAR-unitcell unreadable
    "force_sets_missing_displacements",  # FORCE_SETS has fewer displacements than disp.yaml
    "force_sets_unreadable",  # phonopy cannot read FORCE_SETS / build force constants
    "born_unreadable",  # BORN malformed (phonopy's BORNFileParseError)
    "born_atom_count_mismatch",  # BORN Z* lines != independent atoms of the primitive cell
    "non_finite_tensor",  # NaN / inf in eps_inf, Z*, K or eps_ion
    "eps_inf_not_positive",  # eps_inf has an eigenvalue <= 1 (unphysical)
    "near_metal",  # eps_inf largest eigenvalue > NEAR_METAL_EPS_INF
)
"""Named reasons an archive gives no record."""


class ArchiveSkipped(InputError):
    """An archive that gives no record; ``reason`` is one of `SKIP_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclasses.dataclass(frozen=True)
class PhononDBEntry:
    """What one phonondb archive gives (arrays in the primitive cell's atom order and frame).

    Attributes:
        material_id: Materials Project id, e.g. ``"mp-149"``.
        lattice: [3, 3] primitive lattice vectors (rows, A), Cartesian frame of POSCAR-unitcell.
        species: [N] element symbols.
        frac: [N, 3] fractional coordinates.
        force_constants: [3N, 3N] Gamma K (eV/A^2), row ``3 * atom + direction``.
        frequencies_cm1: [3N] Gamma frequencies (cm^-1; negative = imaginary; 3 acoustic = 0).
        e_electronic: [3, 3] eps_inf or None (no BORN).
        born_charges: [N, 3, 3] Z* (e; first index the field direction) or None.
        e_ionic: [3, 3] DFT ionic tensor, None without BORN or when ``unstable``.
        unstable: an optical frequency below `UNSTABLE_CM1`.
        supercell_dim: the 9 numbers of DIM.
    """

    material_id: str
    lattice: np.ndarray
    species: tuple[str, ...]
    frac: np.ndarray
    force_constants: np.ndarray
    frequencies_cm1: np.ndarray
    e_electronic: np.ndarray | None
    born_charges: np.ndarray | None
    e_ionic: np.ndarray | None
    unstable: bool
    supercell_dim: tuple[int, ...]

    @property
    def volume_A3(self) -> float:
        """Primitive cell volume (A^3)."""
        return float(abs(np.linalg.det(self.lattice)))


def read_archive(data: bytes) -> dict[str, bytes]:
    """Member files of an ``.tar.lzma`` (xz or legacy lzma) archive, keyed by base name.

    Raises:
        ArchiveSkipped: ``truncated_archive`` if the compressed stream or the tar ends early.
    """
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_AUTO)
    try:
        raw = decompressor.decompress(data)
    except lzma.LZMAError as exc:
        raise ArchiveSkipped("truncated_archive", str(exc)) from exc
    if not decompressor.eof:
        raise ArchiveSkipped("truncated_archive", f"compressed stream ends after {len(raw)} bytes")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    handle = tar.extractfile(member)
                    files[Path(member.name).name] = handle.read() if handle else b""
                    files.setdefault("_dir", Path(member.name).parent.name.encode())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveSkipped("truncated_archive", f"tar: {exc}") from exc
    return files


def material_id_of(files: dict[str, bytes]) -> str:
    """``mp-NNN`` from the archive's directory name ``mp-NNN-20180417``."""
    match = re.match(r"(mp-\d+)", files.get("_dir", b"").decode())
    return match.group(1) if match else ""


def _matrix(text: str) -> np.ndarray:
    values = [float(Fraction(token)) for token in text.split()]
    if len(values) == 3:
        return np.diag(values)
    if len(values) != 9:
        raise ValueError(f"expected 3 or 9 numbers, got {len(values)}")
    return np.array(values).reshape(3, 3)


def parse_phonopy_conf(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``DIM`` ([3, 3] integer supercell matrix) and ``PRIMITIVE_AXIS`` ([3, 3]; identity when
    absent) of a phonopy.conf.

    Raises:
        ArchiveSkipped: ``bad_phonopy_conf``.
    """
    settings = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip().upper()] = value.strip()
    try:
        dim = _matrix(settings["DIM"])
        axis = _matrix(settings["PRIMITIVE_AXIS"]) if "PRIMITIVE_AXIS" in settings else np.eye(3)
    except (KeyError, ValueError, ZeroDivisionError) as exc:
        raise ArchiveSkipped("bad_phonopy_conf", repr(exc)) from exc
    if np.any(np.abs(dim - np.round(dim)) > 1e-9) or abs(np.linalg.det(dim)) < 0.5:
        raise ArchiveSkipped("bad_phonopy_conf", f"DIM not an integer matrix: {dim.tolist()}")
    return np.round(dim).astype(int), axis


def _count_displacements(force_sets: str, disp_yaml: str) -> tuple[int, int]:
    """(displacements in FORCE_SETS' header, displacements listed in disp.yaml)."""
    lines = force_sets.split("\n")
    n_force = int(lines[1].split()[0]) if len(lines) > 1 and lines[1].split() else 0
    n_disp = len(re.findall(r"^- atom:", disp_yaml, flags=re.MULTILINE))
    return n_force, n_disp


def _born_lines(text: str) -> int:
    """Number of Z* lines of a BORN file (non-empty lines after the eps_inf line)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return max(len(lines) - 2, 0)


def _finite(*arrays) -> bool:
    return all(a is None or bool(np.all(np.isfinite(a))) for a in arrays)


def gamma_force_constants(phonon) -> np.ndarray:
    """Gamma K of the primitive cell (eV/A^2): phonopy's dynamical matrix at q = 0 (without
    non-analytic correction) times sqrt(m_i m_j)."""
    phonon.dynamical_matrix.run([0.0, 0.0, 0.0])
    dm = np.asarray(phonon.dynamical_matrix.dynamical_matrix)  # [3N, 3N] complex
    sqrt_m = np.repeat(np.sqrt(phonon.primitive.masses), 3)  # [3N]
    k = np.real(dm) * sqrt_m[:, None] * sqrt_m[None, :]
    return 0.5 * (k + k.T)


def entry_from_files(files: dict[str, bytes], *, use_born: bool = True) -> PhononDBEntry:
    """Force constants, frequencies and (with BORN) eps_inf, Z* and eps_ion of one archive.

    Args:
        files: base name -> bytes, as from `read_archive`.
        use_born: read BORN when present (False: frequencies only, faster to skip nothing).

    Raises:
        ArchiveSkipped: with a reason from `SKIP_REASONS`.
    """
    import phonopy
    from phonopy.exception import BORNFileParseError
    from phonopy.file_IO import parse_BORN
    from phonopy.structure.symmetry import Symmetry

    from dtnn_jax.physics.dielectric import ionic_dielectric, optical_pseudo_inverse
    from dtnn_jax.physics.phonons import gamma_phonons

    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise ArchiveSkipped("missing_file", ", ".join(missing))
    dim, axis = parse_phonopy_conf(files["phonopy.conf"].decode(errors="replace"))
    force_sets = files["FORCE_SETS"].decode(errors="replace")
    try:
        n_force, n_disp = _count_displacements(force_sets, files["disp.yaml"].decode())
    except (ValueError, IndexError) as exc:
        raise ArchiveSkipped("force_sets_unreadable", f"header: {exc}") from exc
    if n_force < n_disp:
        raise ArchiveSkipped(
            "force_sets_missing_displacements", f"{n_force} in FORCE_SETS, {n_disp} in disp.yaml"
        )
    with tempfile.TemporaryDirectory(prefix="phonondb-") as tmp:
        for name in ("POSCAR-unitcell", "FORCE_SETS", "BORN"):
            if name in files:
                (Path(tmp) / name).write_bytes(files[name])
        try:
            from phonopy.interface.calculator import read_crystal_structure

            unitcell, _ = read_crystal_structure(str(Path(tmp) / "POSCAR-unitcell"))
        except Exception as exc:
            raise ArchiveSkipped("bad_structure", repr(exc)) from exc
        try:
            phonon = phonopy.load(
                unitcell=unitcell,
                supercell_matrix=dim,
                primitive_matrix=axis,
                force_sets_filename=str(Path(tmp) / "FORCE_SETS"),
                produce_fc=True,
                symmetrize_fc=False,
                is_nac=False,
                log_level=0,
            )
            k = gamma_force_constants(phonon)
        except Exception as exc:
            raise ArchiveSkipped("force_sets_unreadable", repr(exc)) from exc
        primitive = phonon.primitive
        epsilon = born = None
        if use_born and "BORN" in files:
            n_independent = len(Symmetry(primitive, symprec=1e-5).get_independent_atoms())
            n_lines = _born_lines(files["BORN"].decode(errors="replace"))
            if n_lines != n_independent:
                raise ArchiveSkipped(
                    "born_atom_count_mismatch",
                    f"{n_lines} Z* lines, {n_independent} independent atoms",
                )
            try:
                nac = parse_BORN(primitive, filename=str(Path(tmp) / "BORN"))
            except (BORNFileParseError, ValueError, IndexError) as exc:
                raise ArchiveSkipped("born_unreadable", repr(exc)) from exc
            epsilon = np.asarray(nac["dielectric"], np.float64).reshape(3, 3)
            born = np.asarray(nac["born"], np.float64)  # [N, 3, 3]
    if not _finite(k, epsilon, born):
        raise ArchiveSkipped("non_finite_tensor", "eps_inf, Z* or K")
    masses = np.asarray(primitive.masses, np.float64)
    phonons = gamma_phonons(k, masses)
    frequencies = phonons.frequencies_cm1
    unstable = bool(np.any(frequencies[~phonons.acoustic] < UNSTABLE_CM1))
    lattice = np.asarray(primitive.cell, np.float64)
    e_ionic = None
    if epsilon is not None:
        epsilon = 0.5 * (epsilon + epsilon.T)
        eigenvalues = np.linalg.eigvalsh(epsilon)
        if eigenvalues[0] <= 1.0:
            raise ArchiveSkipped("eps_inf_not_positive", f"eigenvalues {eigenvalues.tolist()}")
        if eigenvalues[-1] > NEAR_METAL_EPS_INF:
            raise ArchiveSkipped("near_metal", f"eps_inf up to {eigenvalues[-1]:.1f}")
        if not unstable:
            kinv = optical_pseudo_inverse(k, treatment="signed", floor=0.0).kinv_a2_per_ev
            e_ionic = ionic_dielectric(born, kinv, abs(np.linalg.det(lattice)))
            e_ionic = 0.5 * (e_ionic + e_ionic.T)
            if not _finite(e_ionic):
                raise ArchiveSkipped("non_finite_tensor", "eps_ion")
    return PhononDBEntry(
        material_id=material_id_of(files),
        lattice=lattice,
        species=tuple(primitive.symbols),
        frac=np.asarray(primitive.scaled_positions, np.float64),
        force_constants=k,
        frequencies_cm1=frequencies,
        e_electronic=epsilon,
        born_charges=born,
        e_ionic=e_ionic,
        unstable=unstable,
        supercell_dim=tuple(int(x) for x in dim.reshape(-1)),
    )
