"""CLIP's image tower with its self-attention through SDPA against open_clip's own.

Official size with random weights (ViT-H/14 at 384 px, as in ``benchmarks/pipeline.py``), the
same frames through ``ClipEncoder.encode_images`` with ``set_fast_inference(False)`` (the
reference: ``nn.MultiheadAttention``, which without gradients runs PyTorch's native fused
attention) and ``set_fast_inference(True)`` (SDPA), alternating rounds in one process. Prints
CPU seconds per image for each (best and median of the rounds), their ratio and how far the
features differ.

    python benchmarks/clip_attention.py --threads 1              # 4 images, 3 rounds
    python benchmarks/clip_attention.py --device cuda --dtype bfloat16
    python benchmarks/clip_attention.py --tiny --json clip_attention.json   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from pipeline import build_clip
from sizes import Sizes, add_run_flags, check_device, write_json

from saganet.cli import positive_int

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=positive_int, default=4,
                        help="frames per call (one chunk)")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="alternating rounds per path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    add_run_flags(parser)
    args = parser.parse_args()
    if args.tiny:
        args.images, args.rounds = 2, 1
    from saganet.runtime import configure_runtime

    configure_runtime(Sizes(args.tiny).network, threads=args.threads)
    device = check_device(parser, args.device)
    clip = build_clip(device, DTYPES[args.dtype], args.tiny)
    frames = torch.rand(1, args.images, 3, clip.image_size, clip.image_size,
                        generator=torch.Generator().manual_seed(0))
    cpu = device.type == "cpu"
    seconds: dict[bool, list[float]] = {False: [], True: []}
    features: dict[bool, torch.Tensor] = {}
    with torch.inference_mode():
        clip.encode_images(frames[:, :1])  # warm-up: allocator, kernels
        for _ in range(args.rounds):
            for fast in (False, True):
                clip.set_fast_inference(fast)
                if not cpu:
                    torch.cuda.synchronize(device)
                start = time.process_time() if cpu else time.perf_counter()
                features[fast] = clip.encode_images(frames).float()
                if not cpu:
                    torch.cuda.synchronize(device)
                elapsed = (time.process_time() if cpu else time.perf_counter()) - start
                seconds[fast].append(elapsed / args.images)
                print(f"  {'sdpa' if fast else 'reference'}: {elapsed / args.images:.2f} s "
                      "per image", file=sys.stderr, flush=True)
    unit = "CPU s" if cpu else "s"
    print(f"\nCLIP image tower, {args.images} images per call, {args.rounds} rounds, "
          f"{args.device} {args.dtype}, {torch.get_num_threads()} threads ({unit} per image)")
    print(f"{'attention':10s} {'best':>7s} {'median':>7s}")
    for fast, name in ((False, "reference"), (True, "sdpa")):
        print(f"{name:10s} {min(seconds[fast]):7.2f} {statistics.median(seconds[fast]):7.2f}")
    print(f"ratio reference / sdpa: best {min(seconds[False]) / min(seconds[True]):.2f}, "
          f"median {statistics.median(seconds[False]) / statistics.median(seconds[True]):.2f}")
    diff = features[True] - features[False]
    rms = features[False].pow(2).mean().sqrt()
    relative = (diff.pow(2).mean().sqrt() / rms).item()
    print(f"features: RMS of the difference {relative:.2e} relative, "
          f"max {diff.abs().max():.2e}")
    if args.json is not None:
        write_json(args.json, {
            "images": args.images, "rounds": args.rounds, "device": args.device,
            "dtype": args.dtype, "unit": unit,
            "per_image": {name: {"best": min(seconds[fast]),
                                 "median": statistics.median(seconds[fast])}
                          for fast, name in ((False, "reference"), (True, "sdpa"))},
            "relative_difference": relative, "max_difference": diff.abs().max().item()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
