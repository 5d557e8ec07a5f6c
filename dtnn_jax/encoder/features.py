"""Running a frozen encoder over many crystals, three ways:

* `featurize(structures, layer)`: per-crystal feature arrays, the public descriptor API;
* `encode(encoder, graphs)`: the raw per-batch encoder outputs for graphs (energies, all
  layers' features, edge radial features), device-parallel;
* `graphs_with_features(structures, layer)`: single-crystal graphs that carry one layer's
  features (``nodes["features"]``) and the radial basis (``edges["radial"]``), the readout's
  training input, through the verified per-crystal on-disk cache (`dtnn_jax.encoder.cache`).

`encoder_energy` is the potential energy of one crystal.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import jraph
import numpy as np
from pymatgen.core import Structure

from dtnn_jax import parallel
from dtnn_jax.config import DEFAULT_ENCODER_LAYER
from dtnn_jax.encoder.cache import CrystalCache
from dtnn_jax.encoder.interface import FrozenEncoder
from dtnn_jax.encoder.registry import get_encoder
from dtnn_jax.graph import BatchBudget, with_features
from dtnn_jax.inputs import crystal_graph, graphs_or_raise


@functools.cache
def _sharded_forward(encoder: FrozenEncoder):
    """The jitted, device-sharded encoder forward returning what `encode` yields."""

    def forward(params, batch):
        out = encoder.forward(params, batch)
        return {
            "energy": out.energy,
            "features": tuple(f.array for f in out.node_features),
            "radial": out.edge_radial,
        }

    return parallel.sharded_vmap(forward)


def encode(
    encoder: FrozenEncoder,
    graphs: Sequence[jraph.GraphsTuple],
    budget: BatchBudget | None = None,
    progress: bool = False,
) -> Iterator[tuple[list[int], dict]]:
    """Applies the encoder to single-crystal graphs, yielding per-batch host results.

    Yields ``(indices, out)`` where ``out`` has ``energy`` [n_batch], ``features`` (a tuple
    over layers of [n_atoms_batch, D_k] arrays for these crystals, concatenated in order)
    and ``radial`` [n_edges_batch, n_basis]; the padding is already removed.
    """
    batches = parallel.map_batches(
        _sharded_forward(encoder),
        (encoder.params,),
        graphs,
        budget or encoder.budget,
        progress,
        desc=f"{encoder.name} encoder",
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


def layer_features(
    encoder: FrozenEncoder,
    graphs: Sequence[jraph.GraphsTuple],
    layer: int,
    budget: BatchBudget | None = None,
    progress: bool = False,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Layer-``layer`` features [n_atoms_i, D] per graph and energies [n_graphs] (eV)."""
    encoder.check_layer(layer)
    features: list[np.ndarray] = [None] * len(graphs)  # type: ignore[list-item]
    energies = np.zeros(len(graphs))
    for idx, out in encode(encoder, graphs, budget, progress):
        offsets = np.cumsum([0] + [int(graphs[i].n_node[0]) for i in idx])
        for k, i in enumerate(idx):
            # a copy, so the padded batch buffers are not kept alive by the results
            features[i] = out["features"][layer - 1][offsets[k] : offsets[k + 1]].copy()
            energies[i] = out["energy"][k]
    return features, energies


def featurize(
    structures,
    layer: int = DEFAULT_ENCODER_LAYER,
    progress: bool = False,
    budget: BatchBudget | None = None,
    encoder: str | FrozenEncoder | None = None,
) -> list[np.ndarray]:
    """Per-atom features of a frozen encoder after interaction layer ``layer``.

    Args:
        structures: pymatgen Structures, ASE Atoms or structure file paths (or one of them).
        layer: 1..num_layers. SevenNet-0: layers 1-4 give ``128x0e+64x1e+32x2e`` (480
            numbers per atom, e3nn-jax layout), layer 5 gives ``128x0e``. See
            ``get_encoder(name).layer_irreps``.
        progress: show a progress bar.
        budget: padded-batch limits (default: the encoder's).
        encoder: registry name or encoder (default "sevennet-0").

    Returns:
        One float32 array [n_atoms_i, D] per crystal, in input order (a file holding
        several crystals gives one array per crystal, in file order).

    Raises:
        StructureInputError: naming the first input that cannot be used.
    """
    encoder = get_encoder(encoder)
    encoder.check_layer(layer)
    graphs = graphs_or_raise(structures, encoder)
    features, _ = layer_features(encoder, graphs, layer, budget, progress)
    return features


def encoder_energy(structure, encoder: str | FrozenEncoder | None = None) -> float:
    """Potential energy (eV) of one crystal from a frozen encoder (default SevenNet-0)."""
    encoder = get_encoder(encoder)
    _, energies = layer_features(encoder, graphs_or_raise([structure], encoder), layer=1)
    return float(energies[0])


def features_setting(encoder: FrozenEncoder, layer: int) -> str:
    """What a feature cache entry depends on besides the crystal."""
    return (
        f"{encoder.key}|{encoder.weights_sha256}|L{layer}|cutoff{encoder.cutoff_angstrom}|float32"
    )


def graphs_with_features(
    structures: Sequence[Structure],
    layer: int,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    encoder: str | FrozenEncoder | None = None,
    graphs: Sequence[jraph.GraphsTuple] | None = None,
) -> list[jraph.GraphsTuple]:
    """Single-crystal graphs carrying one layer's encoder features, from the cache if valid.

    Each graph has ``nodes["features"]`` [n_atoms, D] (layer ``layer``) and
    ``edges["radial"]`` [n_edges, n_basis] besides the usual graph fields: the readout's
    input contract. The cache (`dtnn_jax.encoder.cache.CrystalCache`, kind ``features``)
    holds one entry per crystal, written as each encoder batch finishes; the encoder runs
    only on the crystals without a valid entry (an entry is verified against its checksum
    and its graph's node and edge counts, and rebuilt if stale, truncated or corrupt).

    Args:
        structures: validated pymatgen Structures (e.g. dataset records' structures).
        layer: the encoder layer.
        cache_dir: cache directory (default ``$DTNN_JAX_CACHE`` or ``~/.cache/dtnn_jax``).
        progress: show a progress bar while encoding.
        encoder: registry name or encoder (default "sevennet-0").
        graphs: the structures' graphs at the encoder's cutoff, if already built (the
            input pass): no second neighbour search.
    """
    import warnings

    encoder = get_encoder(encoder)
    encoder.check_layer(layer)
    if graphs is None:
        graphs = [
            crystal_graph(s, encoder, source=f"#{i} ({s.formula})")
            for i, s in enumerate(structures)
        ]
    cache = CrystalCache(cache_dir, "features", features_setting(encoder, layer))
    entries: list = [None] * len(graphs)
    for i, (s, g) in enumerate(zip(structures, graphs, strict=True)):
        arrays = cache.load(s)
        if arrays is None:
            continue
        if int(arrays.get("n_node", -1)) == int(g.n_node[0]) and int(
            arrays.get("n_edge", -1)
        ) == int(g.n_edge[0]):
            entries[i] = arrays
        else:  # e.g. written by a version with different graph building
            warnings.warn(
                f"feature cache entry of #{i} ({s.formula}) does not match its graph; "
                "rebuilding it",
                stacklevel=2,
            )
    todo = [i for i, e in enumerate(entries) if e is None]
    if todo:
        for idx, out in encode(encoder, [graphs[i] for i in todo], progress=progress):
            node_off = np.cumsum([0] + [int(graphs[todo[k]].n_node[0]) for k in idx])
            edge_off = np.cumsum([0] + [int(graphs[todo[k]].n_edge[0]) for k in idx])
            items = []
            for j, k in enumerate(idx):
                i = todo[k]
                entries[i] = {
                    "features": out["features"][layer - 1][node_off[j] : node_off[j + 1]].astype(
                        np.float32
                    ),
                    "radial": out["radial"][edge_off[j] : edge_off[j + 1]].astype(np.float32),
                    "n_node": np.array(graphs[i].n_node[0], np.int64),
                    "n_edge": np.array(graphs[i].n_edge[0], np.int64),
                }
                items.append((structures[i], entries[i]))
            cache.store_many(items)  # this batch is kept even if the run is killed later
    return [
        with_features(g, nodes={"features": e["features"]}, edges={"radial": e["radial"]})
        for g, e in zip(graphs, entries, strict=True)
    ]
