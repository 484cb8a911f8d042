"""Which intra-op thread count is fastest on this machine, against what saganet.runtime picks.

Each workload runs at every thread count in ``--threads`` (default: the powers of two up to
the cores available, and that number), in ``--processes`` concurrent processes that share the
machine the way ``torchrun`` ranks or ``pytest -n`` workers do. The processes step through
the thread counts in lockstep (a barrier before and after each timed run), so they always
compete at the same setting. Workloads, random weights, nothing downloaded:

* ``tiny``: one guided step of the debug flow network (what the tests and the debug demo run);
* ``network``: one guided step of the official-size flow network (``small_44k_sa``, 5 s);
* ``vocoder``: official-size BigVGAN-v2 on ``--vocoder-seconds`` of audio.

For each workload and process count it prints seconds per call (the slowest process, best of
``--repeats``), the speed-up over one thread, and marks the count that
``saganet.runtime.choose_policy`` gives each process on this machine; the verdict is the
policy's time against the fastest one measured.

    python benchmarks/threads.py                               # all workloads, 1 and 2 processes
    python benchmarks/threads.py --workloads tiny --processes 1 2 4
    python benchmarks/threads.py --json threads.json
    python benchmarks/threads.py --tiny --threads 1 --processes 1 --repeats 1   # smoke run

``--tiny`` builds the ``network`` and ``vocoder`` workloads at the debug variant's sizes (a
smoke run of the same code; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import sys
import time
from collections.abc import Callable

from sizes import Sizes, add_json_flag, add_tiny_flag, write_json

from saganet.cli import positive_float, positive_int

WORKLOADS = ("tiny", "network", "vocoder")
CFG_STRENGTH = 4.5


def make_workload(name: str, vocoder_seconds: float, tiny: bool = False) -> Callable[[], object]:
    """Build the workload's model (seeded random weights; ``tiny``: the debug variant's sizes
    for every workload); returns one call of it."""
    import torch

    from saganet.codec import BigVGAN
    from saganet.model import build_network

    sizes = Sizes(tiny or name == "tiny")
    torch.manual_seed(0)
    if name in ("tiny", "network"):
        net = build_network(sizes.network).eval()
        config = net.config
        cond = net.preprocess_conditions(torch.randn(1, config.clip_seq_len, config.clip_dim),
                                         torch.randn(1, config.sync_seq_len, config.sync_dim),
                                         torch.randn(1, config.text_seq_len, config.text_dim))
        empty = net.get_empty_conditions(1)
        x = torch.randn(1, config.latent_seq_len, config.latent_dim)
        t = torch.tensor(0.5)
        return lambda: net.ode_wrapper(t, x, cond, empty, CFG_STRENGTH)
    if name == "vocoder":
        vocoder = BigVGAN(sizes.vocoder()).eval()
        frames = max(1, round(vocoder_seconds * 44100 / vocoder.config.hop_size))
        mel = torch.randn(1, vocoder.config.num_mels, frames) - 5
        return lambda: vocoder(mel)
    raise ValueError(f"unknown workload {name!r}")


def worker(name: str, thread_counts: list[int], repeats: int, vocoder_seconds: float,
           barrier: mp.Barrier, results: mp.Queue, rank: int, tiny: bool = False) -> None:
    """One process: the workload at each thread count, timed between two barriers."""
    import torch

    call = make_workload(name, vocoder_seconds, tiny)
    with torch.inference_mode():
        for threads in thread_counts:
            torch.set_num_threads(threads)
            call()  # warm-up at this setting (kernel set-up, thread pool, allocator)
            barrier.wait()
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                best = min(best, time.perf_counter() - start)
            barrier.wait()  # nobody warms up the next setting while another is timed
            results.put((rank, threads, best))


def measure(name: str, processes: int, thread_counts: list[int], repeats: int,
            vocoder_seconds: float, tiny: bool = False) -> dict[int, float]:
    """Seconds per call at each thread count: the slowest of the concurrent processes."""
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=worker, args=(name, thread_counts, repeats,
                                                    vocoder_seconds, barrier, results, rank,
                                                    tiny))
               for rank in range(processes)]
    for process in workers:
        process.start()
    times: dict[int, float] = {}
    expected = processes * len(thread_counts)
    try:
        while expected:
            try:
                _, threads, seconds = results.get(timeout=5)
            except queue.Empty:
                # A worker that died leaves the others waiting at the barrier: stop them all.
                failed = [p.exitcode for p in workers if p.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"{name}: a worker process exited with {failed[0]}"
                                       ) from None
                continue
            times[threads] = max(times.get(threads, 0.0), seconds)
            expected -= 1
    finally:
        for process in workers:
            if process.exitcode is None and expected:
                process.terminate()
            process.join()
    return dict(sorted(times.items()))


def default_thread_counts(cores: int) -> list[int]:
    """Powers of two up to ``cores``, and ``cores`` itself."""
    counts = {cores}
    power = 1
    while power <= cores:
        counts.add(power)
        power *= 2
    return sorted(counts)


def main() -> int:
    from saganet.runtime import available_cores, choose_policy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=lambda s: s.split(","), default=list(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--threads", type=positive_int, nargs="+", default=None,
                        help="intra-op thread counts to try (default: powers of two up to "
                             "the available cores, and that number)")
    parser.add_argument("--processes", type=positive_int, nargs="+", default=[1, 2],
                        help="concurrent processes sharing the machine (default: 1 and 2)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed calls; the best is kept")
    parser.add_argument("--vocoder-seconds", type=positive_float, default=0.5,
                        help="audio the vocoder workload makes per call")
    add_json_flag(parser)
    add_tiny_flag(parser)
    args = parser.parse_args()
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if min(args.processes) < 1 or (args.threads and min(args.threads) < 1):
        parser.error("--processes and --threads must be at least 1")

    cores = available_cores()
    thread_counts = sorted(set(args.threads or default_thread_counts(cores)))
    print(f"{cores} cores available; thread counts {thread_counts}; best of {args.repeats}",
          flush=True)
    rows = []
    for name in args.workloads:
        for processes in args.processes:
            policy = choose_policy(cores, tiny=args.tiny or name == "tiny",
                                   processes=processes).intra_op
            counts = sorted(set(thread_counts) | {policy})
            times = measure(name, processes, counts, args.repeats, args.vocoder_seconds,
                            args.tiny)
            best = min(times, key=times.get)
            print(f"\n{name}, {processes} process(es): policy {policy} thread(s), "
                  f"fastest {best}")
            fewest = min(times)
            print(f"{'threads':>8} {'s per call':>11} {f'vs {fewest} thread(s)':>16}")
            for threads, seconds in times.items():
                speed_up = times[fewest] / seconds
                mark = "  <- policy" if threads == policy else ""
                print(f"{threads:>8} {seconds:>11.4f} {speed_up:>15.2f}x{mark}")
            print(f"policy at {times[policy] / times[best]:.2f}x the fastest time", flush=True)
            rows.append({"workload": name, "processes": processes, "policy_threads": policy,
                         "fastest_threads": best, "seconds": times,
                         "policy_vs_fastest": times[policy] / times[best]})
    if args.json is not None:
        write_json(args.json, {"cores": cores, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
