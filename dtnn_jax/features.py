"""Descriptor extraction with the frozen encoder: `featurize`, `encoder_energy`, the cache.

The expensive part of training is the frozen encoder; its per-atom features for a dataset
are computed once per (encoder weights, layer, structures) and stored on disk, keyed by a
content hash and verified by a checksum on every read (a stale or truncated cache is rebuilt,
never silently used).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import jraph
import numpy as np
from ase import Atoms
from pymatgen.core import Structure

from dtnn_jax import parallel
from dtnn_jax.config import DEFAULT_ENCODER_LAYER
from dtnn_jax.graph import BatchBudget, build_graph
from dtnn_jax.io import StructureInputError, as_structure, check_elements

CACHE_FORMAT_VERSION = 1
# Edge-packed batches: the encoder's cost is mostly per edge, so batches are filled up to an
# edge bucket (8192) and a node limit just under a node bucket (320 = 80 * 2**2, about 8192
# edges at the ~27 edges per atom of oxides and halides at 5 A). Nearly every batch then has
# the same padded shape: on the shipped set 28 batches in 2 compiled shapes, padded/real 1.10
# (nodes) and 1.04 (edges), against 4 shapes and 1.29/1.37 for 32-crystal batches in
# power-of-two buckets (benchmarks/results/encoder_speed.md has the measured trade-off).
DEFAULT_BUDGET = BatchBudget(
    max_graphs=128, max_nodes=319, max_edges=8192, growth=2.0, min_nodes=80, min_edges=2048
)


def default_cache_dir() -> Path:
    """``$DTNN_JAX_CACHE`` or ``~/.cache/dtnn_jax``."""
    return Path(os.environ.get("DTNN_JAX_CACHE", Path.home() / ".cache" / "dtnn_jax"))


class Encoder:
    """The frozen SevenNet-0 encoder with batched, device-sharded application.

    Attributes:
        params: the converted weights (never trained).
        config: the architecture (cutoff, irreps, supported species).
    """

    name = "SevenNet-0"

    def __init__(self):
        from dtnn_jax.encoder import load_sevennet0

        self.params, self.config = load_sevennet0()

    @property
    def cutoff_angstrom(self) -> float:
        return float(self.config.cutoff_angstrom)

    @property
    def supported_z(self) -> tuple[int, ...]:
        return tuple(self.config.species_z)

    @property
    def weights_sha256(self) -> str:
        return str(self.config.source_sha256)

    def layer_irreps(self, layer: int) -> str:
        """Irreps of the node features after interaction layer ``layer`` (1-based)."""
        self._check_layer(layer)
        return str(self.config.node_irreps[layer])

    def _check_layer(self, layer: int) -> None:
        n = self.config.num_layers
        if not 1 <= int(layer) <= n:
            raise ValueError(f"layer must be in 1..{n}, got {layer}")

    def graph(self, structure: Structure, source: str = "structure") -> jraph.GraphsTuple:
        """Validated neighbour graph of one crystal at the encoder's cutoff."""
        check_elements(structure, self.supported_z, source, self.name)
        try:
            return build_graph(
                structure.cart_coords,
                np.array([s.specie.Z for s in structure], np.int32),
                structure.lattice.matrix,
                structure.lattice.pbc,
                self.cutoff_angstrom,
            )
        except ValueError as err:
            raise StructureInputError(source, str(err)) from err

    @functools.cached_property
    def _apply(self):
        from dtnn_jax.encoder import sevennet_forward

        def forward(params, batch):
            out = sevennet_forward(params, batch, self.config)
            return {
                "energy": out.energy,
                "features": tuple(f.array for f in out.node_features),
                "radial": out.edge_radial,
            }

        return parallel.sharded_vmap(forward)

    def run(
        self,
        graphs: Sequence[jraph.GraphsTuple],
        budget: BatchBudget = DEFAULT_BUDGET,
        progress: bool = False,
    ) -> Iterator[tuple[list[int], dict]]:
        """Applies the encoder to single-crystal graphs, yielding per-batch host results.

        Yields ``(indices, out)`` where ``out`` has ``energy [n]``, ``features`` (a tuple over
        layers of [n_atoms_total, D_k] arrays for these crystals, concatenated in order) and
        ``radial [n_edges_total, n_basis]``; padding is already removed.
        """
        batches = parallel.map_batches(
            self._apply, (self.params,), graphs, budget, progress, desc="encoder"
        )
        for idx, res in batches:
            n_atoms = int(sum(graphs[i].n_node[0] for i in idx))
            n_edges = int(sum(graphs[i].n_edge[0] for i in idx))
            yield (
                idx,
                {
                    "energy": np.asarray(res["energy"][: len(idx)], np.float64),
                    "features": tuple(np.asarray(f[:n_atoms]) for f in res["features"]),
                    "radial": np.asarray(res["radial"][:n_edges]),
                },
            )


@functools.cache
def get_encoder() -> Encoder:
    """The process-wide encoder (weights are loaded once)."""
    return Encoder()


def _source(obj, index: int, structure: Structure) -> str:
    """How errors name an input: its path, or its position and formula."""
    if isinstance(obj, str | os.PathLike):
        return str(obj)
    return f"structure #{index} ({structure.formula})"


def _graphs(encoder: Encoder, structures) -> list[jraph.GraphsTuple]:
    """Validated single-crystal graphs of Structures, ASE Atoms or structure files."""
    out = []
    for i, obj in enumerate(structures):
        s = as_structure(obj, i)
        out.append(encoder.graph(s, source=_source(obj, i, s)))
    return out


def encoder_energy(structure) -> float:
    """Potential energy (eV) of one crystal from the frozen SevenNet-0 encoder."""
    encoder = get_encoder()
    _, energies = featurize_graphs(encoder, _graphs(encoder, [structure]), layer=1)
    return float(energies[0])


def featurize(
    structures,
    layer: int = DEFAULT_ENCODER_LAYER,
    progress: bool = False,
    budget: BatchBudget = DEFAULT_BUDGET,
) -> list[np.ndarray]:
    """Per-atom SevenNet-0 features after interaction layer ``layer`` for each crystal.

    Args:
        structures: pymatgen Structures, ASE Atoms or structure file paths (or one of them).
        layer: 1..5; layers 1-4 give ``128x0e+64x1e+32x2e`` (480 numbers per atom, e3nn-jax
            layout), layer 5 gives ``128x0e``. See `Encoder.layer_irreps`.
        progress: show a progress bar.

    Returns:
        One float32 array [n_atoms_i, D] per crystal, in input order.
    """
    encoder = get_encoder()
    encoder._check_layer(layer)
    if isinstance(structures, Structure | Atoms | str | Path):
        structures = [structures]
    features, _ = featurize_graphs(encoder, _graphs(encoder, structures), layer, progress, budget)
    return features


def featurize_graphs(
    encoder: Encoder,
    graphs: Sequence[jraph.GraphsTuple],
    layer: int,
    progress: bool = False,
    budget: BatchBudget = DEFAULT_BUDGET,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Layer-``layer`` features [n_atoms_i, D] per graph and energies [n_graphs] (eV)."""
    features: list[np.ndarray] = [None] * len(graphs)  # type: ignore[list-item]
    energies = np.zeros(len(graphs))
    for idx, out in encoder.run(graphs, budget, progress):
        offsets = np.cumsum([0] + [int(graphs[i].n_node[0]) for i in idx])
        for k, i in enumerate(idx):
            # a copy, so the padded batch buffers are not kept alive by the results
            features[i] = out["features"][layer - 1][offsets[k] : offsets[k + 1]].copy()
            energies[i] = out["energy"][k]
    return features, energies


# ----------------------------------------------------------------------------------------
# Feature cache for training
# ----------------------------------------------------------------------------------------


def _structures_digest(structures: Sequence[Structure]) -> str:
    h = hashlib.sha256()
    for s in structures:
        h.update(np.ascontiguousarray(s.lattice.matrix, np.float64).tobytes())
        h.update(np.ascontiguousarray(s.cart_coords, np.float64).tobytes())
        h.update(np.array([site.specie.Z for site in s], np.int64).tobytes())
    return h.hexdigest()


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def cache_key(encoder: Encoder, structures: Sequence[Structure], layer: int) -> str:
    meta = f"v{CACHE_FORMAT_VERSION}|{encoder.weights_sha256}|L{layer}|{encoder.cutoff_angstrom}"
    return hashlib.sha256((meta + _structures_digest(structures)).encode()).hexdigest()[:24]


def featurized_graphs(
    structures: Sequence[Structure],
    layer: int,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[jraph.GraphsTuple]:
    """Single-crystal graphs carrying encoder features, from the cache when valid.

    Each graph has ``nodes["features"]`` [n_atoms, D] (layer ``layer``) and
    ``edges["radial"]`` [n_edges, n_basis] besides the usual graph fields — the readout's
    input contract. The encoder runs only on a cache miss; the cache file is verified against
    a checksum and rebuilt if it is stale, truncated or corrupt.
    """
    encoder = get_encoder()
    encoder._check_layer(layer)
    graphs = [encoder.graph(s, source=_source(s, i, s)) for i, s in enumerate(structures)]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(encoder, structures, layer)
    path = cache_dir / f"features-{key}.npz"
    n_node = np.array([int(g.n_node[0]) for g in graphs], np.int64)  # [n_crystals]
    n_edge = np.array([int(g.n_edge[0]) for g in graphs], np.int64)  # [n_crystals]
    arrays = _read_cache(path)
    if arrays is not None and not (
        np.array_equal(arrays.get("n_node"), n_node)
        and np.array_equal(arrays.get("n_edge"), n_edge)
    ):  # e.g. written by a version with different graph building
        warnings.warn(
            f"feature cache {path} does not match the graphs of these structures; rebuilding it",
            stacklevel=2,
        )
        arrays = None
    if arrays is None:
        features, radial = [], []
        for _, out in encoder.run(graphs, progress=progress):
            features.append(out["features"][layer - 1])
            radial.append(out["radial"])
        arrays = {
            "features": np.concatenate(features).astype(np.float32),
            "radial": np.concatenate(radial).astype(np.float32),
            "n_node": n_node,
            "n_edge": n_edge,
        }
        _write_cache(path, arrays)
    node_off = np.concatenate([[0], np.cumsum(arrays["n_node"])])
    edge_off = np.concatenate([[0], np.cumsum(arrays["n_edge"])])
    out_graphs = []
    for i, g in enumerate(graphs):
        out_graphs.append(
            g._replace(
                nodes={**g.nodes, "features": arrays["features"][node_off[i] : node_off[i + 1]]},
                edges={**g.edges, "radial": arrays["radial"][edge_off[i] : edge_off[i + 1]]},
            )
        )
    return out_graphs


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        if meta.get("format") != CACHE_FORMAT_VERSION or meta.get("sha256") != _arrays_digest(
            arrays
        ):
            raise ValueError("checksum mismatch")
        return arrays
    except Exception as err:  # any damage means: rebuild
        warnings.warn(f"feature cache {path} is invalid ({err}); rebuilding it", stacklevel=3)
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes data then checksum, each atomically (rename), so a crash leaves no valid pair.

    Temporary names carry the process id, so concurrent writers of one key do not clobber
    each other's partial files (the last complete pair wins; both are identical).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    meta = {"format": CACHE_FORMAT_VERSION, "sha256": _arrays_digest(arrays)}
    tmp_meta = path.with_suffix(f".tmp{os.getpid()}.json")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, path.with_suffix(".json"))
