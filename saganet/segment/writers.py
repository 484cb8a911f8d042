"""Writing tracked masks: a lossless mask video per object, and an overlay preview.

A mask video holds one gray frame per 25 fps slot (0 background, 255 object) at the video's
upright size, from time 0. It is H.264 in MP4, lossless (``qp=0``, High 4:4:4 Predictive
profile, full-range luma), which FFmpeg-based readers decode bit-exactly (about 30 KiB for two
seconds of a 1080p mask); where FFmpeg lacks libx264, FFV1 in MP4 (also lossless, larger and
read by fewer players). Reading it back with :class:`saganet.media.masks.MaskVideo` gives
exactly the masks :class:`~saganet.segment.store.TrackedMasks` serves from memory.

The mask video is written by :func:`saganet.media.output.write_mask_video`. The preview is
the tracked range of the video on the 25 fps grid with each object tinted in its
own colour (H.264, yuv420p, for viewing). Both are written under a temporary name and renamed
when complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from saganet.fileio import atomic_output, ffmpeg_name
from saganet.media.output import H264_OPTIONS, OVERLAY_COLORS, even_size, h264_codec
from saganet.media.output import write_mask_video as write_masks
from saganet.media.video import PathLike
from saganet.segment.grid import GRID_FPS, VideoGrid
from saganet.segment.store import TrackedMasks

# One colour per object, in order (RGB), as everywhere else; repeats after the last.
PALETTE = OVERLAY_COLORS
PREVIEW_ALPHA = 0.5


def write_mask_video(masks: TrackedMasks, path: PathLike, overwrite: bool = False) -> Path:
    """Write one object's masks as a lossless 25 fps mask video (module docstring).

    Args:
        masks: the object's tracked masks.
        path: output ``.mp4``.
        overwrite: replace an existing file.

    Raises:
        UserInputError: ``path`` exists and ``overwrite`` is False, or is a folder.
    """
    return write_masks(path, masks.iter_masks(), fps=GRID_FPS, overwrite=overwrite)


def write_preview(grid: VideoGrid, objects: Sequence[TrackedMasks], path: PathLike,
                  first: int = 0, stop: int | None = None, overwrite: bool = False) -> Path:
    """Write slots ``first .. stop - 1`` of the video with each object tinted (module docstring).

    Args:
        grid: the video.
        objects: tracked objects, tinted in :data:`PALETTE` order.
        path: output ``.mp4``.
        first: first slot.
        stop: one past the last slot (None: the end).
        overwrite: replace an existing file.

    Raises:
        UserInputError: ``path`` exists and ``overwrite`` is False, or is a folder.
    """
    path = Path(path)
    info = grid.index.info
    stop = grid.index.num_slots if stop is None else stop
    # yuv420p needs even sizes of at least 2: the odd last row or column is dropped, and a
    # side of 1 pixel is repeated once.
    width, height = even_size(info.width), even_size(info.height)
    codec = h264_codec()
    colors = [np.asarray(PALETTE[i % len(PALETTE)], np.float32) for i in range(len(objects))]
    with atomic_output(path, overwrite, suffix=".mp4") as tmp, \
            av.open(ffmpeg_name(tmp), "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=GRID_FPS,
                                options=H264_OPTIONS if codec == "libx264" else {})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        masks = [obj.iter_masks(first, stop) for obj in objects]
        for slot, rgb in grid.forward(first, stop):
            image = _frame_size(rgb, height, width).astype(np.float32)
            for color, mask_iter in zip(colors, masks, strict=True):
                mask = _frame_size(np.asarray(next(mask_iter)), height, width)
                image[mask] = image[mask] * (1 - PREVIEW_ALPHA) + color * PREVIEW_ALPHA
            frame = av.VideoFrame.from_ndarray(np.round(image).astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = slot - first, Fraction(1, GRID_FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _frame_size(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (rows and columns first) cut to ``height`` x ``width``, its last row or column
    repeated where it has fewer."""
    image = image[:height, :width]
    missing = ((0, height - image.shape[0]), (0, width - image.shape[1]))
    if any(after for _, after in missing):
        image = np.pad(image, [*missing, *[(0, 0)] * (image.ndim - 2)], mode="edge")
    return image
