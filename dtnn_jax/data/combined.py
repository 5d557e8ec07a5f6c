"""One training set from several label sources: deduplicated crystals that keep every label.

A crystal found in two sources (same Materials Project id, or, across sources, the same
structure by pymatgen's ``StructureMatcher``) becomes one `LabelledCrystal` holding each
source's `DielectricRecord` with its own structure, frame and fidelity: labels of different
functionals are never averaged. `split_training_set` extends the 5-seed Petousis protocol
(`dtnn_jax.data.splits.split_indices` on the 1,056 Petousis records) to the combined set: a
crystal that holds a Petousis record goes where that record goes, so every duplicate of a
Petousis test crystal is on the test side and the Petousis test metrics stay comparable
with every earlier number; crystals without a Petousis record go to training.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dtnn_jax.data.records import DielectricRecord, symmetry_of
from dtnn_jax.data.shipped import DATA_DIR, FORMAT_VERSION
from dtnn_jax.data.sources import (
    SOURCE_PETOUSIS,
    SOURCE_PHONONDB,
    VALIDATION_ONLY_SOURCES,
)
from dtnn_jax.data.splits import split_indices

GROUPS_FILE = "label_groups.json.gz"
MATCH_SYMPREC_ANGSTROM = 0.01
"""Structure-matched records must also share their space group at this spglib tolerance:
``StructureMatcher``'s defaults alone join slightly distorted polymorphs (tetragonal and
cubic BaTiO3; rocksalt SnSe mp-2693 and its tetragonal distortion mp-8936)."""
TRAINING_SOURCES: tuple[str, ...] = (SOURCE_PETOUSIS, SOURCE_PHONONDB)
"""Sources in the default training set (validation-only sources are left out)."""


def record_key(record: DielectricRecord) -> str:
    """``"source:material_id"``, unique across the shipped sources."""
    return f"{record.source}:{record.material_id}"


@dataclasses.dataclass(frozen=True)
class LabelledCrystal:
    """One crystal and every source's labels for it.

    Attributes:
        crystal_id: the mp-id where one is known (the first in source order), else the
            first record's key.
        records: one `DielectricRecord` per (source, entry), in the order of the sources
            given to `combine` (Petousis first by default). Each keeps its own structure
            and frame; compare tensors across records only through frame-invariant
            quantities (eigenvalues, traces).
    """

    crystal_id: str
    records: tuple[DielectricRecord, ...]

    @property
    def formula(self) -> str:
        return self.records[0].formula

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(r.source for r in self.records)

    @property
    def fidelities(self) -> tuple[str, ...]:
        return tuple(r.fidelity for r in self.records)

    def record(self, source: str) -> DielectricRecord | None:
        """The first record of ``source``, or None."""
        return next((r for r in self.records if r.source == source), None)

    def labels(self, target: str) -> list[DielectricRecord]:
        """Records carrying ``target`` (one of ``TARGETS``, or ``"born_charges"``)."""
        if target == "born_charges":
            return [r for r in self.records if r.born_charges is not None]
        return [r for r in self.records if r.has_target(target)]


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _mp_id(record: DielectricRecord) -> str | None:
    return record.material_id if record.material_id.startswith("mp-") else None


def group_duplicates(
    records: Sequence[DielectricRecord], match_structures: str = "idless"
) -> list[list[int]]:
    """Indices of the records that are the same crystal, one list per crystal.

    Records with the same mp-id are one crystal. Then records of different sources with
    the same reduced formula are compared with pymatgen's ``StructureMatcher`` (defaults:
    ltol 0.2, stol 0.3, angle_tol 5, primitive cells, volumes scaled, so PBE and PBEsol
    cells of one crystal match) and must have the same space group at symprec
    ``MATCH_SYMPREC_ANGSTROM`` (0.01 A): for pairs where at least one record has no mp-id
    (``match_structures="idless"``), for every cross-source pair (``"all"``, which also
    merges two mp-ids of one structure), or never (``"none"``).

    Returns:
        groups in order of their first record; each sorted.
    """
    if match_structures not in ("idless", "all", "none"):
        raise ValueError(f"match_structures must be idless, all or none: {match_structures!r}")
    uf = _UnionFind(len(records))
    first_by_id: dict[str, int] = {}
    for i, record in enumerate(records):
        mp_id = _mp_id(record)
        if mp_id is not None:
            uf.union(first_by_id.setdefault(mp_id, i), i)
    if match_structures != "none":
        from pymatgen.analysis.structure_matcher import StructureMatcher

        matcher = StructureMatcher()

        @functools.cache
        def tight_spacegroup(i: int) -> int:
            return symmetry_of(records[i].structure, MATCH_SYMPREC_ANGSTROM)[0]

        by_formula: dict[str, list[int]] = defaultdict(list)
        for i, record in enumerate(records):
            by_formula[record.structure.composition.reduced_formula].append(i)
        for members in by_formula.values():
            for a_pos, a in enumerate(members):
                for b in members[a_pos + 1 :]:
                    ra, rb = records[a], records[b]
                    if ra.source == rb.source or uf.find(a) == uf.find(b):
                        continue
                    both_ids = _mp_id(ra) is not None and _mp_id(rb) is not None
                    if match_structures == "idless" and both_ids:
                        continue
                    if matcher.fit(ra.structure, rb.structure) and (
                        tight_spacegroup(a) == tight_spacegroup(b)
                    ):
                        uf.union(a, b)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        groups[uf.find(i)].append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def combine(
    records: Sequence[DielectricRecord], groups: Sequence[Sequence[int]] | None = None
) -> list[LabelledCrystal]:
    """`LabelledCrystal`s from records and their duplicate groups (`group_duplicates` when
    ``groups`` is None)."""
    if groups is None:
        groups = group_duplicates(records)
    crystals = []
    for group in groups:
        members = tuple(records[i] for i in sorted(group))
        ids = [r.material_id for r in members if _mp_id(r)]
        crystals.append(LabelledCrystal(ids[0] if ids else record_key(members[0]), members))
    return crystals


@functools.lru_cache(maxsize=2)
def _shipped_groups(path: Path) -> tuple[tuple[str, ...], ...]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        payload = json.load(f)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {payload.get('format_version')}")
    return tuple(tuple(group) for group in payload["groups"])


def groups_from_keys(
    records: Sequence[DielectricRecord], key_groups: Sequence[Sequence[str]]
) -> list[list[int]]:
    """Duplicate groups over ``records`` from precomputed groups of `record_key`s; a record
    not named in any group is its own crystal, and records sharing an mp-id are joined."""
    index = {record_key(r): i for i, r in enumerate(records)}
    uf = _UnionFind(len(records))
    for group in key_groups:
        present = [index[k] for k in group if k in index]
        for i in present[1:]:
            uf.union(present[0], i)
    first_by_id: dict[str, int] = {}
    for i, record in enumerate(records):
        mp_id = _mp_id(record)
        if mp_id is not None:
            uf.union(first_by_id.setdefault(mp_id, i), i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        groups[uf.find(i)].append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def load_training_set(
    sources: Sequence[str] = TRAINING_SOURCES, include_validation_only: bool = False
) -> list[LabelledCrystal]:
    """The shipped label sources combined and deduplicated, one `LabelledCrystal` each.

    Default: Petousis 2017 (MP PBE) and phonondb 2018 (VASP PBEsol), Petousis records first
    within each crystal. Duplicates are the same mp-id, or the same structure across
    sources (``StructureMatcher``, precomputed for the shipped files in
    ``label_groups.json.gz`` by ``experiments/prepare_labels.py``).

    Args:
        sources: source names, in priority order (``"petousis2017"``, ``"phonondb2018"``,
            ``"e3nn_models"``).
        include_validation_only: allow sources in ``VALIDATION_ONLY_SOURCES`` (e3nn-models,
            whose provenance is not pinned). Without it, naming one raises ``ValueError``.
    """
    from dtnn_jax.data.shipped import load_petousis2017
    from dtnn_jax.data.sources import SOURCE_E3NN, load_e3nn_models, load_phonondb2018

    loaders = {
        SOURCE_PETOUSIS: load_petousis2017,
        SOURCE_PHONONDB: load_phonondb2018,
        SOURCE_E3NN: load_e3nn_models,
    }
    records: list[DielectricRecord] = []
    for source in sources:
        if source not in loaders:
            raise ValueError(f"unknown source {source!r}; expected one of {sorted(loaders)}")
        if source in VALIDATION_ONLY_SOURCES and not include_validation_only:
            raise ValueError(f"{source} is validation-only; pass include_validation_only=True")
        records.extend(loaders[source]())
    key_groups = _shipped_groups(DATA_DIR / GROUPS_FILE)
    return combine(records, groups_from_keys(records, key_groups))


def split_training_set(
    crystals: Sequence[LabelledCrystal],
    seed: int,
    petousis_records: Sequence[DielectricRecord] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices into ``crystals`` that keep the Petousis protocol.

    The Petousis records are split by ``split_indices(len(petousis_records), seed)`` (the
    project's protocol); each crystal that holds a Petousis record (by mp-id, or a
    structure-matched duplicate) takes that record's side; every other crystal is train.
    Hence the Petousis test crystals and all their duplicates from other sources are test.

    A group can hold two Petousis records that MP lists as different ids but that are the
    same structure within tolerance (shipped data: CaBr2 mp-22888 / mp-571166, Rb2O
    mp-1394 / mp-753746, BaTiO3 mp-5986 / mp-12992, joined through a matching e3nn-models
    record). If the protocol puts them on different sides, the whole crystal goes to the
    more held-out side (test > val > train), so the test side can hold one Petousis record
    more than ``split_indices`` (seeds 0, 1 and 3: mp-1394). For numbers comparable with
    earlier Petousis tables, score the records ``split_indices`` puts on test.

    Args:
        crystals: from `load_training_set` or `combine`.
        seed: split seed (the project uses 0..4).
        petousis_records: the Petousis list the protocol indexes (default: the shipped
            ``load_petousis2017()``, in its order).

    Returns:
        (train, val, test) sorted int64 index arrays.
    """
    if petousis_records is None:
        from dtnn_jax.data.shipped import load_petousis2017

        petousis_records = load_petousis2017()
    train, val, test = split_indices(len(petousis_records), seed)
    side = {}
    for name, idx in (("train", train), ("val", val), ("test", test)):
        for i in idx:
            side[petousis_records[int(i)].material_id] = name
    rank = {"train": 0, "val": 1, "test": 2}
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, crystal in enumerate(crystals):
        sides = [
            side[r.material_id]
            for r in crystal.records
            if r.source == SOURCE_PETOUSIS and r.material_id in side
        ]
        parts[max(sides, key=rank.__getitem__) if sides else "train"].append(i)
    return tuple(np.asarray(sorted(parts[k]), np.int64) for k in ("train", "val", "test"))
