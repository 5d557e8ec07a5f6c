"""Dielectric data: shipped datasets, user data, splits, frame checks and summaries.

>>> from dtnn_jax.data import load_petousis2017, split_indices
>>> records = load_petousis2017()
>>> len(records)
1056
>>> train, val, test = split_indices(len(records), seed=0)
>>> len(train), len(val), len(test)
(845, 106, 105)
"""

from dtnn_jax.data.combined import (
    TRAINING_SOURCES,
    LabelledCrystal,
    combine,
    group_duplicates,
    load_training_set,
    split_training_set,
)
from dtnn_jax.data.frame_check import (
    FrameCheckReport,
    frame_check,
    frame_check_targets,
    point_group_rotations,
)
from dtnn_jax.data.labelled import ASYMMETRY_TOL, DataValidationError, load_labelled
from dtnn_jax.data.materials_project import load_materials_project, records_from_mp_docs
from dtnn_jax.data.records import (
    CRYSTAL_SYSTEMS,
    FIDELITIES,
    FIDELITY_ABINIT_PBESOL,
    FIDELITY_MP_PBE,
    FIDELITY_UNVERIFIED,
    FIDELITY_VASP_PBESOL,
    SYMPREC_ANGSTROM,
    TARGETS,
    DielectricRecord,
    PhononRecord,
    PoolRecord,
)
from dtnn_jax.data.shipped import load_petousis2017, load_screening_pool
from dtnn_jax.data.sources import (
    VALIDATION_ONLY_SOURCES,
    load_e3nn_models,
    load_phonondb2018,
    load_phonondb2018_force_constants,
    load_phonondb2018_phonons,
)
from dtnn_jax.data.splits import PROJECT_SEEDS, MeanPredictor, fold_indices, split_indices
from dtnn_jax.data.summary import plot_summary, summarize

__all__ = [
    "ASYMMETRY_TOL",
    "CRYSTAL_SYSTEMS",
    "FIDELITIES",
    "FIDELITY_ABINIT_PBESOL",
    "FIDELITY_MP_PBE",
    "FIDELITY_UNVERIFIED",
    "FIDELITY_VASP_PBESOL",
    "PROJECT_SEEDS",
    "SYMPREC_ANGSTROM",
    "TARGETS",
    "TRAINING_SOURCES",
    "VALIDATION_ONLY_SOURCES",
    "DataValidationError",
    "DielectricRecord",
    "FrameCheckReport",
    "LabelledCrystal",
    "MeanPredictor",
    "PhononRecord",
    "PoolRecord",
    "combine",
    "fold_indices",
    "frame_check",
    "frame_check_targets",
    "group_duplicates",
    "load_e3nn_models",
    "load_labelled",
    "load_materials_project",
    "load_petousis2017",
    "load_phonondb2018",
    "load_phonondb2018_force_constants",
    "load_phonondb2018_phonons",
    "load_screening_pool",
    "load_training_set",
    "plot_summary",
    "point_group_rotations",
    "records_from_mp_docs",
    "split_indices",
    "split_training_set",
    "summarize",
]
