"""One command on N processes or hosts, with JAX's multi-controller runtime.

`initialize` starts `jax.distributed` when the environment asks for more than one process:
explicit arguments (``dtnn ... --coordinator HOST:PORT --num-processes N --process-id I``),
JAX's own variables (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``),
or a SLURM job step with several tasks (JAX detects SLURM itself). With none of them set
nothing happens and the command runs as one process.

Before `jax.distributed.initialize` the processes meet at a plain TCP rendezvous on the
coordinator's port + 1 with a timeout: a peer that never arrives gives a clear error naming
it, instead of JAX aborting the process (a C++ fatal error) after its own timeout.

Work is split by `shard_indices` (round-robin over the inputs, deterministic); each process
writes its shard's results atomically and process 0 merges them once every process has
reached `barrier` (`dtnn_jax.shards`). Training uses all processes' devices as one mesh
(`dtnn_jax.parallel`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time

from dtnn_jax.errors import InputError

log = logging.getLogger("dtnn_jax")

DEFAULT_TIMEOUT_S = 300


class DistributedError(InputError):
    """The processes of a multi-process run could not meet (the message says which)."""


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands in the run.

    Attributes:
        index: this process (0 is the coordinator, which merges results).
        count: processes in the run (1: a plain single-process run).
    """

    index: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        return self.index == 0


_GROUP = ProcessGroup()


def current() -> ProcessGroup:
    """The process group this process runs in (one process unless `initialize` ran)."""
    return _GROUP


def requested(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> tuple[str | None, int | None, int | None] | None:
    """The multi-process settings the arguments or environment give, or None for one process.

    Returns:
        ``(coordinator, num_processes, process_id)``; ``(None, None, None)`` asks JAX to
        detect a cluster (SLURM) itself.
    """
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    if coordinator or num_processes or process_id is not None:
        if not (coordinator and num_processes and process_id is not None):
            raise DistributedError(
                "a multi-process run needs all of --coordinator HOST:PORT, --num-processes N "
                "and --process-id I (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
                f"JAX_PROCESS_ID); got {coordinator!r}, {num_processes!r}, {process_id!r}"
            )
        if not 0 <= process_id < num_processes:
            raise DistributedError(f"process id {process_id} not in 0..{num_processes - 1}")
        return (coordinator, num_processes, process_id) if num_processes > 1 else None
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return None, None, None
    return None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ProcessGroup:
    """Starts the multi-process runtime if asked for (see the module docstring).

    Safe to call more than once; returns the process group.

    Raises:
        DistributedError: incomplete settings, or a peer did not arrive within
            ``timeout_s`` seconds.
    """
    global _GROUP
    if _GROUP.count > 1:
        return _GROUP
    settings = requested(coordinator, num_processes, process_id)
    if settings is None:
        return _GROUP
    import jax

    coordinator, num_processes, process_id = settings
    if coordinator is not None:
        rendezvous(coordinator, num_processes, process_id, timeout_s)
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=int(max(timeout_s, 1)),
    )
    _GROUP = ProcessGroup(jax.process_index(), jax.process_count())
    log.info("process %d of %d (%d devices in all)", _GROUP.index, _GROUP.count, jax.device_count())
    return _GROUP


def free_port_pair(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port p on ``host`` with p and p + 1 free: a local coordinator (JAX's service on p,
    the `rendezvous` on p + 1), for tests, benchmarks and single-machine runs."""
    for _ in range(attempts):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind((host, port + 1))
            return port
        except OSError:
            continue
    raise DistributedError(f"no free pair of consecutive ports on {host}")


def rendezvous(coordinator: str, num_processes: int, process_id: int, timeout_s: float) -> None:
    """All processes meet on the coordinator's port + 1 before JAX starts, or fail clearly.

    Process 0 listens and waits for every other process id; the others connect (retrying
    while the coordinator starts) and wait for its go-ahead.

    Raises:
        DistributedError: naming the processes that did not arrive (on process 0) or the
            coordinator that could not be reached (on the others), after ``timeout_s``.
    """
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    address = (host, int(port) + 1)
    deadline = time.monotonic() + timeout_s
    if process_id == 0:
        _await_peers(address, num_processes, deadline, timeout_s)
    else:
        _join_peers(address, process_id, deadline, timeout_s)


def _await_peers(address, num_processes: int, deadline: float, timeout_s: float) -> None:
    with socket.create_server(address, reuse_port=False) as server:
        server.settimeout(0.2)
        peers: dict[int, socket.socket] = {}
        try:
            while len(peers) < num_processes - 1:
                if time.monotonic() > deadline:
                    missing = sorted(set(range(1, num_processes)) - set(peers))
                    raise DistributedError(
                        f"process(es) {missing} of {num_processes} did not arrive at "
                        f"{address[0]}:{address[1] - 1} within {timeout_s:g} s; start them "
                        "with the same --coordinator and --num-processes (or raise "
                        "--distributed-timeout)"
                    )
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                peers[int(conn.recv(16).decode().strip() or -1)] = conn
            for conn in peers.values():
                conn.sendall(b"go\n")
        finally:
            for conn in peers.values():
                conn.close()


def _join_peers(address, process_id: int, deadline: float, timeout_s: float) -> None:
    while True:
        try:
            with socket.create_connection(address, timeout=1.0) as conn:
                conn.sendall(f"{process_id}\n".encode())
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                if conn.recv(16).startswith(b"go"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DistributedError(
                f"process {process_id} could not meet the coordinator at {address[0]}:"
                f"{address[1] - 1} within {timeout_s:g} s (is process 0 running, with the same "
                "--coordinator?)"
            )
        time.sleep(0.2)


def barrier(name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Waits until every process reached ``name`` (no-op for one process)."""
    if _GROUP.count == 1:
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def shard_indices(n_items: int, group: ProcessGroup | None = None) -> range:
    """The input positions this process works on: round-robin, ``index, index + count, ...``.

    Round-robin rather than contiguous blocks: pools are often sorted (by id, by size), so
    this balances the work.
    """
    group = group or _GROUP
    return range(group.index, n_items, group.count)


def add_arguments(parser) -> None:
    """The ``--coordinator/--num-processes/--process-id`` flags of the heavy commands."""
    group = parser.add_argument_group("multi-process runs (jax.distributed)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT")
    group.add_argument("--num-processes", type=int, default=None, metavar="N")
    group.add_argument("--process-id", type=int, default=None, metavar="I")
    group.add_argument(
        "--distributed-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for every process (default {DEFAULT_TIMEOUT_S})",
    )


def initialize_from_args(args) -> ProcessGroup:
    """`initialize` with the flags of `add_arguments` (and the environment)."""
    return initialize(
        args.coordinator, args.num_processes, args.process_id, args.distributed_timeout
    )
