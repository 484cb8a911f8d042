"""Long videos: speed, memory and seams of the two ways of joining windows.

Part 1 (join methods): a synthetic clip with two objects (``--seconds``, default 30) through
:func:`saganet.soundtrack.write_soundtrack` with the ``debug`` variant, once per join method,
each in a fresh process. Prints wall seconds per second of audio, peak RSS, and two seam
figures per method (mean over objects):

* ``disagreement``: RMS difference between the latents that neighbouring windows generate for
  the same positions, relative to the latents' RMS (what the listener would hear switch at a
  join; joint sampling makes it 0 by construction, which this checks);
* ``flux ratio``: spectral flux of the stem around the points where a window starts or stops
  contributing, divided by the median flux of the whole stem (1 = nothing happens at joins).

Peak RSS is that of :func:`write_soundtrack` alone (the high-water mark is reset after the
synthetic clip is made and the models are loaded).

Part 2 (memory): peak RSS of the run for clips of ``--lengths`` seconds (default 10, 60,
300) at ``--height`` (default 1080, 16:9), joint sampling, each in a fresh process; printed
with the ratio to the shortest. Frames are decoded window by window, so it should stay flat.

The debug variant's random weights make these figures about the mechanics (cost, memory,
whether windows agree), not about sound quality.

    python benchmarks/long_form.py                 # both parts (the 300 s clip takes a while)
    python benchmarks/long_form.py --quick         # 12 s clip; lengths 5, 20, 40 at 360p
    python benchmarks/long_form.py --tiny --json long_form.json   # smoke run: 6 s, 2 s, 2 steps
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from sizes import TINY_STEPS, add_run_flags, write_json

from saganet.cli import positive_float, positive_int
from saganet.example import SyntheticScene, synthetic_example
from saganet.inference import SamplingOptions
from saganet.media.masks import MaskVideo
from saganet.pipeline import load_models
from saganet.soundtrack import SoundObject, SoundtrackRequest, write_soundtrack
from saganet.soundtrack import render as render_module

JOINS = ("joint", "crossfade")
FLUX_WINDOW_S = 0.05


CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def _reset_peak_rss() -> None:
    """Start the high-water mark afresh (Linux), so that making the synthetic clip and loading
    the models do not count."""
    if CLEAR_REFS.exists():
        CLEAR_REFS.write_text("5")


def _peak_rss_mib() -> float:
    """Peak resident set since the last reset (VmHWM; the whole process elsewhere)."""
    if STATUS.exists():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_flac(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)]) / 2.0**31


def _flux(audio: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Spectral flux per STFT frame (log magnitude) and the hop in samples."""
    hop, size = 512, 2048
    spectrum = torch.stft(torch.from_numpy(audio).float(), size, hop,
                          window=torch.hann_window(size), return_complex=True).abs()
    log = torch.log1p(spectrum)  # (F, T)
    return (log[:, 1:] - log[:, :-1]).abs().mean(dim=0).numpy(), hop


def _seams(result, latents: list[tuple[int, int, torch.Tensor]]) -> dict[str, float]:
    plan = result.plan
    sr = plan.sampling_rate
    disagreements = []
    by_object: dict[int, dict[int, torch.Tensor]] = {}
    for obj, window, latent in latents:
        by_object.setdefault(obj, {})[window] = latent
    for windows in by_object.values():
        scale = torch.cat(list(windows.values())).float().pow(2).mean().sqrt()
        for index in sorted(windows)[:-1]:
            if index + 1 not in windows:
                continue
            a = plan.latent_span(plan.windows[index])
            b = plan.latent_span(plan.windows[index + 1])
            low, high = max(a.start, b.start), min(a.stop, b.stop)
            first = windows[index][low - a.start : high - a.start].float()
            second = windows[index + 1][low - b.start : high - b.start].float()
            disagreements.append(float((first - second).pow(2).mean().sqrt() / scale))
    ratios = []
    # Where a window starts or stops contributing.
    joins = sorted({plan.sample_span(w).start for w in plan.windows[1:]}
                   | {plan.sample_span(w).stop for w in plan.windows[:-1]})
    for path in result.outputs.stems.values():
        flux, hop = _flux(_read_flac(path), sr)
        reach = max(1, round(FLUX_WINDOW_S * sr / hop))
        near = [flux[max(0, j // hop - reach) : j // hop + reach].mean() for j in joins
                if j // hop < len(flux)]
        if near:
            ratios.append(float(np.mean(near) / np.median(flux)))
    return {"disagreement": statistics.fmean(disagreements) if disagreements else 0.0,
            "flux_ratio": statistics.fmean(ratios) if ratios else float("nan")}


def child(args: argparse.Namespace) -> None:
    """One run in this process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    scene = SyntheticScene(width=round(args.height * 16 / 9 / 2) * 2, height=args.height,
                           duration=args.seconds)
    example = synthetic_example(work / f"clip_{args.seconds:g}_{args.height}", scene)
    models = load_models("debug", weights_dir=work / "weights")
    objects = tuple(SoundObject(name, MaskVideo(path), example.prompts[name])
                    for name, path in example.masks.items())
    request = SoundtrackRequest(example.video, objects,
                                work / f"out_{args.join}_{args.seconds:g}", join=args.join,
                                write_video=False)
    latents: list[tuple[int, int, torch.Tensor]] = []
    if args.seams:
        # Keep each window's latents on their way to the decoder (either join's).
        def recording(original):
            def record(runner, stems, items, batch):
                latents.extend((i.obj, i.window, batch[k].cpu()) for k, i in enumerate(items))
                return original(runner, stems, items, batch)
            return record

        render_module._decode_into = recording(render_module._decode_into)
        render_module._decode_joint = recording(render_module._decode_joint)
    _reset_peak_rss()
    start = time.perf_counter()
    result = write_soundtrack(models, request, seed=0, overwrite=True,
                              options=SamplingOptions(num_steps=args.steps))
    seconds = time.perf_counter() - start
    line = {"join": args.join, "seconds": args.seconds, "wall_s": seconds,
            "s_per_audio_s": seconds / result.segment.duration,
            "windows": len(result.plan.windows), "peak_rss_mib": _peak_rss_mib()}
    if args.seams:
        line.update(_seams(result, latents))
    print(json.dumps(line))


def _run_child(work: Path, join: str, seconds: float, height: int, steps: int, threads: int,
               seams: bool) -> dict:
    command = [sys.executable, __file__, "--child", "--work", str(work), "--join", join,
               "--seconds", str(seconds), "--height", str(height), "--steps", str(steps),
               "--threads", str(threads)] + (["--seams"] if seams else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short clips, 360p")
    parser.add_argument("--seconds", type=positive_float, default=30.0,
                        help="clip length of part 1")
    parser.add_argument("--lengths", type=positive_float, nargs="+", default=[10.0, 60.0, 300.0],
                        help="clip lengths of part 2")
    parser.add_argument("--height", type=positive_int, default=1080, help="frame height of part 2")
    parser.add_argument("--steps", type=positive_int, default=25, help="Euler steps")
    add_run_flags(parser, threads=1, threads_help="torch threads per run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--join", default="joint", help=argparse.SUPPRESS)
    parser.add_argument("--seams", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.seconds, args.lengths, args.height, args.steps = 12.0, [5.0, 20.0, 40.0], 360, 4
    if args.tiny:  # two windows in part 1, one short length in part 2
        args.seconds, args.lengths, args.height, args.steps = 6.0, [2.0], 144, TINY_STEPS
    results: dict[str, list[dict]] = {"joins": [], "lengths": []}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        print(f"part 1: {args.seconds:g} s clip, 2 objects, {args.steps} steps, debug variant, "
              f"{args.threads} thread(s), 180p")
        print(f"{'join':<10} {'windows':>7} {'s/s audio':>10} {'peak RSS':>10} "
              f"{'disagreement':>13} {'flux ratio':>11}")
        for join in JOINS:
            row = _run_child(work, join, args.seconds, 180, args.steps, args.threads, True)
            results["joins"].append(row)
            print(f"{join:<10} {row['windows']:>7} {row['s_per_audio_s']:>10.3f} "
                  f"{row['peak_rss_mib']:>8.0f} M {row['disagreement']:>13.4f} "
                  f"{row['flux_ratio']:>11.3f}")
        print(f"\npart 2: peak RSS by length, joint, {args.height}p, {args.steps} steps")
        baseline = None
        for seconds in args.lengths:
            row = _run_child(work, "joint", seconds, args.height, args.steps, args.threads,
                             False)
            baseline = baseline or row["peak_rss_mib"]
            results["lengths"].append({**row, "height": args.height})
            print(f"{seconds:>6g} s  {row['windows']:>3} windows  peak RSS "
                  f"{row['peak_rss_mib']:>6.0f} MiB  ({row['peak_rss_mib'] / baseline:.2f}x)  "
                  f"{row['s_per_audio_s']:.3f} s per s of audio")
    if args.json is not None:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
