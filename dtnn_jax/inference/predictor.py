"""Batch inference: structures -> dielectric tensors with a pretrained ensemble.

Encoder and every readout of every target run in ONE jitted function per padded bucket
shape (compiled once per bucket), vmapped over ensemble members and sharded over local
devices. Inputs are validated one by one first, so one bad crystal never loses the others.

Physics targets (`ExperimentConfig.physics`): the forward gives each member's Born charges;
eps_ion = C / Omega * Z Kinv Z is then formed on the host in float64 with each crystal's
force constants K (`dtnn_jax.inference.ionic`), and a bundle with electronic and ionic parts
but no total serves total = electronic + ionic member by member. Only what the requested
targets need runs: electronic alone runs no ionic head and no K (the Hessian code is not
even imported); Born charges alone run the head but no K; K comes from the per-crystal
cache, computed from the input pass's graphs (one neighbour search per crystal).

Symmetry: Nequix encoders track parity (O(3)), so their models need no averaging. SevenNet-0
(the fast model) is equivariant under proper rotations only (SO(3)): its l = 1 features
are built from the spherical harmonics of bond vectors but labelled even ("1e"), so parity is
not tracked. Rotating a crystal rotates the predicted tensor, eps(R x) = R eps(x) R^T, but
its inverted (mirror) image -x may get a different tensor, although a rank-2 polar tensor is
inversion-even and physically eps(-x) = eps(x). For centrosymmetric crystals -x is the same
crystal (up to a translation) and nothing changes; for non-centrosymmetric ones (chiral
enantiomorphs, polar crystals, and the improper symmetry operations -- mirrors, -4, -6 axes
-- of a crystal's point group) the plain prediction can break that symmetry. With
``inversion_average=True`` the prediction is eps_avg(x) = (eps(x) + eps(-x)) / 2, which is
equivariant under the full orthogonal group O(3): it is unchanged by x -> -x by
construction; for a proper rotation R, -(R x) = R(-x) gives eps_avg(R x) = R eps_avg(x) R^T;
and an improper Q = -R then gives eps_avg(Q x) = eps_avg(R x) = Q eps_avg(x) Q^T. It costs
two forward passes (compiled into one function).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import jax
import numpy as np

from dtnn_jax import parallel
from dtnn_jax.config import TARGETS
from dtnn_jax.encoder import FrozenEncoder, get_encoder
from dtnn_jax.graph import BatchBudget, with_features
from dtnn_jax.graph.geometry import invert
from dtnn_jax.inference.bundle import ModelBundle, load_bundle
from dtnn_jax.inference.prediction import Prediction, ensemble_statistics
from dtnn_jax.inputs import CrystalInput, prepare_inputs
from dtnn_jax.io import StructureInputError
from dtnn_jax.models.scaling import TargetScaler


class DielectricModel:
    """A pretrained ensemble per target, ready to predict.

    Example:
        >>> model = load_model()  # doctest: +SKIP
        >>> eps = model.predict(["POSCAR"], target="total")  # [1, 3, 3]  # doctest: +SKIP
    """

    def __init__(self, bundle: ModelBundle, encoder: FrozenEncoder | None = None):
        for t, tm in bundle.targets.items():
            if tm.config.concatenates_layers:
                raise ValueError(
                    f"bundle {bundle.name!r}, target {t}: readouts on concatenated encoder "
                    "layers are a benchmark ablation and cannot be served"
                )
        names = {tm.config.encoder for tm in bundle.targets.values()}
        if len(names) != 1:
            raise ValueError(f"bundle {bundle.name!r} mixes encoders {sorted(names)}")
        self.bundle = bundle
        self.encoder = encoder or get_encoder(names.pop())
        # A bundle with electronic and ionic parts but no total model serves their sum
        # (member by member): total = electronic + ionic by construction.
        self.summed_total = (
            "total" not in bundle.targets
            and {"electronic", "ionic"} <= set(bundle.targets)
            and self.ensemble_size("electronic") == self.ensemble_size("ionic")
        )
        self.targets = tuple(
            t for t in TARGETS if t in bundle.targets or (t == "total" and self.summed_total)
        )
        self.physics_targets = tuple(
            t for t, tm in bundle.targets.items() if tm.config.physics is not None
        )
        # Stack members along a leading axis: one vmapped readout call per target. Stacked on
        # the host and sent once (jnp.stack per leaf would compile an op per leaf shape).
        self._stacked = jax.device_put(
            {
                t: jax.tree.map(lambda *xs: np.stack(xs), *[m.params for m in tm.members])
                for t, tm in bundle.targets.items()
            }
        )
        self._scalers = {
            t: TargetScaler.stack([m.scaler for m in tm.members])
            for t, tm in bundle.targets.items()
        }
        from dtnn_jax.inference.calibration import Calibration

        self.calibration = Calibration.from_metadata(bundle.metadata)

    @property
    def name(self) -> str:
        return self.bundle.name

    def ensemble_size(self, target: str) -> int:
        if target == "total" and "total" not in self.bundle.targets:
            return self.ensemble_size("electronic")
        return len(self.bundle.targets[target].members)

    def _apply_for(self, heads: tuple[str, ...], inversion_average: bool):
        """The jitted ensemble forward of the ``heads`` targets only (one per head set)."""
        cache = self.__dict__.setdefault("_applies", {})
        if (heads, inversion_average) not in cache:
            cache[heads, inversion_average] = self._forward(inversion_average, heads)
        return cache[heads, inversion_average]

    def _forward(self, inversion_average: bool, targets: tuple[str, ...] | None = None):
        encoder = self.encoder
        from dtnn_jax.models.factory import model_for

        heads = {}
        for t in targets or tuple(self.bundle.targets):
            tm = self.bundle.targets[t]
            module = model_for(tm.config)
            method = type(module).charges if tm.config.physics is not None else None
            heads[t] = (module, method, tm.config.encoder_layer)

        def member_outputs(enc_params, readout_params, scalers, batch):
            """target -> eps [n_members, n_graph, 3, 3] of every readout member, or Born
            charges [n_members, n_node, 3, 3] of every physics member."""
            out = encoder.forward(enc_params, batch)
            result = {}
            for t, (module, method, layer) in heads.items():
                g = with_features(
                    batch,
                    nodes={"features": out.node_features[layer - 1].array},
                    edges={"radial": out.edge_radial},
                )

                def one(p, g=g, m=module, method=method):
                    return m.apply(p, g, deterministic=True, method=method)

                y = jax.vmap(one)(readout_params[t])
                result[t] = y if method is not None else scalers[t].to_eps(y)
            return result

        def forward(enc_params, readout_params, scalers, batch):
            res = member_outputs(enc_params, readout_params, scalers, batch)
            if inversion_average:
                # Each member is averaged over x and -x before the ensemble statistics.
                inv = member_outputs(enc_params, readout_params, scalers, invert(batch))
                res = {t: 0.5 * (res[t] + inv[t]) for t in res}
            return res, batch.n_node

        return parallel.sharded_vmap(forward)

    def prepare(self, structures) -> list[CrystalInput]:
        """The single input pass at this model's encoder (see `dtnn_jax.inputs`)."""
        return list(prepare_inputs(structures, self.encoder))

    def predict_inputs(
        self,
        crystals: Sequence[CrystalInput],
        budget: BatchBudget | None = None,
        progress: bool = False,
        inversion_average: bool = False,
        targets: Sequence[str] | None = None,
        born_charges: bool = True,
        force_constants: bool = False,
    ) -> Prediction:
        """The requested targets for crystals that went through the input pass (`prepare`).

        Only what the request needs runs: the heads of ``targets`` (default: all of the
        model's), and the force constants K only for a physics target's eps_ion (not for
        the electronic tensor, nor for Born charges alone).

        Args:
            crystals: from `prepare`.
            budget, progress, inversion_average: see `predict_detailed`.
            targets: the targets wanted (default all); `Prediction.mean` holds these.
            born_charges: also run the physics heads for their Born charges (ignored for a
                model without them); False leaves `Prediction.born_charges` empty unless a
                requested target computes them anyway.
            force_constants: compute K even if no requested target needs it (for phonons).
        """
        from dtnn_jax.inference.ionic import (
            computed_targets,
            mean_born_charges,
            needs_force_constants,
            physics_eps,
        )

        wanted = tuple(self.targets if targets is None else targets)
        unknown = [t for t in wanted if t not in self.targets]
        if unknown:
            raise ValueError(f"model {self.name} has no {unknown[0]!r} target ({self.targets})")
        eps_heads = computed_targets(self, wanted)
        born_heads = self.physics_targets if (born_charges or force_constants) else ()
        heads = tuple(t for t in self.bundle.targets if t in eps_heads or t in born_heads)
        physics_heads = tuple(t for t in heads if t in self.physics_targets)
        n = len(crystals)
        good = [i for i, c in enumerate(crystals) if c.graph is not None]
        args = (
            self.encoder.params,
            {t: self._stacked[t] for t in heads},
            {t: self._scalers[t] for t in heads},
        )
        apply = self._apply_for(heads, inversion_average)
        graphs = [crystals[i].graph for i in good]
        if physics_heads:
            from dtnn_jax.physics.born import nominal_charges

            graphs = [
                with_features(g, nodes={"charge_nominal": nominal_charges(crystals[i].structure)})
                for g, i in zip(graphs, good, strict=True)
            ]
        # per target and good crystal: [n_members, 3, 3] eps, or [n_members, n_atoms, 3, 3] Z
        members: dict[str, list] = {t: [None] * len(good) for t in heads}
        batches = parallel.map_batches(
            apply, args, graphs, budget or self.encoder.budget, progress, desc="predict"
        )
        for idx, (res, n_node) in batches:  # idx: positions in ``good``
            offsets = np.concatenate([[0], np.cumsum(n_node)])
            for j, k in enumerate(idx):
                for t in heads:
                    if t in self.physics_targets:
                        members[t][k] = res[t][:, offsets[j] : offsets[j + 1]]
                    else:
                        members[t][k] = res[t][:, j]
        born, born_members = mean_born_charges(self, crystals, good, members, physics_heads)
        fcs: list = []
        eps_physics = tuple(t for t in physics_heads if t in eps_heads)
        if force_constants or needs_force_constants(self, eps_physics):
            fcs = physics_eps(self, crystals, good, members, eps_physics, progress)
        if self.summed_total and "total" in wanted:
            members["total"] = [
                e + i for e, i in zip(members["electronic"], members["ionic"], strict=True)
            ]
        mean, std, poly_std, every = ensemble_statistics(members, wanted, n, good)
        raw_std = {t: v.copy() for t, v in std.items()}
        if self.calibration is not None:  # the calibrated 1-sigma (bundle.json)
            std, poly_std = self.calibration.apply(mean, std, poly_std)
        return Prediction(
            mean=mean,
            std=std,
            eps_poly_std=poly_std,
            errors=[c.error for c in crystals],
            sources=[c.source for c in crystals],
            ids=[c.id for c in crystals],
            warnings=[c.warning for c in crystals],
            born_charges=born,
            force_constants=fcs,
            born_charge_members=born_members,
            ensemble_std=raw_std,
            members=every,
        )

    def predict_detailed(
        self,
        structures: Iterable,
        budget: BatchBudget | None = None,
        progress: bool = False,
        inversion_average: bool = False,
    ) -> Prediction:
        """All targets with ensemble mean and std; bad inputs get NaN rows and a reason.

        Args:
            structures: pymatgen Structures, ASE Atoms or structure file paths (a file with
                several crystals gives a row per crystal, see `Prediction.ids`).
            budget: padded-batch limits (default: the encoder's).
            progress: show a progress bar.
            inversion_average: average each member's tensor over the crystal and its
                inverted image (O(3)- instead of SO(3)-equivariant for an SO(3)-only
                encoder; twice the cost, see the module docstring).
        """
        return self.predict_inputs(self.prepare(structures), budget, progress, inversion_average)

    def predict(
        self,
        structures,
        target: str = "total",
        return_std: bool = False,
        errors: str = "raise",
        inversion_average: bool = False,
        return_born_charges: bool = False,
    ):
        """Predicted tensors [n, 3, 3] for a list of crystals (see `predict`)."""
        if return_born_charges and not self.physics_targets:
            raise ValueError(
                f"model {self.name} has no Born-charge head: return_born_charges needs a "
                "physics ionic model (dtnn train --physics)"
            )
        if target != "all" and target not in self.targets:
            raise ValueError(f"target must be one of {(*self.targets, 'all')}, got {target!r}")
        if errors not in ("raise", "nan"):
            raise ValueError(f"errors must be 'raise' or 'nan', got {errors!r}")
        wanted = self.targets if target == "all" else (target,)
        crystals = self.prepare(structures)
        result = self.predict_inputs(
            crystals,
            inversion_average=inversion_average,
            targets=wanted,
            born_charges=return_born_charges,
        )
        for source, warning in zip(result.sources, result.warnings, strict=True):
            if warning:
                warnings.warn(f"{source}: {warning}", stacklevel=2)
        from dtnn_jax.inference.cautions import prediction_cautions

        for crystal, cautions in zip(
            crystals, prediction_cautions(self, crystals, result), strict=True
        ):
            for message in cautions.messages:  # unstable modes, likely metals, small gaps
                warnings.warn(f"{crystal.source}: {message}", stacklevel=2)
        failed = [(s, e) for s, e in zip(result.sources, result.errors, strict=True) if e]
        if failed:
            lines = "; ".join(f"{s}: {e}" for s, e in failed)
            if errors == "raise":
                raise StructureInputError(f"{len(failed)} of {len(result.errors)} inputs", lines)
            warnings.warn(f"no prediction (NaN) for {lines}", stacklevel=2)
        if target == "all":
            out = (result.mean, result.std) if return_std else result.mean
        else:
            out = (result.mean[target], result.std[target]) if return_std else result.mean[target]
        if return_born_charges:
            return (*out, result.born_charges) if return_std else (out, result.born_charges)
        return out


@functools.cache
def _load_cached(name: str | None) -> DielectricModel:
    return DielectricModel(load_bundle(name))


def load_model(name_or_path: str | os.PathLike | None = None) -> DielectricModel:
    """Loads a model bundle: the shipped default, another shipped name, or a directory.

    Also turns on JAX's persistent compilation cache (`dtnn_jax.runtime`), so a second
    process predicting with the same model does not compile again.
    """
    from dtnn_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    if name_or_path is None or not Path(name_or_path).is_dir():
        return _load_cached(None if name_or_path is None else str(name_or_path))
    return DielectricModel(load_bundle(name_or_path))


def predict(
    structures,
    target: str = "total",
    return_std: bool = False,
    model: str | os.PathLike | DielectricModel | None = None,
    errors: str = "raise",
    inversion_average: bool = False,
    return_born_charges: bool = False,
):
    """Dielectric tensors of crystals with the shipped pretrained ensemble.

    Args:
        structures: pymatgen Structures, ASE Atoms or structure file paths (CIF, POSCAR,
            extxyz, pymatgen JSON), or a single one of them.
        target: "electronic", "ionic", "total", or "all" (a dict over the three).
        return_std: also return the ensemble standard deviation per component (the
            calibrated 1-sigma when the bundle carries a calibration).
        model: a `DielectricModel`, a bundle name or a bundle directory (default: shipped).
        errors: "raise" (default): any bad input raises one `StructureInputError` naming
            every bad input and why; "nan": bad inputs get NaN rows and a warning.
        inversion_average: average over the crystal and its inverted image, making the
            prediction O(3)-equivariant (SevenNet-0 alone is SO(3)-only: a crystal and its
            mirror image may otherwise get different tensors); twice the cost.
        return_born_charges: also return each crystal's Born effective charges Z*
            (a list of [n_atoms, 3, 3] arrays in e, first index the field direction, the
            acoustic sum rule holding; None for a failed input). Only a physics model has
            them (the shipped default does); they are fitted through eps_ion, not to Z*
            labels, so trust their sum over a mode more than one atom's entries.

    Returns:
        np.ndarray [n, 3, 3] (or a dict of them; with ``return_std`` a (mean, std) pair),
        one row per crystal: a file holding several crystals (multi-frame extxyz,
        multi-block CIF) gives one row per crystal, in file order
        (`DielectricModel.predict_detailed` names them ``path#k``). With
        ``return_born_charges`` the Born charges come last: ``(eps, z)`` or
        ``(mean, std, z)``.
    """
    if not isinstance(model, DielectricModel):
        model = load_model(model)
    return model.predict(
        structures,
        target=target,
        return_std=return_std,
        errors=errors,
        inversion_average=inversion_average,
        return_born_charges=return_born_charges,
    )
