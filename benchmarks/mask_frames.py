"""Masks from a folder of per-frame label PNGs against the lossless mask video of the same masks.

A video object segmentation method writes one palette PNG per frame (object ``k`` as index
``k``); ``--mask_video FOLDER --mask_id K`` reads it as it is (``MaskFrames``). The other way
is to convert the folder into a mask video first and read that (``MaskVideo``). This times
both readers over the 5 s windows of a video (1 s overlap, as ``demo.py`` reads them), checks
that they give the same masks, and prints the ratio; it also times the conversion the folder
reader saves. Best of ``--repeats`` wall-clock and process CPU times.

    python benchmarks/mask_frames.py [--seconds 10] [--fps 30] [--size 1920x1080] [--objects 3]
    python benchmarks/mask_frames.py --tiny --json mask_frames.json   # smoke run: 2 s, 320x180
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sizes import add_json_flag, add_tiny_flag, best_wall_and_cpu, write_json

from saganet.cli import positive_float, positive_int
from saganet.media.mask_frames import MaskFrames
from saganet.media.masks import MaskVideo
from saganet.media.output import write_mask_video

WINDOW_S, OVERLAP_S = 5.0, 1.0


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def labels(index: int, fps: float, width: int, height: int, objects: int) -> np.ndarray:
    """Frame ``index``'s label image: object ``k`` an ellipse circling at its own speed."""
    yy, xx = np.ogrid[:height, :width]
    image = np.zeros((height, width), np.uint8)
    for k in range(1, objects + 1):
        angle = 2 * np.pi * 0.2 * k * index / fps
        cx = width * (k / (objects + 1)) + 0.1 * width * np.cos(angle)
        cy = height * 0.5 + 0.25 * height * np.sin(angle)
        inside = ((xx - cx) / (0.08 * width)) ** 2 + ((yy - cy) / (0.15 * height)) ** 2 <= 1
        image[inside] = k
    return image


def write_folder(folder: Path, count: int, fps: float, size: tuple[int, int],
                 objects: int) -> Path:
    """The label PNGs of ``count`` frames (palette images, as VOS tools save them)."""
    folder.mkdir(parents=True)
    palette = [0, 0, 0] + [v for k in range(1, 256) for v in (37 * k % 256, 91 * k % 256, 200)]
    for index in range(count):
        image = Image.fromarray(labels(index, fps, *size, objects), mode="L").convert("P")
        image.putpalette(palette)
        image.save(folder / f"{index:05d}.png")
    return folder


def convert(folder: Path, output: Path, fps: float, object_id: int) -> Path:
    """The conversion the folder reader makes unnecessary: one object's lossless mask video."""
    def masks():
        for path in sorted(folder.glob("*.png")):
            with Image.open(path) as image:
                yield np.asarray(image) == object_id

    return write_mask_video(output, masks(), fps=fps, overwrite=True)


def windows(seconds: float) -> list[tuple[float, float]]:
    """The 5 s windows (1 s overlap) covering ``seconds``, one window for shorter videos."""
    starts, start = [], 0.0
    while True:
        starts.append(start)
        if start + WINDOW_S >= seconds:
            break
        start += WINDOW_S - OVERLAP_S
    return [(s, min(s + WINDOW_S, seconds)) for s in starts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=positive_float, default=10.0)
    parser.add_argument("--fps", type=positive_float, default=30.0)
    parser.add_argument("--size", type=_size, default=(1920, 1080), metavar="WxH")
    parser.add_argument("--objects", type=positive_int, default=3)
    parser.add_argument("--repeats", type=positive_int, default=3)
    add_tiny_flag(parser)
    add_json_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.seconds, args.size, args.repeats = 2.0, (320, 180), 1
    torch.set_num_threads(1)
    count = round(args.seconds * args.fps)
    spans = windows(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "labels", count, args.fps, args.size, args.objects)
        convert_wall, convert_cpu, video = best_wall_and_cpu(
            lambda: convert(folder, Path(tmp) / "mask.mp4", args.fps, 1), args.repeats)

        def read(source: Callable[[], MaskFrames | MaskVideo]) -> list[torch.Tensor]:
            masks = source()
            return [masks.read(start, end) for start, end in spans]

        video_wall, video_cpu, from_video = best_wall_and_cpu(
            lambda: read(lambda: MaskVideo(video)), args.repeats)
        frames_wall, frames_cpu, from_frames = best_wall_and_cpu(
            lambda: read(lambda: MaskFrames(folder, args.fps, object_id=1)), args.repeats)
    equal = all(torch.equal(a, b) for a, b in zip(from_video, from_frames, strict=True))
    width, height = args.size
    print(f"{count} frames of {width}x{height} at {args.fps:g} fps, {args.objects} objects, "
          f"{len(spans)} window(s); best of {args.repeats}, 1 torch thread")
    print(f"{'':34}{'wall s':>9}{'CPU s':>9}")
    print(f"{'mask video (MaskVideo)':34}{video_wall:9.3f}{video_cpu:9.3f}")
    print(f"{'label PNGs (MaskFrames)':34}{frames_wall:9.3f}{frames_cpu:9.3f}")
    print(f"{'converting PNGs to a mask video':34}{convert_wall:9.3f}{convert_cpu:9.3f}")
    ratio = frames_wall / video_wall
    print(f"PNGs / mask video: {ratio:.2f}x wall; PNGs / (conversion + mask video): "
          f"{frames_wall / (convert_wall + video_wall):.2f}x; same masks: {equal}")
    if args.json:
        write_json(args.json, {
            "frames": count, "width": width, "height": height, "fps": args.fps,
            "objects": args.objects, "windows": len(spans), "repeats": args.repeats,
            "mask_video": {"wall_s": video_wall, "cpu_s": video_cpu},
            "mask_frames": {"wall_s": frames_wall, "cpu_s": frames_cpu},
            "conversion": {"wall_s": convert_wall, "cpu_s": convert_cpu},
            "ratio_wall": ratio, "same_masks": equal})
    if not equal:
        raise SystemExit("the two readers gave different masks")


if __name__ == "__main__":
    main()
