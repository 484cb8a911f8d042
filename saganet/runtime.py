"""CPU run-time policy: intra-op threads, the inter-op pool, data-loader workers and malloc.

Every entry point (``demo.py``, ``train.py``, ``batch_eval.py``, ``python -m saganet.batch``)
and the test configuration call :func:`configure_runtime` once, near the start, with the model
they are about to run; the data loaders ask :func:`loader_workers`. The rules, measured in
``docs/performance.md``:

* **Tiny models run on one thread.** A ``debug``-size layer (64 channels) is far too little
  work to split: the split saves microseconds, and every split op ends in a barrier that waits
  for the slowest thread. When another process holds a core, that wait is a scheduler time
  slice, thousands of times per second: on 2 shared cores the debug demo's sampling ran 20x
  slower on two threads than on one, and the debug training run 2-5x slower.
* **Full-size models use every core this process may run on**: the CPU affinity mask
  (``taskset``, container cpusets) and the cgroup CPU quota (``docker --cpus``), whichever is
  smaller, shared evenly between the processes of one machine (``torchrun``'s
  ``LOCAL_WORLD_SIZE``, pytest-xdist workers). Their matrix products are large enough to
  scale.
* **An explicit request wins**: ``OMP_NUM_THREADS`` (read when the function is called, never
  at import) or the ``threads`` argument.
* The inter-op pool gets one thread: nothing in saganet forks inter-op work
  (``torch.jit.fork``), so more threads would only sit idle.
* Data-loader workers are capped at this process's share of the cores: decoding is CPU-bound,
  so workers beyond the cores add memory and context switches, not throughput. Every loader
  starts its workers with :func:`loader_worker_start`, so a worker ends with its parent.
* **Freed memory is kept for reuse** (glibc only): by default glibc maps every block above
  its threshold (at most 32 MiB) afresh and unmaps it when freed, so each large tensor (a 5 s
  vocoder layer holds 42 MiB) is paid again in page faults, 8 million of them per 5 s of
  audio. Serving all
  blocks from the heap and not trimming it made the official-size vocoder 1.7x faster with
  the same peak memory and bit-identical output; the cost is that the process keeps its peak
  memory until it exits.

The thread count never depends on the momentary load of the machine, so a seed gives the same
result on every run (reductions may round differently with another thread count).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import platform
import signal
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Networks narrower than this count as tiny (the debug variants are 64 wide; the smallest
# published one is 448).
TINY_HIDDEN_DIM = 128
# cgroup v2 file holding "<quota> <period>" (or "max <period>") for this process's group.
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
# glibc mallopt() parameters (malloc.h) and the values set.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
# prctl() option (linux/prctl.h): the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1
KEEP_FREED_BYTES = 2**31 - 1  # the largest int: freed heap memory is (almost) never returned


@dataclass(frozen=True)
class ThreadPolicy:
    """The thread counts :func:`configure_runtime` chose.

    Args:
        intra_op: threads of one torch op (``torch.set_num_threads``).
        inter_op: threads of the inter-op pool.
        cores: cores available to this process (its share of the machine).
        reason: why ``intra_op`` has this value (logged).
    """

    intra_op: int
    inter_op: int
    cores: int
    reason: str


def available_cores(cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its affinity mask, capped by the cgroup CPU quota.

    Args:
        cgroup_cpu_max: the cgroup v2 ``cpu.max`` file (absent or ``max``: no quota).
    """
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # macOS, Windows: no affinity API
        cores = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return max(1, cores)
    if quota != "max" and int(period) > 0:
        # A quota of 1.5 CPUs still lets two threads run part of the time: round up.
        cores = min(cores, -(-int(quota) // int(period)))
    return max(1, cores)


def processes_per_machine() -> int:
    """Processes of this job that share the machine (torchrun ranks or pytest-xdist workers)."""
    for name in ("LOCAL_WORLD_SIZE", "PYTEST_XDIST_WORKER_COUNT"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def is_tiny_model(model: str | None) -> bool:
    """Whether a pipeline variant or network variant name is a tiny (debug-size) network.

    Args:
        model: a ``--variant`` name (``saganet_small``, ``debug``), a network variant name
            (``small_44k_sa``, ``debug_no_lora``), or None (unknown: not tiny).
    """
    # Imported here: the registries pull in the model code, which --help never needs.
    from saganet.model import VARIANTS
    from saganet.pipeline import PIPELINES

    if model in PIPELINES:
        model = PIPELINES[model].network
    config = VARIANTS.get(model) if model is not None else None
    return config is not None and config.hidden_dim < TINY_HIDDEN_DIM


def choose_policy(cores: int, *, tiny: bool, processes: int = 1,
                  requested: int | None = None) -> ThreadPolicy:
    """The thread counts for a process (pure function of its arguments).

    Args:
        cores: cores available to the process (:func:`available_cores`).
        tiny: the model is debug-size (:func:`is_tiny_model`).
        processes: processes sharing those cores (:func:`processes_per_machine`).
        requested: an explicit thread count (``OMP_NUM_THREADS`` or a caller's choice).
    """
    share = max(1, cores // max(1, processes))
    if requested is not None and requested > 0:
        return ThreadPolicy(requested, 1, share, "requested")
    if tiny:
        return ThreadPolicy(1, 1, share, "tiny model: one thread")
    return ThreadPolicy(share, 1, share, f"{cores} core(s) over {processes} process(es)")


def cpu_has_fast_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX-BF16 flags).

    Without them PyTorch converts bf16 to fp32 inside every product: measured 6.8x slower
    than fp32 on an AVX2 CPU (AMD EPYC Zen 3). Unknown (no ``/proc/cpuinfo``): False.

    Args:
        cpuinfo: the kernel's CPU description.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def _libc() -> ctypes.CDLL:
    """The C library, with ``errno`` kept for :func:`ctypes.get_errno`."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every block from its heap and keep freed memory for reuse.

    Returns:
        Whether the settings were applied (False on other C libraries, which are left alone).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = _libc()
    # mallopt returns 1 on success. Large blocks come from the heap (no fresh mapping per
    # tensor), and the heap top is not handed back to the kernel after every free.
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                   KEEP_FREED_BYTES))


def end_with_parent() -> bool:
    """Have the kernel kill this process (SIGKILL) as soon as its parent dies (Linux only).

    torch's data-loader workers look for a dead parent only between samples, so a worker stuck
    in a sample (a hung network file system, a stalled decoder) outlived a trainer killed with
    SIGKILL, holding its memory and files. The kernel's parent-death signal needs no polling.

    Returns:
        Whether the signal was set (False on other systems, or when prctl refused).
    """
    if platform.system() != "Linux":
        return False
    libc = _libc()
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return False
    # A parent that died before prctl() sent no signal, so look once; the sentinel pipe works
    # for every start method (with forkserver the kernel parent is the server, which exits
    # when its own parent does).
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def loader_worker_start(worker_id: int) -> None:
    """``worker_init_fn`` of every saganet data loader: the worker ends with its parent.

    Args:
        worker_id: the worker's index (unused; DataLoader passes it).
    """
    end_with_parent()


def configure_runtime(model: str | None = None, *, threads: int | None = None) -> ThreadPolicy:
    """Apply the CPU run-time policy to this process; call once, early, from an entry point.

    Args:
        model: the variant about to run (tiny models get one thread); None for full size.
        threads: an explicit intra-op thread count (overrides ``OMP_NUM_THREADS``).

    Returns:
        The policy applied.
    """
    # Imported here, like the registries: entry points import this module before parsing
    # their arguments, and --help must stay instant.
    import torch

    if threads is None:
        value = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(value) if value.isdigit() else None
    policy = choose_policy(available_cores(), tiny=is_tiny_model(model),
                           processes=processes_per_machine(), requested=threads)
    torch.set_num_threads(policy.intra_op)
    try:
        torch.set_num_interop_threads(policy.inter_op)
    except RuntimeError:
        # The pool size can be set once per process, before any inter-op work: a second call
        # (tests running several entry points in one process) keeps the first size.
        log.debug("inter-op pool already started; keeping %d thread(s)",
                  torch.get_num_interop_threads())
    log.info("CPU threads: %d intra-op, %d inter-op (%s)", policy.intra_op,
             torch.get_num_interop_threads(), policy.reason)
    if not keep_freed_memory():
        log.debug("malloc settings left as they are (not glibc)")
    return policy


def loader_workers(requested: int) -> int:
    """Data-loader worker processes: ``requested``, capped at this process's share of cores.

    Args:
        requested: the configured number (0 keeps loading in the main process).
    """
    if requested <= 0:
        return 0
    return min(requested, max(1, available_cores() // processes_per_machine()))
