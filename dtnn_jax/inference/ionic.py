"""The physics ionic targets of a prediction: which need K, and eps_ion from Z and K.

A physics target's forward gives each member's Born charges Z; eps_ion = C / Omega *
Z Kinv Z is formed here on the host in float64 with each crystal's force constants K
(`dtnn_jax.physics.force_constants`, imported only when some requested target needs K:
an electronic-only prediction never loads or runs the Hessian code).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def computed_targets(model, requested: Iterable[str]) -> tuple[str, ...]:
    """The bundle targets whose heads must run for ``requested`` (a summed total needs its
    electronic and ionic parts), in the bundle's order."""
    need = set(requested)
    if "total" in need and model.summed_total:
        need |= {"electronic", "ionic"}
    return tuple(t for t in model.bundle.targets if t in need)


def needs_force_constants(model, heads: Iterable[str], born_only: Iterable[str] = ()) -> bool:
    """Whether any head in ``heads`` is a physics target whose eps_ion is wanted (heads run
    only for their Born charges, ``born_only``, need no K)."""
    born_only = set(born_only)
    return any(t in model.physics_targets and t not in born_only for t in heads)


def physics_eps(
    model,
    crystals: Sequence,
    good: list[int],
    members: dict[str, list],
    eps_targets: Iterable[str],
    progress: bool = False,
    graphs_cutoff: float | None = None,
) -> list:
    """eps_ion of the physics targets in ``eps_targets``, member by member, from the members'
    Born charges (in ``members``, replaced by eps in place) and each crystal's K; float64.

    Returns each crystal's `ForceConstants` (None for failed inputs). K is computed (or read
    from the per-crystal cache) with the model's encoder, from the input pass's graphs.
    """
    from dtnn_jax.physics.dielectric import IONIC_PREFACTOR_EV_ANGSTROM
    from dtnn_jax.physics.force_constants import force_constants

    structures = [crystals[i].structure for i in good]
    graphs = [crystals[i].graph for i in good]
    fcs = (
        force_constants(
            structures,
            model.encoder,
            progress=progress,
            graphs=graphs,
            graphs_cutoff=graphs_cutoff,
        )
        if good
        else []
    )
    k_list: list = [None] * len(crystals)
    for row, fc in zip(good, fcs, strict=True):
        k_list[row] = fc
    for t in eps_targets:
        physics = model.bundle.targets[t].config.physics
        for k, (row, fc) in enumerate(zip(good, fcs, strict=True)):
            z = np.asarray(members[t][k], np.float64)  # [n_members, n_atoms, 3, 3]
            kinv = fc.optical_pseudo_inverse(physics.treatment, physics.floor).kinv_a2_per_ev
            zs = np.swapaxes(z, -1, -2).reshape(z.shape[0], -1, 3)  # [M, 3N, 3]
            eps = np.einsum("mia,ij,mjb->mab", zs, kinv, zs)  # [M, 3, 3]
            members[t][k] = IONIC_PREFACTOR_EV_ANGSTROM / crystals[row].structure.volume * eps
    return k_list


def mean_born_charges(
    model, crystals: Sequence, good: list[int], members: dict, physics_heads: Sequence[str]
) -> list:
    """Each crystal's ensemble-mean Born charges [n_atoms, 3, 3] and every member's
    [n_members, n_atoms, 3, 3] (None for failed inputs), from the last physics head's
    members (read before `physics_eps` replaces them); ([], []) when no physics head ran."""
    if not physics_heads:
        return [], []
    born: list = [None] * len(crystals)
    every: list = [None] * len(crystals)
    t = physics_heads[-1]
    for k, row in enumerate(good):
        every[row] = np.asarray(members[t][k], np.float64)
        born[row] = every[row].mean(0).astype(np.float32)
    return born, every


def physics_model(model, needs: str):
    """``model`` (a `DielectricModel`, bundle name or directory; None: the shipped default)
    loaded, checked to be a physics model with an electronic target: ValueError naming what
    ``needs`` it otherwise."""
    from dtnn_jax.inference.predictor import DielectricModel, load_model

    model = model if isinstance(model, DielectricModel) else load_model(model)
    if not model.physics_targets or "electronic" not in model.targets:
        raise ValueError(
            f"model {model.name} has no Born-charge head: {needs} needs Born charges, force "
            "constants and eps_inf (a physics model: dtnn train --physics)"
        )
    return model
