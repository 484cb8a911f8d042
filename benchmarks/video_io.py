"""Reading a video and its mask for SAGANet: ``load_video_inputs`` against a naive PyAV reader.

The naive baseline decodes every frame to full-size RGB (and every mask frame to full-size
gray), stacks them, picks the 8 and 25 fps frames with the same FFmpeg-``fps`` rule and
resizes them in torch. ``load_video_inputs`` decodes each file once with decoder threads,
converts and resizes only the chosen frames, reads the video and the mask in parallel and
stops after the needed seconds. Both produce the same tensors (checked). Prints the best of
``--repeats`` wall-clock and process CPU times (all threads; steadier on a shared machine)
and the ratios.

    python benchmarks/video_io.py [--video V] [--mask M] [--duration 5] [--repeats 3] [--quick]
    python benchmarks/video_io.py --tiny --json video_io.json   # smoke run: 1 s synthetic clip

With ``--tiny`` the video and mask are a synthetic 1 s clip (``synthetic_media.py``, 640x360)
written to a temporary folder, read once.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from sizes import add_json_flag, add_tiny_flag, best_wall_and_cpu, write_json
from synthetic_media import write_clip
from torchvision.transforms.v2 import functional as TF

from saganet.cli import positive_float, positive_int
from saganet.media.video import (
    CLIP_FPS,
    CLIP_SIZE,
    SYNC_FPS,
    SYNC_SIZE,
    clip_input,
    load_video_inputs,
    mask_input,
    sync_input,
)

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"


def _fps_filter_indices(pts: list[int], time_base: Fraction, fps: int, count: int) -> list[int]:
    """Source frame of each output slot: the last frame whose rounded slot is <= the slot."""
    slots = [math.floor(p * time_base * fps + Fraction(1, 2)) for p in pts]
    return [max(i for i, s in enumerate(slots) if s - slots[0] <= n) for n in range(count)]


def _resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    return TF.resize(frames, [size, size], interpolation=TF.InterpolationMode.BICUBIC,
                     antialias=True)


def _decode_all(path: Path, fmt: str) -> tuple[torch.Tensor, list[int], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format=fmt))
            pts.append(frame.pts)
        return torch.from_numpy(np.stack(frames)), pts, stream.time_base


def naive_load(video: Path, mask: Path, duration: float) -> tuple[torch.Tensor, ...]:
    """Decode everything at full size, then select and resize in torch."""
    rgb, pts, time_base = _decode_all(video, "rgb24")
    rgb = rgb.permute(0, 3, 1, 2)  # (N, 3, H, W)
    clip = _resize(rgb[_fps_filter_indices(pts, time_base, CLIP_FPS, int(CLIP_FPS * duration))],
                   CLIP_SIZE)
    sync = _resize(rgb[_fps_filter_indices(pts, time_base, SYNC_FPS, int(SYNC_FPS * duration))],
                   SYNC_SIZE)
    gray, pts, time_base = _decode_all(mask, "gray")
    masks = _resize(gray[_fps_filter_indices(pts, time_base, SYNC_FPS,
                                             int(SYNC_FPS * duration))][:, None], SYNC_SIZE)
    return clip_input(clip), sync_input(sync), mask_input(masks)


def ours(video: Path, mask: Path, duration: float) -> tuple[torch.Tensor, ...]:
    inputs = load_video_inputs(video, mask, duration)
    return inputs.clip_frames, inputs.sync_frames, inputs.masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path,
                        default=EXAMPLES / "Vid_09_Jesus_tpt_vn_159092_164092.mp4")
    parser.add_argument("--mask", type=Path,
                        default=EXAMPLES / "Masks_02_vn_09_Jesus_159092_164092.mp4")
    parser.add_argument("--duration", type=positive_float, default=5.0)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    add_json_flag(parser)
    add_tiny_flag(parser)
    args = parser.parse_args()
    repeats = 1 if args.quick or args.tiny else args.repeats
    if args.tiny:
        args.duration = 1.0
        with tempfile.TemporaryDirectory(prefix="saganet-video-io-") as folder:
            args.video, (args.mask,) = write_clip(Path(folder), args.duration)
            result = run(args, repeats)
    else:
        result = run(args, repeats)
    if args.json is not None:
        write_json(args.json, result)


def run(args: argparse.Namespace, repeats: int) -> dict:
    """Both readers on ``args.video`` and ``args.mask``; prints and returns the results."""
    print(f"video {args.video.name}, mask {args.mask.name}, {args.duration:g} s, "
          f"torch threads {torch.get_num_threads()}, best of {repeats}")
    wall_naive, cpu_naive, expected = best_wall_and_cpu(
        lambda: naive_load(args.video, args.mask, args.duration), repeats)
    wall_ours, cpu_ours, got = best_wall_and_cpu(
        lambda: ours(args.video, args.mask, args.duration), repeats)
    differences = {}
    for name, a, b in zip(("clip", "sync", "mask"), got, expected, strict=True):
        diff = (a - b).abs().max().item() if a.shape == b.shape else float("nan")
        print(f"  {name}: shape {tuple(a.shape)}, max |ours - naive| {diff:.3g}")
        differences[name] = {"shape": list(a.shape), "max_difference": diff}
    print(f"naive (full-size decode, resize in torch): {wall_naive:.3f} s wall, "
          f"{cpu_naive:.3f} s CPU")
    print(f"load_video_inputs:                                 {wall_ours:.3f} s wall, "
          f"{cpu_ours:.3f} s CPU")
    print(f"speed-up: {wall_naive / wall_ours:.2f}x wall, {cpu_naive / cpu_ours:.2f}x CPU time")
    return {"duration": args.duration, "repeats": repeats, "tensors": differences,
            "naive": {"wall_s": wall_naive, "cpu_s": cpu_naive},
            "load_video_inputs": {"wall_s": wall_ours, "cpu_s": cpu_ours}}


if __name__ == "__main__":
    main()
