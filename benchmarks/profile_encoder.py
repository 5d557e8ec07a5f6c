"""Where the JAX encoder's time goes on one warm batch of the shipped set, and how fast it is.

On the 1,056 crystals of Petousis et al. (2017), with the encoder's own `BatchBudget`:

* padding: real and padded nodes and edges over all batches (and, for SevenNet, the extra
  edges that fill the convolution's last edge block);
* one warm batch (the first of the most common padded shape), through ``jax.jit(forward)``:
  median wall time, XLA's FLOP and byte counts (``compiled.cost_analysis()``), achieved
  GFLOP/s, XLA's temporary buffer size and the minor page faults and system time per call
  (XLA maps its temporary buffer afresh on every call: large buffers cost page faults);
* the time per part, from a `jax.profiler` trace of the warm batch: every XLA thunk is
  mapped to the `jax.named_scope` of its HLO instruction (``radial_mlp``, ``gather``,
  ``tensor_product``, ``segment_sum``, ``linear``, ``gate``, ...), so each fused kernel is
  charged to the part that produced its output; thunk times are summed (they may overlap
  when XLA runs independent thunks in parallel, so the shares are the meaningful numbers);
* the FLOPs per part, counted from the architecture (SevenNet only), and a matmul of the
  radial MLP's shape and a 2048^3 matmul as this machine's matmul speed: FLOPs / that speed
  is the floor;
* the whole shipped set through the production path
  (`dtnn_jax.encoder.features.layer_features`): median of ``--full-repeats`` warm passes,
  structures/s;
* with ``--baseline REV``: the same warm-batch and whole-set timings, alternating, for the
  SevenNet module of git revision REV (``git show REV:dtnn_jax/encoder/sevennet.py``), and
  the largest relative difference of its features and energies from the current ones
  (per layer: max |new - old| / max |old|).

The machine and its load average (before and after) are recorded; timings on a loaded
machine are slower and noisier (the report says so when the 1-minute load average was
above 0.5 at the start).

Usage::

    python benchmarks/profile_encoder.py --baseline HEAD \
        --out benchmarks/results/encoder_profile.json

writes the JSON and a markdown summary next to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import collections
import copy
import datetime
import glob
import gzip
import importlib.util
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dtnn_jax.training.report import cpu_model, load_average

REPO = Path(__file__).resolve().parent.parent
QUIET_LOAD = 0.5

# named scopes of dtnn_jax.encoder.sevennet, most specific first
PARTS = (
    "radial_mlp",
    "gather",
    "tensor_product",
    "segment_sum",
    "linear",
    "gate",
    "features",
    "edge_embedding",
    "species_embedding",
    "readout",
)
CONTROL_FLOW = {"while", "call", "conditional"}


# ----------------------------------------------------------------------------------------
# machine
# ----------------------------------------------------------------------------------------


def machine() -> dict:
    import jax

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax_version": jax.__version__,
        "jax_devices": [str(d) for d in jax.local_devices()],
    }


# ----------------------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------------------


def time_calls(fn, args, repeats: int) -> dict:
    """Median and min wall time (ms), minor page faults and system time per call."""
    import jax

    jax.block_until_ready(fn(*args))
    times, faults, sys_s = [], [], []
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(r1.ru_minflt - r0.ru_minflt)
        sys_s.append(r1.ru_stime - r0.ru_stime)
    return {
        "median_ms": 1e3 * float(np.median(times)),
        "min_ms": 1e3 * float(np.min(times)),
        "minor_page_faults_per_call": float(np.median(faults)),
        "system_time_ms_per_call": 1e3 * float(np.median(sys_s)),
    }


def compiled_stats(compiled) -> dict:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    memory = compiled.memory_analysis()
    return {
        "xla_gflop": float(cost.get("flops", 0.0)) / 1e9,
        "xla_gbytes_accessed": float(cost.get("bytes accessed", 0.0)) / 1e9,
        "temp_buffer_mb": getattr(memory, "temp_size_in_bytes", 0) / 1e6,
    }


def matmul_gflops(shape: tuple[int, int, int], repeats: int = 10) -> float:
    """Best-of GFLOP/s of a jitted float32 [m, k] @ [k, n] on this machine."""
    import jax
    import jax.numpy as jnp

    m, k, n = shape
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((m, k)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((k, n)), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, b))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(a, b))
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best / 1e9


# ----------------------------------------------------------------------------------------
# trace -> parts
# ----------------------------------------------------------------------------------------


def _instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
    """HLO instruction name -> (opcode, op_name metadata) of a compiled module."""
    out = {}
    pattern = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?\s([\w\-]+)\(")
    for line in hlo_text.splitlines():
        m = pattern.match(line)
        if not m or m.group(1) in out:
            continue
        op_name = re.search(r'op_name="([^"]*)"', line)
        out[m.group(1)] = (m.group(2), op_name.group(1) if op_name else "")
    return out


def part_of(op_name: str) -> tuple[str, str]:
    """(layer, part) of an op_name such as 'jit(f)/layer2/convolution/while/body/.../gather'."""
    layer = re.search(r"/(layer\d+)/", op_name + "/")
    scopes = op_name.split("/")
    part = next((p for p in PARTS if p in scopes), "other")
    if part == "other" and "convolution" in scopes:
        part = "convolution (scan bookkeeping)"
    return (layer.group(1) if layer else "-"), part


def trace_parts(fn, args, calls: int = 3) -> dict:
    """Thunk time per (layer, part) and per part, ms per call, from a jax.profiler trace."""
    import jax

    compiled = fn.lower(*args).compile()
    instructions = _instructions(compiled.as_text())
    jax.block_until_ready(compiled(*args))
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        for _ in range(calls):
            jax.block_until_ready(compiled(*args))
        jax.profiler.stop_trace()
        files = glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)
        if not files:
            return {"error": "the profiler wrote no trace"}
        with gzip.open(files[0]) as f:
            events = json.load(f)["traceEvents"]
    by_part: dict[str, float] = collections.defaultdict(float)
    by_layer: dict[str, dict[str, float]] = collections.defaultdict(
        lambda: collections.defaultdict(float)
    )
    kernels: dict[str, float] = collections.defaultdict(float)
    for e in events:
        name = e.get("name")
        if e.get("ph") != "X" or name not in instructions:
            continue
        opcode, op_name = instructions[name]
        if opcode in CONTROL_FLOW:  # its body's thunks are counted themselves
            continue
        ms = e["dur"] / 1e3 / calls
        layer, part = part_of(op_name)
        by_part[part] += ms
        by_layer[layer][part] += ms
        kernels[name] += ms
    total = sum(by_part.values())
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:12]
    return {
        "thunk_ms_total": total,
        "by_part_ms": dict(sorted(by_part.items(), key=lambda kv: -kv[1])),
        "by_layer_ms": {k: dict(v) for k, v in sorted(by_layer.items())},
        "top_kernels": [
            {"name": n, "ms": ms, "part": part_of(instructions[n][1])} for n, ms in top
        ],
    }


# ----------------------------------------------------------------------------------------
# FLOPs from the architecture (SevenNet)
# ----------------------------------------------------------------------------------------


def sevennet_flops(config, n_node: int, n_edge: int) -> dict[str, float]:
    """GFLOP per part of one forward pass on a padded batch (multiply-add = 2 FLOP)."""
    from dtnn_jax.encoder.weights import conv_layout

    flops: dict[str, float] = collections.defaultdict(float)
    radial_in = [config.n_radial_basis, *config.radial_hidden]
    for k in range(1, config.num_layers + 1):
        muls = {l: mul for mul, l in config.layer_irreps(k - 1)}
        layout = conv_layout(config, k)
        n_weights = sum(muls[l1] * len(e) for l1, e in layout.items())
        widths = [*radial_in[1:], n_weights]
        flops["radial_mlp"] += (
            2 * n_edge * sum(a * b for a, b in zip(radial_in, widths, strict=True))
        )
        for l1, entries in layout.items():
            width = sum(2 * l3 + 1 for _, _, l3, _ in entries)
            flops["tensor_product"] += 2 * n_edge * (2 * l1 + 1) * 9 * width  # SH x CG
            # (2l1+1) multiply-adds and one weight multiply per message component
            flops["tensor_product"] += n_edge * muls[l1] * width * (2 * (2 * l1 + 1) + 1)
            flops["segment_sum"] += n_edge * muls[l1] * width
        out = {l: mul for mul, l in config.gate_input_irreps(k)}
        mid: dict[int, int] = collections.defaultdict(int)
        for _, _, l3, mul in config.conv_paths(k):
            mid[l3] += mul
        for l, m in muls.items():  # self connection + linear_in
            flops["linear"] += 2 * n_node * (2 * l + 1) * m * (out.get(l, 0) + m)
        for l, m in mid.items():  # linear_out
            flops["linear"] += 2 * n_node * (2 * l + 1) * m * out[l]
    return {k: v / 1e9 for k, v in flops.items()}


# ----------------------------------------------------------------------------------------
# data, baseline
# ----------------------------------------------------------------------------------------


def shipped_graphs(encoder):
    from dtnn_jax.data import load_petousis2017
    from dtnn_jax.inputs import crystal_graph

    structures = [r.structure for r in load_petousis2017()]
    return structures, [crystal_graph(s, encoder) for s in structures]


def batches_and_padding(encoder, graphs) -> tuple[dict, object]:
    """Padding statistics of the encoder's batches and the warm batch (unstacked)."""
    import jax

    from dtnn_jax.graph import padded_batches
    from dtnn_jax.graph.geometry import edge_mask, graph_mask, node_mask

    by_shape: dict[tuple[int, int], list] = collections.defaultdict(list)
    real_n = real_e = pad_n = pad_e = block_e = 0
    module = sys.modules[type(encoder).__module__]
    for _, stacked in padded_batches(graphs, encoder.budget, shards=1):
        batch = jax.tree.map(lambda a: np.asarray(a[0]), stacked)
        n, e = batch.nodes["species"].shape[0], batch.senders.shape[0]
        by_shape[(n, e)].append(batch)
        real_n += int(np.asarray(node_mask(batch)).sum())
        real_e += int(np.asarray(edge_mask(batch)).sum())
        pad_n, pad_e = pad_n + n, pad_e + e
        if hasattr(module, "edge_blocks"):
            n_blocks, size = module.edge_blocks(e)
            block_e += n_blocks * size
        else:
            block_e += e
    shape, batches = max(by_shape.items(), key=lambda kv: len(kv[1]))
    warm = batches[0]
    stats = {
        "batches": sum(len(v) for v in by_shape.values()),
        "batches_per_shape": {f"{n} nodes x {e} edges": len(v) for (n, e), v in by_shape.items()},
        "real_nodes": real_n,
        "padded_nodes": pad_n,
        "real_edges": real_e,
        "padded_edges": pad_e,
        "edges_in_blocks": block_e,
        "padded_over_real_nodes": pad_n / real_n,
        "padded_over_real_edges": pad_e / real_e,
        "edge_work_over_real_edges": block_e / real_e,
        "warm_batch": {
            "padded_nodes": shape[0],
            "padded_edges": shape[1],
            "real_nodes": int(np.asarray(node_mask(warm)).sum()),
            "real_edges": int(np.asarray(edge_mask(warm)).sum()),
            "crystals": int(np.asarray(graph_mask(warm)).sum()),
        },
    }
    return stats, jax.tree.map(jax.numpy.asarray, warm)


def baseline_encoder(encoder, rev: str):
    """A copy of the SevenNet encoder whose forward is the one of git revision ``rev``."""
    from dtnn_jax.encoder.sevennet import SevenNet

    if not isinstance(encoder, SevenNet):
        raise SystemExit("--baseline is implemented for SevenNet encoders only")
    rel = "dtnn_jax/encoder/sevennet.py"
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:{rel}"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"--baseline {rev}: cannot read {rel} from git ({err})") from err
    path = Path(tempfile.mkdtemp()) / "sevennet_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("sevennet_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Baseline(type(encoder)):
        def forward(self, params, graph):
            return module.sevennet_forward(params, graph, self.config)

    base = copy.copy(encoder)
    base.__class__ = Baseline
    base.__dict__.pop("jitted_forward", None)
    return base, module


def full_set_passes(encoders: dict, graphs, layer: int, repeats: int) -> dict:
    """Warm whole-set passes through the production path, encoders alternating."""
    from dtnn_jax.encoder.features import layer_features

    results = {name: {"pass_s": [], "load_1min_before": []} for name in encoders}
    outputs = {}
    for name, enc in encoders.items():  # the cold pass: compilation
        outputs[name] = layer_features(enc, graphs, layer)
    for _ in range(repeats):
        for name, enc in encoders.items():
            results[name]["load_1min_before"].append(load_average()[0])
            start = time.perf_counter()
            layer_features(enc, graphs, layer)
            results[name]["pass_s"].append(time.perf_counter() - start)
    for r in results.values():
        r["median_pass_s"] = float(np.median(r["pass_s"]))
        r["structures_per_s"] = len(graphs) / r["median_pass_s"]
        r["ms_per_structure"] = 1e3 * r["median_pass_s"] / len(graphs)
    return results, outputs


def relative_difference(new, old) -> dict[str, float]:
    """Per layer and for the energies: max |new - old| / max |old| over the warm batch."""
    out = {}
    for k, (a, b) in enumerate(zip(new.node_features, old.node_features, strict=True), 1):
        a, b = np.asarray(a.array, np.float64), np.asarray(b.array, np.float64)
        out[f"layer{k}"] = float(np.abs(a - b).max() / np.abs(b).max())
    a, b = np.asarray(new.energy, np.float64), np.asarray(old.energy, np.float64)
    out["energy"] = float(np.abs(a - b).max() / np.abs(b).max())
    return out


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------


def run(args) -> dict:
    import jax

    from dtnn_jax.encoder import get_encoder

    load_before = load_average()
    encoder = get_encoder(args.encoder)
    structures, graphs = shipped_graphs(encoder)
    padding, warm = batches_and_padding(encoder, graphs)
    wb = padding["warm_batch"]
    print(f"warm batch: {wb}", file=sys.stderr, flush=True)

    from dtnn_jax.encoder.sevennet import SevenNet

    flops = None
    if isinstance(encoder, SevenNet):
        flops = sevennet_flops(encoder.config, wb["padded_nodes"], wb["padded_edges"])
    encoders = {"current": encoder}
    if args.baseline:
        encoders[f"baseline {args.baseline}"] = baseline_encoder(encoder, args.baseline)[0]

    batch: dict[str, dict] = {}
    outs = {}
    for name, enc in encoders.items():
        fn = jax.jit(enc.forward)
        compiled = fn.lower(enc.params, warm).compile()
        batch[name] = compiled_stats(compiled)
        outs[name] = compiled(enc.params, warm)
        batch[name]["_compiled"] = compiled
    rounds = {name: [] for name in encoders}
    for _ in range(args.rounds):  # alternate, so a load change hits both
        for name in encoders:
            rounds[name].append(
                time_calls(batch[name]["_compiled"], (encoder.params, warm), args.repeats)
            )
    for name, b in batch.items():
        b.pop("_compiled")
        keys = rounds[name][0].keys()
        b |= {k: float(np.median([r[k] for r in rounds[name]])) for k in keys}
        # XLA's cost analysis counts a loop body once: the counted FLOPs are the basis
        b["gflop"] = sum(flops.values()) if flops else b["xla_gflop"]
        b["achieved_gflop_per_s"] = b["gflop"] / (b["median_ms"] / 1e3)
        b["ms_per_crystal"] = b["median_ms"] / wb["crystals"]
        print(f"{name}: {b}", file=sys.stderr, flush=True)

    parts = trace_parts(jax.jit(encoder.forward), (encoder.params, warm), calls=args.trace_calls)
    if flops:
        if "by_part_ms" in parts:
            parts["gflop_per_s_by_part"] = {
                p: flops[p] / (parts["by_part_ms"][p] / 1e3)
                for p in flops
                if parts["by_part_ms"].get(p)
            }
    n_w = 0
    if flops:
        from dtnn_jax.encoder.weights import conv_layout

        cfg = encoder.config
        n_w = sum(
            dict((l, m) for m, l in cfg.layer_irreps(1))[l1] * len(e)
            for l1, e in conv_layout(cfg, 2).items()
        )
    reference = {
        "matmul_2048_gflop_per_s": matmul_gflops((2048, 2048, 2048)),
    }
    if n_w:
        reference["matmul_radial_shape"] = [wb["padded_edges"], cfg.radial_hidden[-1], n_w]
        reference["matmul_radial_gflop_per_s"] = matmul_gflops(
            tuple(reference["matmul_radial_shape"])
        )
    cur = batch["current"]
    reference["floor_ms_per_batch_at_2048_matmul_speed"] = (
        cur["gflop"] / reference["matmul_2048_gflop_per_s"] * 1e3
    )

    full, full_outputs = full_set_passes(encoders, graphs, args.layer, args.full_repeats)
    parity = None
    if args.baseline:
        base = f"baseline {args.baseline}"
        parity = {"warm_batch": relative_difference(outs["current"], outs[base])}
        (f_new, e_new), (f_old, e_old) = full_outputs["current"], full_outputs[base]
        a, b = np.concatenate(f_new), np.concatenate(f_old)
        parity[f"shipped_set_layer{args.layer}"] = float(np.abs(a - b).max() / np.abs(b).max())
        parity["shipped_set_energy"] = float(np.abs(e_new - e_old).max() / np.abs(e_old).max())
    load_after = load_average()
    return {
        "benchmark": "encoder_profile",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "encoder": encoder.key,
        "machine": machine()
        | {"load_average_before": load_before, "load_average_after": load_after},
        "quiet": load_before[0] <= QUIET_LOAD,
        "data": {
            "set": "petousis2017 (shipped)",
            "crystals": len(structures),
            "atoms": sum(len(s) for s in structures),
        },
        "padding": padding,
        "warm_batch": batch,
        "parts": parts,
        "flops_by_part_gflop": flops,
        "reference": reference,
        "layer": args.layer,
        "full_set": full,
        "parity": parity,
        "settings": {
            "repeats": args.repeats,
            "rounds": args.rounds,
            "full_repeats": args.full_repeats,
            "trace_calls": args.trace_calls,
            "edge_chunk": getattr(sys.modules[type(encoder).__module__], "EDGE_CHUNK", None),
        },
    }


def summary(r: dict) -> list[str]:
    """The findings, in words, from the numbers of this run."""
    out = ["## Summary", ""]
    batch, full, p = r["warm_batch"], r["full_set"], r["parts"]
    cur = batch["current"]
    base = next((k for k in batch if k != "current"), None)
    if base:
        b, fb, fc = batch[base], full[base], full["current"]
        out.append(
            f"* Current vs {base}: {b['median_ms'] / cur['median_ms']:.1f}x per warm batch "
            f"({cur['median_ms']:.0f} vs {b['median_ms']:.0f} ms), "
            f"{fc['structures_per_s'] / fb['structures_per_s']:.1f}x on the whole set "
            f"({fc['structures_per_s']:.0f} vs {fb['structures_per_s']:.0f} structures/s), "
            f"same run. The baseline's XLA temporary buffer is {b['temp_buffer_mb']:.0f} MB, "
            f"mapped afresh on every call: {b['minor_page_faults_per_call']:.0f} page faults "
            f"and {b['system_time_ms_per_call']:.0f} ms of system time per batch; the "
            f"current one's is {cur['temp_buffer_mb']:.0f} MB "
            f"({cur['minor_page_faults_per_call']:.0f} faults)."
        )
    if "by_part_ms" in p:
        total = p["thunk_ms_total"]
        rates = p.get("gflop_per_s_by_part", {})
        top = list(p["by_part_ms"].items())[:4]
        flops = r["flops_by_part_gflop"] or {}
        radial, counted = flops.get("radial_mlp", 0.0), sum(flops.values())
        out.append(
            "* Where the time goes: "
            + ", ".join(
                f"{part} {100 * ms / total:.0f}%"
                + (f" ({rates[part]:.0f} GFLOP/s)" if part in rates else "")
                for part, ms in top
            )
            + f". The radial MLPs ({radial:.1f} of the {counted:.1f} GFLOP) are matmuls; the "
            "tensor product "
            "(channel-wise products of gathered node features with SH x CG, times the "
            "radial weights) and the segment sums are elementwise and memory-bound."
        )
    ref = r["reference"]
    out.append(
        f"* Floor: {cur['gflop']:.2f} GFLOP per batch at this run's 2048^3 matmul speed "
        f"({ref['matmul_2048_gflop_per_s']:.0f} GFLOP/s) is "
        f"{ref['floor_ms_per_batch_at_2048_matmul_speed']:.1f} ms; measured "
        f"{cur['median_ms']:.0f} ms ({cur['achieved_gflop_per_s']:.0f} GFLOP/s overall)."
    )
    pad = r["padding"]
    out.append(
        f"* Padding waste: {100 * (pad['padded_over_real_edges'] - 1):.0f}% extra edges and "
        f"{100 * (pad['padded_over_real_nodes'] - 1):.0f}% extra nodes over the whole set "
        "(edge-packed batches), so padding is not where the time goes."
    )
    if r["settings"].get("edge_chunk"):
        out += [
            "",
            "What the current SevenNet implementation does differently from the single-pass "
            "one (`dtnn_jax/encoder/sevennet.py`): the per-edge work runs in a `lax.scan` "
            f"over blocks of {r['settings']['edge_chunk']} edges, so the intermediates are a "
            "few MB that stay in cache instead of a ~240 MB temporary buffer; node features "
            "are channel-minor ([n, 2l+1, mul]) so the elementwise loops run over contiguous "
            "channels; every tensor-product path has its own accumulator (no concatenation "
            "of per-edge messages); the radial weights are reordered (path, channel) once per "
            "call. Node-level linears and gates are evaluated in the old layout, so the "
            "results are bit-identical.",
        ]
    if not r["quiet"]:
        out += [
            "",
            "**Machine not quiet** during this run (load average above "
            f"{QUIET_LOAD} at the start): absolute times are slower than on a quiet machine; "
            "the ratios between implementations, measured alternately, are the robust part.",
        ]
    return out


def markdown(r: dict) -> str:
    m, p, pad = r["machine"], r["parts"], r["padding"]
    wb = pad["warm_batch"]
    cur = r["warm_batch"]["current"]
    lines = [
        f"# Encoder profile ({r['encoder']}, one warm batch of the shipped set)",
        "",
        "Written by `benchmarks/profile_encoder.py` (see its docstring for the method).",
        "",
        *summary(r),
        "",
        f"Date (UTC): {r['date_utc']}. CPU: {m['cpu_model']}, {m['cpu_count']} cores, "
        f"jax {m['jax_version']}. Load average (1/5/15 min) before: "
        f"{m['load_average_before']}, after: {m['load_average_after']}"
        + ("." if r["quiet"] else " -- **machine not quiet**: timings are slower and noisy."),
        "",
        f"Warm batch: {wb['crystals']} crystals, {wb['real_nodes']}/{wb['padded_nodes']} "
        f"real/padded nodes, {wb['real_edges']}/{wb['padded_edges']} real/padded edges "
        f"(the first batch of the most common padded shape; {pad['batches']} batches in all: "
        + ", ".join(f"{v} x {k}" for k, v in pad["batches_per_shape"].items())
        + ").",
        "",
        "| implementation | ms / batch (median) | ms / crystal | GFLOP | GFLOP/s | XLA GFLOP "
        "| XLA temp buffer MB | page faults / call | system ms / call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, b in r["warm_batch"].items():
        lines.append(
            f"| {name} | {b['median_ms']:.1f} | {b['ms_per_crystal']:.2f} | "
            f"{b['gflop']:.2f} | {b['achieved_gflop_per_s']:.0f} | {b['xla_gflop']:.2f} | "
            f"{b['temp_buffer_mb']:.0f} | {b['minor_page_faults_per_call']:.0f} | "
            f"{b['system_time_ms_per_call']:.0f} |"
        )
    ref = r["reference"]
    lines += [
        "",
        "GFLOP: counted from the architecture (multiply-add = 2; the same for both "
        "implementations); XLA GFLOP: `compiled.cost_analysis()`, which counts the body of "
        "the current implementation's edge-block loop once. Page faults and system time: "
        "`getrusage` around each call (XLA maps its temporary buffer afresh on every call).",
        "",
        f"Matmul speed in this run: {ref['matmul_2048_gflop_per_s']:.0f} GFLOP/s (2048^3)"
        + (
            f", {ref['matmul_radial_gflop_per_s']:.0f} GFLOP/s at the radial MLP's "
            f"{ref['matmul_radial_shape']}"
            if "matmul_radial_gflop_per_s" in ref
            else ""
        )
        + f"; the warm batch's {cur['gflop']:.2f} GFLOP at the 2048^3 speed would take "
        f"{ref['floor_ms_per_batch_at_2048_matmul_speed']:.1f} ms (the floor).",
        "",
        "Padding over the whole set: padded/real nodes "
        f"{pad['padded_over_real_nodes']:.2f}, edges {pad['padded_over_real_edges']:.2f}; "
        f"edges processed (incl. filling the last edge block) / real "
        f"{pad['edge_work_over_real_edges']:.2f}.",
    ]
    if "by_part_ms" in p:
        flops = r["flops_by_part_gflop"] or {}
        total = p["thunk_ms_total"]
        lines += [
            "",
            "Where the time goes (current implementation; XLA thunk times from a "
            "`jax.profiler` trace, charged to the `named_scope` of each kernel's output):",
            "",
            "| part | ms / batch | share | GFLOP (counted) | GFLOP/s |",
            "|---|---:|---:|---:|---:|",
        ]
        for part, ms in p["by_part_ms"].items():
            g = flops.get(part)
            lines.append(
                f"| {part} | {ms:.1f} | {100 * ms / total:.0f}% | "
                + (f"{g:.3f} | {g / (ms / 1e3):.0f} |" if g else "- | - |")
            )
        counted = f"{sum(flops.values()):.3f}" if flops else "-"
        lines.append(f"| total (thunks) | {total:.1f} | 100% | {counted} | - |")
        lines += ["", "Per layer (ms / batch):", ""]
        parts = list(p["by_part_ms"])
        lines.append("| layer | " + " | ".join(parts) + " |")
        lines.append("|---|" + "---:|" * len(parts))
        for layer, d in p["by_layer_ms"].items():
            lines.append(f"| {layer} | " + " | ".join(f"{d.get(q, 0.0):.1f}" for q in parts) + " |")
    full = r["full_set"]
    lines += [
        "",
        f"Whole shipped set ({r['data']['crystals']} crystals, layer-{r['layer']} features, "
        f"production path `layer_features`, median of {r['settings']['full_repeats']} warm "
        "passes, implementations alternating):",
        "",
        "| implementation | warm pass s | structures/s | ms / structure "
        "| 1-min load before each pass |",
        "|---|---:|---:|---:|---|",
    ]
    for name, f in full.items():
        lines.append(
            f"| {name} | {f['median_pass_s']:.2f} | {f['structures_per_s']:.0f} | "
            f"{f['ms_per_structure']:.2f} | {f['load_1min_before']} |"
        )
    if r["parity"]:
        par = r["parity"]
        layer_diff = par[f"shipped_set_layer{r['layer']}"]
        lines += [
            "",
            "Parity with the baseline (max |new - old| / max |old|): warm batch "
            + ", ".join(f"{k} {v:.1e}" for k, v in par["warm_batch"].items())
            + f"; whole set, layer {r['layer']}: {layer_diff:.1e}, "
            f"energies {par['shipped_set_energy']:.1e}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default=None, help="registry name (default sevennet-0)")
    parser.add_argument("--baseline", default=None, help="git revision to compare with")
    parser.add_argument("--layer", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10, help="warm-batch calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating warm-batch rounds")
    parser.add_argument("--full-repeats", type=int, default=3, help="warm whole-set passes")
    parser.add_argument("--trace-calls", type=int, default=3, help="calls in the trace")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (and .md beside)")
    args = parser.parse_args(argv)
    result = run(args)
    text = markdown(result)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
