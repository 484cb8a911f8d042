"""Synthetic inputs for the benchmarks and the GPU check: videos of moving boxes, one mask video
per box, and a tiny URMP-format evaluation set. Deterministic; H.264 at 25 fps.

    python benchmarks/synthetic_media.py clip OUT --seconds 30 --objects 2
    python benchmarks/synthetic_media.py urmp OUT --clips 4 --seconds 5
"""

from __future__ import annotations

import argparse
import math
import wave
from pathlib import Path

import av
import numpy as np

from saganet.cli import positive_float, positive_int

FPS = 25
SIZE = (640, 360)
COLOURS = ((230, 200, 40), (40, 220, 90), (60, 120, 240), (220, 60, 160))
AUDIO_RATE = 16000


def _box_centre(index: int, frame: int, size: tuple[int, int]) -> tuple[int, int]:
    """Centre of box ``index`` at ``frame``: each box circles its own spot."""
    width, height = size
    phase = 2 * math.pi * frame / (4 * FPS) + index
    x = width * (0.25 + 0.5 * (index % 2)) + width * 0.1 * math.sin(phase)
    y = height * (0.35 + 0.3 * (index // 2 % 2)) + height * 0.15 * math.cos(phase)
    return int(x), int(y)


def write_clip(folder: Path, seconds: float, objects: int = 1,
               size: tuple[int, int] = SIZE) -> tuple[Path, list[Path]]:
    """``video.mp4`` with ``objects`` moving boxes and ``mask_<i>.mp4`` for each box.

    Args:
        folder: output folder (created).
        seconds: length; half a second more is written.
        objects: number of boxes (each gets a mask video).
        size: frame width and height.
    """
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    paths = [folder / "video.mp4", *(folder / f"mask_{i}.mp4" for i in range(objects))]
    containers = [av.open(str(p), "w") for p in paths]
    try:
        streams = []
        for container in containers:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            streams.append(stream)
        ys, xs = np.mgrid[0:height, 0:width]
        background = np.zeros((height, width, 3), np.uint8)
        background[..., 2] = (xs * 255 // width).astype(np.uint8)
        for n in range(math.ceil(seconds * FPS) + FPS // 2):
            images = [background.copy()]
            for i in range(objects):
                cx, cy = _box_centre(i, n, size)
                inside = (abs(ys - cy) < height // 8) & (abs(xs - cx) < width // 10)
                images[0][inside] = COLOURS[i % len(COLOURS)]
                images.append(np.repeat((inside * 255).astype(np.uint8)[..., None], 3, axis=2))
            for container, stream, image in zip(containers, streams, images, strict=True):
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
        for container, stream in zip(containers, streams, strict=True):
            for packet in stream.encode():
                container.mux(packet)
    finally:
        for container in containers:
            container.close()
    return paths[0], paths[1:]


def write_wav(path: Path, seconds: float, frequency: float) -> None:
    """A 16-bit mono sine tone."""
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    samples = (0.3 * np.sin(2 * np.pi * frequency * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE)
        out.writeframes(samples.tobytes())


def write_urmp_set(root: Path, clips: int = 4, seconds: float = 5.0) -> Path:
    """A URMP-format set: per clip an ensemble video, a mask video and the player's audio.

    Returns:
        The metadata table (``video_id audio_id mask_id instrument label s_ts e_ts``).
    """
    rows = ["\t".join(["video_id", "audio_id", "mask_id", "instrument", "label", "s_ts",
                       "e_ts"])]
    for i in range(clips):
        piece, start = f"0{i + 1}_Synthetic{i}_vn_vc", 1000 * i
        end = start + int(1000 * seconds)
        folder = root / piece
        video, (mask, _) = write_clip(folder / "tmp", seconds, objects=2)
        names = {kind: f"{piece}/{kind}_1_vn_0{i + 1}_Synthetic{i}_{start}_{end}"
                 for kind in ("Vid", "Masks", "AuSep")}
        video.rename(root / f"{names['Vid']}.mp4")
        mask.rename(root / f"{names['Masks']}.mp4")
        write_wav(root / f"{names['AuSep']}.wav", seconds, 220.0 * (i + 1))
        for leftover in (folder / "tmp").iterdir():
            leftover.unlink()
        (folder / "tmp").rmdir()
        rows.append("\t".join([names["Vid"], names["AuSep"], names["Masks"], "vn", "violin",
                               str(start), str(end)]))
    table = root / "metadata.tsv"
    table.write_text("\n".join(rows) + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    clip = sub.add_parser("clip", help="a video and one mask video per object")
    clip.add_argument("out", type=Path)
    clip.add_argument("--seconds", type=positive_float, default=5.0)
    clip.add_argument("--objects", type=positive_int, default=1)
    urmp = sub.add_parser("urmp", help="a tiny URMP-format evaluation set")
    urmp.add_argument("out", type=Path)
    urmp.add_argument("--clips", type=positive_int, default=4)
    urmp.add_argument("--seconds", type=positive_float, default=5.0)
    args = parser.parse_args()
    if args.kind == "clip":
        video, masks = write_clip(args.out, args.seconds, args.objects)
        print(video, *masks)
    else:
        print(write_urmp_set(args.out, args.clips, args.seconds))


if __name__ == "__main__":
    main()
