"""Segmentation masks stored as COCO compressed RLE: decoding, and writing them as mask videos.

The published SMS masks are COCO compressed-RLE strings, one per frame. COCO RLE runs over the
pixels in column-major (Fortran) order, which pycocotools (the maintained COCO API) handles;
this module only wraps it into ``(n, H, W)`` arrays. :func:`masks_to_video` turns such masks
into the gray ``*_mask.mp4`` videos that the datasets read.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from pycocotools import mask as coco_mask

from saganet.fileio import ffmpeg_name, temporary_sibling

log = logging.getLogger(__name__)


def _run_total(counts: bytes) -> int | None:
    """The number of pixels a compressed ``counts`` string covers (sum of its runs).

    The string holds one number per run, in 6-bit characters offset by 48: 5 value bits each,
    least significant group first, ``0x20`` set while more groups follow, ``0x10`` of the last
    group the sign; from the fourth run on, a run is stored as its difference to the run two
    before.

    Returns:
        The total, or None when the string is malformed (cut inside a number, a negative run).
    """
    runs: list[int] = []
    value = shift = 0
    for char in counts:
        group = char - 48
        if not 0 <= group < 64:
            return None
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return None
        runs.append(value)
        value = shift = 0
    return sum(runs) if shift == 0 else None


def decode_rle(counts: Sequence[str | bytes | None], height: int, width: int) -> np.ndarray:
    """Decode COCO compressed-RLE strings (one per frame) into boolean masks.

    Args:
        counts: the compressed ``counts`` string of each frame (str or bytes); an empty string
            or None is a frame without a mask (all background).
        height: mask height in pixels.
        width: mask width in pixels.

    Returns:
        ``(n, height, width)`` bool array, ``n = len(counts)``.

    Raises:
        ValueError: a string is malformed or its runs do not cover ``height * width`` pixels
            (a mask of another size: pycocotools would return uninitialised memory).
    """
    masks = np.zeros((len(counts), height, width), dtype=bool)
    rles, frames = [], []
    for k, c in enumerate(counts):
        if not c:
            continue
        data = c.encode("ascii") if isinstance(c, str) else bytes(c)
        total = _run_total(data)
        if total != height * width:
            covers = "is not a COCO compressed RLE" if total is None else f"covers {total} pixels"
            raise ValueError(f"the RLE of frame {k} {covers}; a {height}x{width} mask has "
                             f"{height * width}")
        rles.append({"size": [height, width], "counts": data})
        frames.append(k)
    if not rles:
        return masks
    with warnings.catch_warnings():
        # pycocotools' Cython layer trips NumPy 2's __array__(copy=...) deprecation; harmless
        # here and not ours to fix.
        warnings.filterwarnings(
            "ignore", message="__array__ implementation", category=DeprecationWarning
        )
        decoded = coco_mask.decode(rles)  # (H, W, n) uint8, column-major decoded
    masks[frames] = decoded.transpose(2, 0, 1) != 0
    return masks


def masks_to_video(
    masks: np.ndarray, path: str | Path, fps: float | Fraction = 25
) -> Path:
    """Write masks as a gray H.264 video (foreground 255, background 0).

    The video is encoded by libx264 (default settings) from the single-channel ``gray`` pixel
    format, i.e. monochrome 4:0:0 H.264 with the full 0-255 range, as the reference pipeline's
    mask videos; FFmpeg's decoder hands it out as yuv420p with neutral chroma. The codec is
    lossy, so decoded values are near (not always exactly) 0 and 255 at mask edges. Written
    under a temporary name and renamed.

    Args:
        masks: ``(n, H, W)`` array (bool, or any numeric type where nonzero is foreground) or a
            tensor convertible with ``np.asarray``. Odd sizes are fine: a gray (4:0:0) stream
            has no subsampled chroma planes.
        path: the output ``.mp4``; parent folders are created.
        fps: frame rate of the video.

    Returns:
        ``path``.
    """
    frames = np.asarray(masks)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"masks must be a non-empty (n, H, W) array, got shape {frames.shape}")
    n, height, width = frames.shape
    gray = np.where(frames != 0, 255, 0).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_sibling(path, path.suffix)
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(ffmpeg_name(partial), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = "gray"
            for k in range(n):
                frame = av.VideoFrame.from_ndarray(gray[k], format="gray")
                frame.pts = k
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    log.debug("wrote %d mask frames to %s", n, path)
    return path
