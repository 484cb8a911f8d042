"""Reading a long video window by window, in one decoding pass.

The model takes the CLIP frames (8 fps, 384x384) and Synchformer frames (25 fps, 224x224) of
one window at a time. :func:`read_windows` decodes the video once and hands out each window's
frames as soon as they are complete, keeping only frames that a later window still needs, so
memory does not grow with the video's length. Frames follow the same rules as
:func:`saganet.media.video.read_frame_sets` (FFmpeg ``fps`` filter slots, squash resize,
upright); a window that runs past the last frame holds that frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from saganet.errors import UserInputError
from saganet.media.video import (
    CLIP_FPS,
    CLIP_SIZE,
    SYNC_FPS,
    SYNC_SIZE,
    FrameRequest,
    PathLike,
    clip_input,
    stream_frames,
    sync_input,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowFrames:
    """Model-ready frames of one window.

    Args:
        index: the window's position in the list given to :func:`read_windows`.
        clip_frames: ``(Tc, 3, 384, 384)`` float32 in [0, 1], 8 fps.
        sync_frames: ``(Ts, 3, 224, 224)`` float32 in [-1, 1], 25 fps.
        clip_slots: per CLIP frame, its slot on the video's 8 fps grid (``k`` for the frame
            shown at ``k / 8`` s). Every window's CLIP frames lie on that one grid, so
            overlapping windows share frames, and equal slots are equal images (a window
            past the video's end repeats the last slot).
        sync_slots: the same for the Synchformer frames, on the 25 fps grid.
    """

    index: int
    clip_frames: torch.Tensor
    sync_frames: torch.Tensor
    clip_slots: tuple[int, ...]
    sync_slots: tuple[int, ...]


@dataclass(frozen=True)
class _Span:
    first: int
    count: int

    @property
    def stop(self) -> int:
        return self.first + self.count


def _span(start: float, fps: int, count: int) -> _Span:
    request = FrameRequest(fps, 1, start=start).slots()
    return _Span(request.first, count)


def _take(buffer: dict[int, np.ndarray], span: _Span, what: str,
          path: PathLike) -> tuple[np.ndarray, tuple[int, ...]]:
    """The span's frames and their slots; past the last decoded frame, the last one is held."""
    if not buffer:
        raise UserInputError(f"no {what} frame at or after the window start", path)
    last = max(buffer)
    slots = tuple(min(k, last) for k in range(span.first, span.stop))
    if span.stop - 1 > last:
        logger.debug("%s: window ends %d %s frame(s) after the video; holding the last one",
                     path, span.stop - 1 - last, what)
    return np.stack([buffer[k] for k in slots]), slots


def read_windows(path: PathLike, starts: Sequence[float], duration: float,
                 ) -> Iterator[WindowFrames]:
    """The frames of windows ``[start, start + duration)`` of a video, in order.

    Args:
        path: the video file.
        starts: window starts in seconds from the video's first frame, increasing.
        duration: seconds per window: ``int(8 * duration)`` CLIP frames and
            ``int(25 * duration)`` Synchformer frames each.

    Raises:
        UserInputError: unreadable video, or a window with no frame at all.
    """
    if list(starts) != sorted(starts):
        raise ValueError("window starts must increase")
    clip_spans = [_span(s, CLIP_FPS, int(CLIP_FPS * duration)) for s in starts]
    sync_spans = [_span(s, SYNC_FPS, int(SYNC_FPS * duration)) for s in starts]
    first = float(starts[0]) if starts else 0.0
    end = float(max(starts, default=0.0)) + duration
    requests = [FrameRequest(CLIP_FPS, CLIP_SIZE, start=first, end=end + 1 / CLIP_FPS),
                FrameRequest(SYNC_FPS, SYNC_SIZE, start=first, end=end + 1 / SYNC_FPS)]
    buffers: tuple[dict[int, np.ndarray], dict[int, np.ndarray]] = ({}, {})
    latest = [-1, -1]
    frames = stream_frames(path, requests)
    index = 0
    try:
        for number, slot, image in frames:
            buffers[number][slot] = image
            latest[number] = slot
            while index < len(starts) and latest[0] >= clip_spans[index].stop - 1 \
                    and latest[1] >= sync_spans[index].stop - 1:
                yield _emit(index, buffers, clip_spans, sync_spans, path)
                index += 1
        while index < len(starts):
            yield _emit(index, buffers, clip_spans, sync_spans, path)
            index += 1
    finally:
        frames.close()


def _emit(index: int, buffers: tuple[dict[int, np.ndarray], dict[int, np.ndarray]],
          clip_spans: Sequence[_Span], sync_spans: Sequence[_Span],
          path: PathLike) -> WindowFrames:
    clip, clip_slots = _take(buffers[0], clip_spans[index], "CLIP", path)
    sync, sync_slots = _take(buffers[1], sync_spans[index], "Synchformer", path)
    # Frames before the next window's start are needed no more.
    if index + 1 < len(clip_spans):
        for buffer, spans in zip(buffers, (clip_spans, sync_spans), strict=True):
            keep_from = spans[index + 1].first
            latest = max(buffer, default=keep_from)
            for slot in [k for k in buffer if k < keep_from and k != latest]:
                del buffer[slot]
    return WindowFrames(index, clip_input(torch.from_numpy(clip)),
                        sync_input(torch.from_numpy(sync)), clip_slots, sync_slots)

