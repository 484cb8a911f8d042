"""Time the segmentation-aware Synchformer against MMAudio's plain one on the same clip.

Both run at official size with random weights on a 25 fps clip cut into 16-frame windows
(stride 8; 14 windows = 5 s). The plain model is the baseline measured in the same run; the
ratio is what the focal-crop pass and the cross-attention cost.

    python benchmarks/features.py                 # 14 windows (5 s clip), CPU
    python benchmarks/features.py --quick         # 2 windows: a quick look on a small CPU
    python benchmarks/features.py --device cuda --dtype bfloat16
    python benchmarks/features.py --tiny --json features.json   # smoke run: debug size, 2 windows
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from sizes import Sizes, add_run_flags, check_device, write_json

from saganet.cli import positive_int
from saganet.features import (
    Synchformer,
    SynchformerWithContext,
    encode_sync,
    encode_sync_plain,
    focal_crop,
)
from saganet.features.segments import SEGMENT_STRIDE
from saganet.runtime import configure_runtime


def _timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=positive_int, default=14,
                        help="16-frame windows (14 = 5 s)")
    parser.add_argument("--quick", action="store_true", help="2 windows (overrides --windows)")
    parser.add_argument("--chunk-size", type=positive_int, default=None,
                        help="windows per forward pass (default: all)")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="timed runs; the best is shown")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    add_run_flags(parser)
    args = parser.parse_args()
    if args.quick or args.tiny:
        args.windows = 2
    configure_runtime(Sizes(args.tiny).network, threads=args.threads)
    device, dtype = check_device(parser, args.device), getattr(torch, args.dtype)

    num_frames = 16 + SEGMENT_STRIDE * (args.windows - 1)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(1, num_frames, 3, 224, 224, generator=g) * 2 - 1
    masks = torch.zeros(1, num_frames, 1, 224, 224)
    masks[..., 60:150, 80:140] = 1.0  # one object, so the focal crop is a real zoom
    detail_frames, detail_masks = focal_crop(frames, masks)
    inputs = [t.to(device, dtype) for t in (frames, masks, detail_frames, detail_masks)]

    torch.manual_seed(0)
    config = Sizes(args.tiny).synchformer()
    plain = Synchformer(config).eval().to(device, dtype)
    context = SynchformerWithContext(config).eval().to(device, dtype)
    with torch.no_grad():  # open the gates so every path does real work
        for layer in context.vfeat_extractor.cross_attn_layers:
            layer.attn_factor.fill_(0.1)
            layer.mlp_factor.fill_(0.1)

    print(f"device {device}, {dtype}, threads {torch.get_num_threads()}, "
          f"{args.windows} windows ({num_frames} frames), chunk {args.chunk_size or 'all'}")
    with torch.inference_mode():
        # Warm-up on one window (allocator, kernels); not timed.
        encode_sync_plain(plain, inputs[0][:, :16])
        encode_sync(context, *(t[:, :16] for t in inputs))
        t_plain = _timed(lambda: encode_sync_plain(plain, inputs[0], chunk_size=args.chunk_size),
                         args.repeats, device)
        t_context = _timed(lambda: encode_sync(context, *inputs, chunk_size=args.chunk_size),
                           args.repeats, device)
    for name, seconds in (("plain Synchformer (baseline)", t_plain),
                          ("segmentation-aware Synchformer", t_context)):
        print(f"{name:32s} {seconds:8.2f} s  {1000 * seconds / args.windows:8.1f} ms/window")
    print(f"ratio segmentation-aware / plain: {t_context / t_plain:.2f}x")
    if args.json is not None:
        write_json(args.json, {
            "windows": args.windows, "frames": num_frames, "device": str(device),
            "dtype": args.dtype, "plain_s": t_plain, "segmentation_aware_s": t_context,
            "ratio": t_context / t_plain})


if __name__ == "__main__":
    main()
