"""What stopping work on request costs when nobody asks: the checks of a
:class:`~saganet.cancel.CancelToken` in the generation path.

Part 1: :func:`saganet.soundtrack.write_soundtrack` on a synthetic two-object clip with the
``debug`` variant (the smallest network, so that a fixed per-step cost weighs most), run in
alternating rounds without a token and with a token never cancelled; prints the best CPU time
of each and their ratio (1.000: no cost).

Part 2: what the web app adds to every Euler step (the token's check before the network
evaluation; the engine's record of the last report and the token's check before the page's
progress callback) against the bare callback, in nanoseconds, next to the time of one Euler
step of part 1's run (the median gap between two steps' reports, fastest run).

    python benchmarks/cancel_overhead.py              # 5 rounds, 25 steps, a 2 s clip
    python benchmarks/cancel_overhead.py --quick      # 2 rounds, 8 steps
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
import timeit
from pathlib import Path

import torch
from sizes import add_threads_flag

from saganet.app.engine import _LastReport
from saganet.cancel import CancelToken, checked
from saganet.cli import positive_float, positive_int
from saganet.debug_weights import build_debug_models
from saganet.example import SyntheticScene, synthetic_example
from saganet.inference import SamplingOptions
from saganet.media.masks import MaskVideo
from saganet.soundtrack import SoundObject, SoundtrackRequest, write_soundtrack


def _ignore(stage: str, done: int, total: int) -> None:
    """Progress reports nobody reads."""


def time_run(models, request: SoundtrackRequest, options: SamplingOptions,
             cancel: CancelToken | None) -> tuple[float, float]:
    """CPU seconds of one :func:`write_soundtrack` run (outputs replaced; CPU time, as other
    processes share the machine), and the median wall seconds between two Euler steps'
    reports."""
    stamps: list[float] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "sampling":
            stamps.append(time.perf_counter())

    start = time.process_time()
    write_soundtrack(models, request, options=options, overwrite=True, progress=progress,
                     cancel=cancel)
    took = time.process_time() - start
    return took, statistics.median(b - a for a, b in itertools.pairwise(stamps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 8 steps")
    parser.add_argument("--rounds", type=positive_int, default=5, help="alternating rounds")
    parser.add_argument("--steps", type=positive_int, default=25, help="Euler steps")
    parser.add_argument("--seconds", type=positive_float, default=2.0, help="clip length")
    add_threads_flag(parser, default=1, help="torch threads")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 8
    torch.set_num_threads(args.threads)
    models = build_debug_models(seed=0)
    options = SamplingOptions(num_steps=args.steps)
    with tempfile.TemporaryDirectory() as folder:
        example = synthetic_example(Path(folder) / "clip",
                                    SyntheticScene(width=160, height=90, duration=args.seconds))
        objects = tuple(SoundObject(name, MaskVideo(path), name)
                        for name, path in example.masks.items())
        request = SoundtrackRequest(example.video, objects, Path(folder) / "out")
        time_run(models, request, options, None)  # warm-up: allocator, codecs, files
        best = {"no token": float("inf"), "token": float("inf")}
        steps = []
        for _ in range(args.rounds):
            for name, cancel in (("no token", None), ("token", CancelToken())):
                took, step = time_run(models, request, options, cancel)
                best[name] = min(best[name], took)
                steps.append(step)
    print(f"part 1: write_soundtrack, debug variant, {len(objects)} objects, "
          f"{args.seconds:g} s, {args.steps} steps, best of {args.rounds} alternating rounds, "
          f"{args.threads} thread(s)")
    for name, seconds in best.items():
        print(f"  {name:<9} {seconds:8.3f} CPU s")
    print(f"  ratio token / no token: {best['token'] / best['no token']:.3f}")

    calls = 200_000
    bare = min(timeit.repeat(lambda: _ignore("sampling", 1, 25), number=calls, repeat=5))
    token = CancelToken()
    app = _LastReport(checked(_ignore, token))

    def step() -> None:
        token.check()  # before the network evaluation
        app("sampling", 1, 25)

    chained = min(timeit.repeat(step, number=calls, repeat=5))
    added_ns = (chained - bare) / calls * 1e9
    step_ms = min(steps) * 1e3
    print("part 2: what the app adds to one Euler step")
    print(f"  bare progress callback {bare / calls * 1e9:5.0f} ns; with the token's check "
          f"before the network evaluation and the engine's record and the check in the "
          f"report {chained / calls * 1e9:5.0f} ns: {added_ns:.0f} ns added")
    print(f"  one Euler step of part 1 (fastest median) {step_ms:.1f} ms: the added report "
          f"costs {added_ns * 1e-6 / step_ms:.1e} of it")


if __name__ == "__main__":
    main()
