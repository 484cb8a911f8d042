"""Generating a video again: what keeping its features saves.

The web app and ``python -m saganet.batch`` keep the CLIP and Synchformer features of a video
(:class:`saganet.soundtrack.FeatureCache`), so that another prompt, seed, guidance or number of
steps for the same video and masks starts with the text and the sampling. This benchmark builds
every module at its published size (``--tiny``: the debug variant's) with random weights,
writes a synthetic clip with moving boxes and their masks, and runs ``write_soundtrack`` in one
process:

1. ``first``: prompt "violin", seed 1, with an empty cache: what any first generation costs;
2. ``baseline``: prompt "trumpet", seed 2, guidance 4.5, without the cache: what generating
   again cost before;
3. ``again``: the same as ``baseline`` with the cache the first run filled.

``--repeats`` alternates rounds of ``baseline`` and ``again`` (best of each). It prints wall
and CPU seconds, their ratio, and checks that ``again`` wrote the same files as ``baseline``.

    python benchmarks/regenerate.py --duration 1 --threads 2
    python benchmarks/regenerate.py --tiny --json regenerate.json    # smoke run
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
import time
from pathlib import Path

import torch
from pipeline import build_models
from sizes import TINY_STEPS, add_run_flags, check_device, write_json
from synthetic_media import write_clip

from saganet.cli import positive_float, positive_int

NUM_STEPS = 25
FIRST = {"prompt": "violin", "seed": 1, "cfg_strength": 7.0}
AGAIN = {"prompt": "trumpet", "seed": 2, "cfg_strength": 4.5}


def _run(models, video: Path, masks: list[Path], out: Path, setting: dict, steps: int,
         cache) -> dict[str, float]:
    """One ``write_soundtrack`` call; its wall and CPU seconds."""
    from saganet.inference import SamplingOptions
    from saganet.media.masks import MaskVideo
    from saganet.soundtrack import SoundObject, SoundtrackRequest, write_soundtrack

    request = SoundtrackRequest(
        video=video, output_dir=out, write_video=False,
        objects=tuple(SoundObject(f"object_{k}", MaskVideo(m), setting["prompt"])
                      for k, m in enumerate(masks)))
    options = SamplingOptions(cfg_strength=setting["cfg_strength"], num_steps=steps)
    wall, cpu = time.perf_counter(), time.process_time()
    write_soundtrack(models, request, options=options, seed=setting["seed"], cache=cache)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def _same_files(one: Path, other: Path) -> bool:
    names = sorted(p.name for p in one.iterdir())
    return names == sorted(p.name for p in other.iterdir()) and all(
        filecmp.cmp(one / n, other / n, shallow=False) for n in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=positive_float, default=None,
                        help="seconds of video (default 1; --tiny: 2)")
    parser.add_argument("--objects", type=positive_int, default=1, help="objects (masks)")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="rounds of baseline and again, alternating (best of each)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    add_run_flags(parser)
    args = parser.parse_args()
    device = check_device(parser, args.device)

    from saganet.runtime import available_cores, choose_policy
    from saganet.soundtrack import FeatureCache

    torch.set_num_threads(args.threads or choose_policy(available_cores(),
                                                        tiny=args.tiny).intra_op)
    duration = args.duration or (2.0 if args.tiny else 1.0)
    steps = TINY_STEPS if args.tiny else NUM_STEPS
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    built = build_models(device, dtype, need_clip=True, tiny=args.tiny)
    for module in (built.network, built.synchformer, built.clip, built.codec.vocoder):
        module.set_fast_inference(True)
    models = built.library()
    results: dict[str, list[dict[str, float]]] = {"first": [], "baseline": [], "again": []}
    with tempfile.TemporaryDirectory(prefix="saganet-regenerate-") as tmp:
        work = Path(tmp)
        video, masks = write_clip(work / "clip", duration, args.objects)
        cache = FeatureCache()
        results["first"].append(_run(models, video, masks, work / "first", FIRST, steps, cache))
        same = True
        for round_ in range(args.repeats):
            for path in ("baseline", "again"):
                out = work / f"{path}{round_}"
                results[path].append(_run(models, video, masks, out, AGAIN, steps,
                                          cache if path == "again" else None))
            same &= _same_files(work / f"baseline{round_}", work / f"again{round_}")
    best = {path: min(runs, key=lambda r: r["cpu_s"]) for path, runs in results.items()}
    print(f"\n{duration:g} s of video, {args.objects} object(s), {device} ({str(dtype)[6:]}), "
          f"{torch.get_num_threads()} threads, {steps} steps, best of {args.repeats}")
    print(f"{'run':10s} {'wall s':>8s} {'CPU s':>8s}")
    for path, result in best.items():
        print(f"{path:10s} {result['wall_s']:8.2f} {result['cpu_s']:8.2f}")
    ratio = {k: best["baseline"][k] / max(best["again"][k], 1e-9) for k in ("wall_s", "cpu_s")}
    print(f"again against baseline: {ratio['wall_s']:.2f}x wall, {ratio['cpu_s']:.2f}x CPU; "
          f"the same files: {'yes' if same else 'NO'}")
    if args.json:
        write_json(args.json, {"duration": duration, "objects": args.objects,
                               "device": str(device), "threads": torch.get_num_threads(),
                               "steps": steps, "runs": results, "best": best,
                               "ratio": ratio, "same_files": same})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
