"""Speed of frozen-encoder featurization in JAX against torch sevenn, on the shipped set.

On the 1,056 crystals of Petousis et al. (2017) (7,952 atoms), pymatgen ``Structure`` ->
per-atom features of interaction layer ``--layer``, in alternating rounds
(JAX, torch, JAX, torch, ...; ``--rounds``):

* JAX: the production path, `dtnn_jax.encoder.features.layer_features` with the encoder's
  own batch budget, ``--jax-passes`` warm passes over the set per round (their median is the
  round's time; the first, cold pass with every jit compilation is timed apart).
  ``--encoder NAME`` picks the registry encoder (default ``sevennet-0``); graph building
  (``crystal_graph``) is timed apart.
* torch: SevenNet-0 in sevenn 0.13.0 (float32, force module removed, ``torch.no_grad``) in a
  persistent worker subprocess of ``--torch-python`` (torch is not a dependency of this
  package), every round in four modes: one crystal at a time (sevenn's calculator path,
  ``set_is_batch_data(False)``) and batches of 32 (torch_geometric ``Batch``), each with
  ``torch.set_num_threads(1)`` and ``(2)``. sevenn's graph building
  (``unlabeled_atoms_to_graph``) is timed apart. Every mode has one warm-up pass first.

The summary gives the median over rounds of each pipeline and compares JAX with torch's
*fastest* mode of the same run, end to end (graphs + encoder) and encoder only. The 1-minute
load average is recorded before and after every round, with the CPU time that other
processes used during the round (from ``/proc/stat``, less this benchmark's own processes);
the run is flagged **machine not quiet** if the load average exceeded 0.5 before the first
round or other processes used more than 0.25 of a core during any round (after the first
round the load average includes this benchmark's own threads, so the CPU time of the
others is the test there).

``--sweep`` adds the JAX batch-budget trade-off study (compilations vs warm throughput for
several `BatchBudget`s; SevenNet only). ``--no-torch`` skips torch; ``--crystals N`` uses an
evenly spaced subset of N crystals on both sides (quick runs).

Setting up torch (outside the repository; CPU wheels only)::

    python3 -m venv /work/torch-ref-venv
    /work/torch-ref-venv/bin/pip install torch==2.13.0 sevenn==0.13.0

The SevenNet-0 checkpoint is the one bundled in the sevenn 0.13.0 package (its sha256 is
checked against the converted JAX weights); ``--pth`` gives another path.

Usage (final numbers: on a quiet machine, nothing else running)::

    python benchmarks/encoder_speed.py --torch-python /work/torch-ref-venv/bin/python \
        --rounds 5 --out benchmarks/results/encoder_speed.json

writes the JSON and a markdown table next to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dtnn_jax.training.report import cpu_model, load_average

TORCH_BATCH_SIZE = 32
TORCH_THREADS = (1, 2)
TORCH_MODES = [(batch, threads) for batch in (1, TORCH_BATCH_SIZE) for threads in TORCH_THREADS]
DEFAULT_TORCH_PYTHON = Path("/work/torch-ref-venv/bin/python")
QUIET_LOAD = 0.5  # 1-minute load average before the first round
QUIET_OTHERS_CORES = 0.25  # CPU used by other processes during a round, in cores


# ----------------------------------------------------------------------------------------
# machine description and load
# ----------------------------------------------------------------------------------------


def _cpu_seconds_all() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


class RoundMeter:
    """Load average before/after a round and the CPU that other processes used during it."""

    def __init__(self, own_pids: list[int]):
        self.own_pids = own_pids

    def __enter__(self):
        self.record = {"load_before": load_average()}
        self._all = _cpu_seconds_all()
        self._own = sum(_cpu_seconds_of(p) for p in [os.getpid(), *self.own_pids])
        self._start = time.perf_counter()
        return self.record

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._start
        self.record["load_after"] = load_average()
        self.record["wall_s"] = wall
        end = _cpu_seconds_all()
        if self._all and end:
            own = sum(_cpu_seconds_of(p) for p in [os.getpid(), *self.own_pids]) - self._own
            busy, steal = end[0] - self._all[0], end[1] - self._all[1]
            self.record["others_cpu_cores"] = round(max(busy - own, 0.0) / wall, 3)
            self.record["steal_cpu_cores"] = round(steal / wall, 3)
        return False


# ----------------------------------------------------------------------------------------
# torch original: a persistent worker (runs in the torch interpreter; no dtnn_jax imports)
# ----------------------------------------------------------------------------------------


def torch_worker(structures_npz: Path, pth: str | None):
    """Loads the model and graphs once, then times all modes on every 'round' on stdin.

    Protocol: the worker prints one JSON line on stdout when ready ({"ready": ...}) and one
    per 'round' line it reads; 'quit' (or end of input) ends it.
    """
    import ase
    import sevenn
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from sevenn.util import model_from_checkpoint, pretrained_name_to_path
    from torch_geometric.data import Batch

    protocol = sys.stdout
    sys.stdout = sys.stderr  # anything sevenn prints must not break the protocol
    path = Path(pth) if pth else Path(pretrained_name_to_path("7net-0"))
    if not path.is_file():
        raise SystemExit(f"SevenNet-0 checkpoint not found: {path} (give --pth)")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

    torch.set_default_dtype(torch.float32)
    with np.load(structures_npz) as f:
        numbers, positions, cells, n_atoms = (
            f[k] for k in ("numbers", "positions", "cells", "n_atoms")
        )
    bounds = np.concatenate([[0], np.cumsum(n_atoms)])
    atoms = [
        ase.Atoms(
            numbers=numbers[bounds[i] : bounds[i + 1]],
            positions=positions[bounds[i] : bounds[i + 1]],
            cell=cells[i],
            pbc=True,
        )
        for i in range(len(n_atoms))
    ]
    model, config = model_from_checkpoint(str(path))
    model.delete_module_by_key("force_output")
    model.eval()
    cutoff = float(config["cutoff"])

    def build():
        return [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, cutoff)) for a in atoms]

    graph_times = []
    for _ in range(2):
        start = time.perf_counter()
        build()
        graph_times.append(time.perf_counter() - start)
    # one graph list per mode: the model writes its outputs into the data it is given
    graphs = {mode: build() for mode in TORCH_MODES}

    def encoder_pass(batch_size: int, data):
        energies = []
        model.set_is_batch_data(batch_size > 1)
        with torch.no_grad():
            if batch_size == 1:
                for g in data:
                    out = model(g)
                    energies.append(float(out["inferred_total_energy"].reshape(-1)[0]))
            else:
                for i in range(0, len(data), batch_size):
                    out = model(Batch.from_data_list(data[i : i + batch_size]))
                    energies.extend(out["inferred_total_energy"].reshape(-1).tolist())
        return energies

    warm: set = set()
    print(
        json.dumps(
            {
                "ready": True,
                "torch_version": torch.__version__,
                "sevenn_version": sevenn.__version__,
                "checkpoint": str(path),
                "checkpoint_sha256": sha256,
                "graph_s": min(graph_times),
            }
        ),
        file=protocol,
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() != "round":
            break
        result = {}
        for batch_size, threads in TORCH_MODES:
            torch.set_num_threads(threads)
            mode = (batch_size, threads)
            entry = {}
            if mode not in warm:  # first use: a warm-up pass
                start = time.perf_counter()
                encoder_pass(batch_size, graphs[mode])
                entry["warmup_pass_s"] = time.perf_counter() - start
                warm.add(mode)
            start = time.perf_counter()
            energies = encoder_pass(batch_size, graphs[mode])
            entry["pass_s"] = time.perf_counter() - start
            entry["energies_ev"] = energies
            result[f"batch{batch_size}_threads{threads}"] = entry
        print(json.dumps(result), file=protocol, flush=True)


class TorchWorker:
    """The torch worker subprocess, started once, asked for one round at a time."""

    def __init__(self, structures, python: str, pth: Path | None):
        self._tmp = tempfile.TemporaryDirectory()
        npz = Path(self._tmp.name) / "structures.npz"
        np.savez(
            npz,
            numbers=np.concatenate([s.atomic_numbers for s in structures]).astype(np.int64),
            positions=np.concatenate([s.cart_coords for s in structures]),
            cells=np.stack([s.lattice.matrix for s in structures]),
            n_atoms=np.array([len(s) for s in structures]),
        )
        cmd = [python, str(Path(__file__).resolve()), "--torch-worker", str(npz)]
        if pth:
            cmd += ["--pth", str(pth)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise SystemExit(f"the torch worker exited ({code}); see its messages above")
        return json.loads(line)

    def round(self) -> dict:
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        self._tmp.cleanup()


def find_torch_python(requested: str | None) -> str | None:
    """The interpreter for torch: ``requested``, the default venv, or this one if it has torch."""
    if requested:
        if not Path(requested).exists():
            raise SystemExit(f"--torch-python {requested}: no such interpreter")
        return requested
    if DEFAULT_TORCH_PYTHON.exists():
        return str(DEFAULT_TORCH_PYTHON)
    try:
        import sevenn  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return None
    return sys.executable


# ----------------------------------------------------------------------------------------
# JAX
# ----------------------------------------------------------------------------------------


class CompileClock:
    """Sums JAX's compile-duration events (trace, lower to MLIR, XLA backend compile)."""

    def __init__(self):
        import jax

        self.seconds = 0.0
        self.backend_compiles = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **_):
        if event.startswith("/jax/core/compile/"):
            self.seconds += duration
            self.backend_compiles += event.endswith("backend_compile_duration")

    def reset(self):
        self.seconds, self.backend_compiles = 0.0, 0


def jax_budget_run(encoder, graphs, layer: int, budget, repeats: int, clock) -> dict:
    """Cold and warm encoder passes with a fresh jit cache for one budget."""
    from dtnn_jax import parallel
    from dtnn_jax.encoder import features
    from dtnn_jax.encoder.features import layer_features
    from dtnn_jax.graph import padded_batches

    features._sharded_forward.cache_clear()  # a fresh jit cache for this budget
    n_dev = parallel.n_data_shards()
    shapes = set()
    batches = padded_nodes = padded_edges = 0
    for indices, stacked in padded_batches(graphs, budget, shards=n_dev):
        batches += sum(1 for idx in indices if idx)
        n_nodes, n_edges = stacked.nodes["species"].shape[1], stacked.senders.shape[1]
        shapes.add((n_nodes, n_edges, stacked.n_node.shape[1]))
        padded_nodes += n_dev * n_nodes
        padded_edges += n_dev * n_edges
    real_nodes = sum(int(g.n_node[0]) for g in graphs)
    real_edges = sum(int(g.n_edge[0]) for g in graphs)

    clock.reset()
    start = time.perf_counter()
    layer_features(encoder, graphs, layer, budget=budget)
    first = time.perf_counter() - start
    compile_s, backend_compiles = clock.seconds, clock.backend_compiles
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer_features(encoder, graphs, layer, budget=budget)
        warm.append(time.perf_counter() - start)
    cache_size = getattr(features._sharded_forward(encoder), "_cache_size", lambda: None)()
    return {
        "budget": {k: getattr(budget, k) for k in budget.__dataclass_fields__},
        "batches": batches,
        "distinct_padded_shapes": sorted([list(s) for s in shapes]),
        "jit_cache_size": cache_size,
        "backend_compiles": backend_compiles,
        "compile_s": compile_s,
        "first_pass_s": first,
        "warm_pass_s": float(np.median(warm)),
        "padding_nodes": padded_nodes / real_nodes,
        "padding_edges": padded_edges / real_edges,
    }


def candidate_budgets(encoder):
    """(name, BatchBudget): the encoder's default and the alternatives of the trade-off study."""
    from dtnn_jax.graph import BatchBudget

    return [
        ("default", encoder.budget),
        ("previous default", BatchBudget(max_graphs=32, max_nodes=1024, max_edges=65536)),
        ("16 crystals, growth 1.5", BatchBudget(max_graphs=16, growth=1.5, min_edges=1024)),
        ("edges 4096", BatchBudget(max_graphs=64, max_nodes=255, max_edges=4096)),
        ("edges 16384", BatchBudget(128, 639, 16384, min_nodes=80)),
        ("edges 16384, nodes 1023", BatchBudget(128, 1023, 16384)),
        ("edges 32768", BatchBudget(256, 1279, 32768, min_nodes=80)),
    ]


def jax_pass(encoder, graphs, layer: int) -> tuple[float, np.ndarray]:
    """One pass of the production path; (seconds, energies)."""
    from dtnn_jax.encoder.features import layer_features

    start = time.perf_counter()
    _, energies = layer_features(encoder, graphs, layer)
    return time.perf_counter() - start, energies


# ----------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------


def subset(n_total: int, n: int | None) -> list[int]:
    """Evenly spaced indices of ``n`` of ``n_total`` items (all if n is None)."""
    if not n or n >= n_total:
        return list(range(n_total))
    return sorted({round(float(x)) for x in np.linspace(0, n_total - 1, n)})


def _pipeline_summary(pass_s: list[float], graph_s: float, n: int, atoms: int) -> dict:
    median = float(np.median(pass_s))
    return {
        "pass_s": pass_s,
        "median_pass_s": median,
        "graph_s": graph_s,
        "structures_per_s": n / (graph_s + median),
        "atoms_per_s": atoms / (graph_s + median),
        "encoder_only_structures_per_s": n / median,
    }


def run(args) -> dict:
    import jax

    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.encoder import get_encoder
    from dtnn_jax.inputs import crystal_graph

    load_start = load_average()
    records = load_petousis2017()
    keep = subset(len(records), args.crystals)
    structures = [records[i].structure for i in keep]
    n, n_atoms = len(structures), sum(len(s) for s in structures)
    encoder = get_encoder(args.encoder)
    graph_times = []
    for _ in range(2):
        start = time.perf_counter()
        graphs = [crystal_graph(s, encoder) for s in structures]
        graph_times.append(time.perf_counter() - start)
    jax_graph_s = min(graph_times)
    first_pass_s, jax_energies = jax_pass(encoder, graphs, args.layer)  # cold: compiles
    print(f"JAX ({encoder.name}) first pass {first_pass_s:.1f} s", file=sys.stderr, flush=True)

    torch_python = None if args.no_torch else find_torch_python(args.torch_python)
    worker, torch_note = None, None
    if torch_python is None:
        torch_note = (
            "skipped (--no-torch)"
            if args.no_torch
            else "skipped: no --torch-python, no "
            f"{DEFAULT_TORCH_PYTHON}, and torch/sevenn not importable here"
        )
        print(torch_note, file=sys.stderr)
    else:
        print(f"torch via {torch_python}", file=sys.stderr, flush=True)
        worker = TorchWorker(structures, torch_python, args.pth)

    rounds, jax_times = [], []
    torch_times: dict[str, list[float]] = {}
    torch_energies, torch_warmup = {}, {}
    try:
        for r in range(args.rounds):
            own = [worker.proc.pid] if worker else []
            with RoundMeter(own) as meter:
                passes = [jax_pass(encoder, graphs, args.layer)[0] for _ in range(args.jax_passes)]
            seconds = float(np.median(passes))
            jax_times.append(seconds)
            rounds.append(
                {"round": r, "side": "jax", "pass_s": seconds, "passes_s": passes} | meter
            )
            print(f"round {r} JAX {seconds:.2f} s, {meter}", file=sys.stderr, flush=True)
            if worker:
                with RoundMeter(own) as meter:
                    result = worker.round()
                modes = {}
                for mode, entry in result.items():
                    torch_times.setdefault(mode, []).append(entry["pass_s"])
                    torch_energies[mode] = np.array(entry.pop("energies_ev"))
                    if "warmup_pass_s" in entry:
                        torch_warmup[mode] = entry["warmup_pass_s"]
                    modes[mode] = entry["pass_s"]
                rounds.append({"round": r, "side": "torch", "pass_s": modes} | meter)
                print(f"round {r} torch {modes}, {meter}", file=sys.stderr, flush=True)
    finally:
        if worker:
            worker.close()

    jax_summary = _pipeline_summary(jax_times, jax_graph_s, n, n_atoms) | {
        "first_pass_s": first_pass_s
    }
    torch_summary, comparison = None, None
    if worker:
        per_atom = np.array([len(s) for s in structures])
        torch_summary = {
            "torch_version": worker.info["torch_version"],
            "sevenn_version": worker.info["sevenn_version"],
            "checkpoint": worker.info["checkpoint"],
            "checkpoint_sha256": worker.info["checkpoint_sha256"],
            "checkpoint_matches_jax_weights": worker.info["checkpoint_sha256"]
            == getattr(encoder, "weights_sha256", None),
            "graph_s": worker.info["graph_s"],
            "modes": {},
        }
        for mode, times in torch_times.items():
            summary = _pipeline_summary(times, worker.info["graph_s"], n, n_atoms)
            diff = np.abs(torch_energies[mode] - jax_energies) / per_atom
            summary["warmup_pass_s"] = torch_warmup.get(mode)
            # only meaningful when JAX runs the same model (SevenNet-0)
            same_model = torch_summary["checkpoint_matches_jax_weights"]
            summary["max_energy_diff_ev_per_atom_vs_jax"] = (
                float(diff.max()) if same_model else None
            )
            torch_summary["modes"][mode] = summary
        modes = torch_summary["modes"]
        fastest = max(modes, key=lambda m: modes[m]["structures_per_s"])
        best = torch_summary["modes"][fastest]
        comparison = {
            "torch_fastest_mode": fastest,
            "speedup_end_to_end": jax_summary["structures_per_s"] / best["structures_per_s"],
            "speedup_encoder_only": best["median_pass_s"] / jax_summary["median_pass_s"],
        }

    first = rounds[0]["load_before"][0] if rounds else load_start[0]
    others = [r.get("others_cpu_cores") for r in rounds if r.get("others_cpu_cores") is not None]
    quiet = first <= QUIET_LOAD and all(o <= QUIET_OTHERS_CORES for o in others)

    sweep = None
    if args.sweep:
        clock = CompileClock()
        sweep = []
        for name, budget in candidate_budgets(encoder):
            if name != "default" and budget == encoder.budget:
                continue
            print(f"budget {name}: {budget}", file=sys.stderr, flush=True)
            res = jax_budget_run(encoder, graphs, args.layer, budget, args.sweep_repeats, clock)
            res["name"] = name
            res["load_after"] = load_average()
            sweep.append(res)

    return {
        "benchmark": "encoder_speed",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "jax_version": jax.__version__,
            "jax_devices": [str(d) for d in jax.local_devices()],
            "load_average_start": load_start,
            "load_average_end": load_average(),
        },
        "quiet": quiet,
        "quiet_criteria": {
            "load_1min_before_first_round_max": QUIET_LOAD,
            "others_cpu_cores_per_round_max": QUIET_OTHERS_CORES,
        },
        "data": {
            "crystals": n,
            "atoms": n_atoms,
            "set": "petousis2017 (shipped)"
            + ("" if n == len(records) else f", evenly spaced subset of {len(records)}"),
        },
        "encoder": encoder.key,
        "layer": args.layer,
        "rounds": rounds,
        "jax": jax_summary,
        "torch": torch_summary,
        "torch_note": torch_note,
        "comparison": comparison,
        "sweep": sweep,
    }


def markdown(r: dict) -> str:
    m, d, j = r["machine"], r["data"], r["jax"]
    t, c = r["torch"], r["comparison"]
    n_rounds = len(j["pass_s"])
    lines = [
        f"# Featurization speed: JAX ({r['encoder']}) vs torch sevenn",
        "",
        f"Date (UTC): {r['date_utc']}. CPU: {m['cpu_model']}, {m['cpu_count']} cores, "
        f"{m['platform']}, Python {m['python']}, jax {m['jax_version']}"
        + (f", torch {t['torch_version']} + sevenn {t['sevenn_version']}" if t else "")
        + ".",
        f"Data: {d['crystals']} crystals ({d['atoms']} atoms), {d['set']}; layer-{r['layer']} "
        "features from pymatgen Structures.",
        "",
        (
            "Machine quiet: 1-minute load average "
            f"{r['rounds'][0]['load_before'][0] if r['rounds'] else '-'} before the first round, "
            "other processes below "
            f"{r['quiet_criteria']['others_cpu_cores_per_round_max']} core in every round."
            if r["quiet"]
            else "**Machine not quiet**: the 1-minute load average exceeded "
            f"{r['quiet_criteria']['load_1min_before_first_round_max']} before the first round"
            " or other processes used more than "
            f"{r['quiet_criteria']['others_cpu_cores_per_round_max']} core during a round "
            "(see the rounds below); the timings are slower and noisier than on a quiet "
            "machine, torch's threads most."
        ),
        "",
        f"Medians over {n_rounds} alternating rounds (JAX, torch, JAX, torch, ...); per round "
        "one warm pass over the set per torch mode and the median of "
        f"{len(r['rounds'][0].get('passes_s', [0]))} for JAX; structures/s include graph "
        "building.",
        "",
        "| pipeline | graphs s | encoder s (median) | structures/s | atoms/s "
        "| encoder-only structures/s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| JAX {r['encoder']} (production path, {len(m['jax_devices'])} CPU device) | "
        f"{j['graph_s']:.2f} | {j['median_pass_s']:.2f} | {j['structures_per_s']:.0f} | "
        f"{j['atoms_per_s']:.0f} | {j['encoder_only_structures_per_s']:.0f} |",
    ]
    if t:
        for mode, s in t["modes"].items():
            batch, threads = mode.removeprefix("batch").split("_threads")
            what = "one crystal at a time" if batch == "1" else f"batches of {batch}"
            fastest = " (fastest)" if mode == c["torch_fastest_mode"] else ""
            lines.append(
                f"| torch sevenn, {what}, {threads} thread{'s' * (threads != '1')}{fastest} | "
                f"{s['graph_s']:.2f} | {s['median_pass_s']:.2f} | {s['structures_per_s']:.0f} "
                f"| {s['atoms_per_s']:.0f} | {s['encoder_only_structures_per_s']:.0f} |"
            )
        diffs = [s["max_energy_diff_ev_per_atom_vs_jax"] for s in t["modes"].values()]
        energy = (
            f"Max |E_jax - E_torch| = {max(diffs):.1e} eV/atom (all modes)."
            if None not in diffs
            else f"JAX runs {r['encoder']}, torch SevenNet-0: a different model (speed only)."
        )
        lines += [
            "",
            f"**JAX / torch's fastest mode: {c['speedup_end_to_end']:.1f}x end to end, "
            f"{c['speedup_encoder_only']:.1f}x encoder only.** {energy} JAX cold first pass "
            f"(all compilations) {j['first_pass_s']:.1f} s. torch checkpoint sha256 "
            f"{t['checkpoint_sha256'][:12]}... "
            + (
                "(= the converted JAX weights)."
                if t["checkpoint_matches_jax_weights"]
                else "(**not** the checkpoint of the JAX weights)."
            ),
        ]
    else:
        lines += ["", f"torch: {r['torch_note']}"]
    lines += [
        "",
        "Rounds (1-minute load average before/after; CPU cores used by other processes "
        "during the round):",
        "",
        "| round | pipeline | pass s | load before | load after | others' cores |",
        "|---:|---|---|---|---|---:|",
    ]
    for rd in r["rounds"]:
        if rd["side"] == "jax":
            passes = f"{rd['pass_s']:.2f}"
        else:
            passes = ", ".join(f"{k}: {v:.1f}" for k, v in rd["pass_s"].items())
        lines.append(
            f"| {rd['round']} | {rd['side']} | {passes} | {rd['load_before']} | "
            f"{rd['load_after']} | {rd.get('others_cpu_cores', '-')} |"
        )
    if r["sweep"]:
        lines += [
            "",
            "Batch budgets (JAX): compilations vs warm throughput.",
            "",
            "| budget | batches | compiled shapes | compile s | first pass s | warm pass s "
            "| structures/s (warm, encoder) | padded/real nodes | padded/real edges |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in r["sweep"]:
            b = s["budget"]
            desc = (
                f"{s['name']}: graphs {b['max_graphs']}, nodes {b['max_nodes']}, edges "
                f"{b['max_edges']}, growth {b['growth']}, min {b['min_nodes']}/{b['min_edges']}"
            )
            lines.append(
                f"| {desc} | {s['batches']} | {s['jit_cache_size']} | {s['compile_s']:.1f} | "
                f"{s['first_pass_s']:.1f} | {s['warm_pass_s']:.2f} | "
                f"{d['crystals'] / s['warm_pass_s']:.0f} | {s['padding_nodes']:.2f} | "
                f"{s['padding_edges']:.2f} |"
            )
    lines += [
        "",
        "Notes: JAX runs on one CPU device with XLA's intra-op threads on all cores; torch on "
        "1 or 2 threads (`torch.set_num_threads`). Both compute all interaction layers and "
        "the energy (torch: force module removed, `torch.no_grad`, float32). The load "
        "average after the first round includes this benchmark's own threads.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default=None, help="registry name (default sevennet-0)")
    parser.add_argument("--layer", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="alternating JAX/torch rounds")
    parser.add_argument("--jax-passes", type=int, default=3, help="JAX passes per round")
    parser.add_argument("--crystals", type=int, default=None, help="evenly spaced subset")
    parser.add_argument("--torch-python", default=None, help="interpreter with torch + sevenn")
    parser.add_argument(
        "--pth", type=Path, default=None, help="SevenNet-0 checkpoint (default: sevenn's own)"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the torch original")
    parser.add_argument("--sweep", action="store_true", help="JAX batch-budget trade-off")
    parser.add_argument("--sweep-repeats", type=int, default=3, help="warm passes per budget")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (and .md beside)")
    parser.add_argument("--torch-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker(args.torch_worker, str(args.pth) if args.pth else None)
        return
    if args.pth is not None and not args.pth.is_file():
        parser.error(
            f"--pth {args.pth}: no such file (the SevenNet-0 checkpoint; by default the one "
            "in the torch interpreter's sevenn package is used)"
        )
    result = run(args)
    text = markdown(result)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
