"""A video's frames on the 25 fps model grid, streamed forwards or backwards.

Tracking needs only the frames the model sees: slot ``k`` at ``k / 25`` s after the first
frame, filled as FFmpeg's ``fps`` filter fills it (the rule the mask reader follows, see
:mod:`saganet.media.video`). :meth:`VideoGrid.scan` decodes the video once without
converting anything and records which decoded frame fills each slot; from then on frames are
handed out one at a time, upright, as ``(H, W, 3)`` RGB, so no more than a few are ever held.

Backward order (for prompts in mid-video) is served in chunks: the decoder seeks to a keyframe
before each chunk, decodes up to its end and hands the chunk's frames out in reverse. Frames are
recognised by their timestamp, so a seek that lands anywhere before the chunk is fine; a stream
without timestamps is decoded from its start for each chunk instead.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from saganet.errors import UserInputError
from saganet.media.video import (
    SYNC_FPS,
    PathLike,
    VideoInfo,
    open_video,
    probe_video,
    round_near,
)

logger = logging.getLogger(__name__)

GRID_FPS = SYNC_FPS
# Frames a backward chunk holds: few enough to stay small at 4K (24 MiB a frame), many enough
# that seeking (decoding from the previous keyframe) is paid rarely.
BACKWARD_CHUNK = 16

Convert = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class GridIndex:
    """Which decoded frame fills each slot of the 25 fps grid.

    Args:
        info: the video's metadata (upright size, rotation).
        slot_keys: per slot, the key (timestamp, or decode index for streams without
            timestamps) of the frame that fills it.
        frame_slots: per decoded frame, the slot nearest to its timestamp (clamped to the grid).
        duration: seconds from the first frame to the end of the last one.
        by_pts: keys are timestamps (seeking works); False: decode indices.
    """

    info: VideoInfo
    slot_keys: tuple[int, ...]
    frame_slots: tuple[int, ...]
    duration: float
    by_pts: bool

    @property
    def num_slots(self) -> int:
        return len(self.slot_keys)

    @property
    def num_frames(self) -> int:
        return len(self.frame_slots)


class _FpsFilter:
    """FFmpeg's ``fps`` filter at 25 fps over frame timestamps: which frame fills each slot."""

    def __init__(self, time_base: Fraction) -> None:
        self.scale = GRID_FPS * time_base
        self.origin: int | None = None
        self.slot_keys: list[int] = []
        self.frame_slots: list[int] = []
        self._pending: int | None = None

    def push(self, pts: int, key: int) -> None:
        slot = round_near(pts * self.scale)
        if self.origin is None:
            self.origin = slot
        self.frame_slots.append(slot - self.origin)
        self._fill(slot - self.origin)
        self._pending = key

    def finish(self, end_pts: int) -> None:
        if self.origin is not None:
            self._fill(round_near(end_pts * self.scale) - self.origin)

    def _fill(self, until: int) -> None:
        # The pending frame holds every slot up to (not including) the new frame's slot; a frame
        # overtaken before its slot comes up fills nothing.
        while len(self.slot_keys) < until and self._pending is not None:
            self.slot_keys.append(self._pending)


class _Converter:
    """Decoded frame -> upright ``(H, W, 3)`` uint8 RGB, as FFmpeg converts it."""

    def __init__(self, rotation: int) -> None:
        self.turns = (rotation // 90) % 4
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = self._reformatter.reformat(frame, format="rgb24",
                                         src_color_range=frame.color_range).to_ndarray()
        if self.turns:
            rgb = np.ascontiguousarray(np.rot90(rgb, self.turns, axes=(0, 1)))
        return rgb


def _frame_duration(frame: av.VideoFrame, nominal: int) -> int:
    return frame.duration or nominal


def _nominal_duration(stream: av.VideoStream, time_base: Fraction) -> int:
    rate = stream.guessed_rate or stream.average_rate or stream.base_rate
    return max(1, round(1 / (Fraction(rate) * time_base))) if rate else 1


class VideoGrid:
    """Streams a video's frames on the 25 fps grid.

    Args:
        path: the video file.

    Raises:
        UserInputError: missing or unreadable file (when scanned).
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._index: GridIndex | None = None

    @property
    def index(self) -> GridIndex:
        """The slot index (scans the video on first use)."""
        if self._index is None:
            self._index = self.scan()
        return self._index

    def _decoded(self, frames: Iterator[av.VideoFrame], stream: av.VideoStream,
                 by_pts: bool) -> Iterator[tuple[int, int, av.VideoFrame]]:
        """(key, pts, frame) of decoded frames; frames without a timestamp follow on from the
        previous frame's end, and are keyed by decode index unless ``by_pts``."""
        time_base = stream.time_base or Fraction(1, 90000)
        nominal = _nominal_duration(stream, time_base)
        last_end = 0
        try:
            for index, frame in enumerate(frames):
                pts = frame.pts if frame.pts is not None else last_end
                last_end = pts + _frame_duration(frame, nominal)
                yield (pts if by_pts else index), pts, frame
        except av.error.FFmpegError as err:
            logger.warning("%s: decoding stopped early (%s); using what was decoded",
                           self.path, err)

    def scan(self) -> GridIndex:
        """Decode the whole video once (no conversion) and index its slots.

        Raises:
            UserInputError: unreadable file or no decodable frame.
        """
        info = probe_video(self.path)
        pts_list: list[int] = []
        missing_pts = False
        end_pts = 0
        with open_video(self.path) as (container, stream):
            stream.thread_type = "AUTO"
            time_base = stream.time_base or Fraction(1, 90000)
            nominal = _nominal_duration(stream, time_base)
            for _, pts, frame in self._decoded(container.decode(stream), stream, by_pts=True):
                missing_pts |= frame.pts is None
                pts_list.append(pts)
                end_pts = pts + _frame_duration(frame, nominal)
        if not pts_list:
            raise UserInputError("the video stream has no decodable frame", self.path)
        # Keys are timestamps when every frame has its own, so that seeking can find frames.
        by_pts = not missing_pts and len(set(pts_list)) == len(pts_list)
        fps_filter = _FpsFilter(time_base)
        for index, pts in enumerate(pts_list):
            fps_filter.push(pts, pts if by_pts else index)
        fps_filter.finish(end_pts)
        last = max(len(fps_filter.slot_keys) - 1, 0)
        frame_slots = tuple(min(max(s, 0), last) for s in fps_filter.frame_slots)
        duration = float((end_pts - pts_list[0]) * time_base)
        self._index = GridIndex(info, tuple(fps_filter.slot_keys), frame_slots, duration, by_pts)
        return self._index

    def forward(self, first: int, stop: int, convert: Convert | None = None
                ) -> Iterator[tuple[int, np.ndarray]]:
        """``(slot, frame)`` for slots ``first .. stop - 1`` in order; frames are ``(H, W, 3)``
        upright RGB, or what ``convert`` makes of them.

        Args:
            first: first slot.
            stop: one past the last slot.
            convert: applied once to each frame handed out (e.g. the model's resize).
        """
        index = self.index
        stop = min(stop, index.num_slots)
        if first >= stop:
            return
        to_rgb = _Converter(index.info.rotation)
        slot = first
        with open_video(self.path) as (container, stream):
            stream.thread_type = "AUTO"
            frames = container.decode(stream)
            if index.by_pts and first > 0:
                frames = self._seek_before(container, stream, index.slot_keys[first])
            # Keys grow with the slots, and frames come out in presentation order.
            for key, _, frame in self._decoded(frames, stream, index.by_pts):
                if key < index.slot_keys[slot]:
                    continue
                if key > index.slot_keys[slot]:
                    break
                rgb = to_rgb(frame)
                if convert is not None:
                    rgb = convert(rgb)
                while slot < stop and index.slot_keys[slot] == key:
                    yield slot, rgb
                    slot += 1
                if slot >= stop:
                    return
        raise UserInputError(f"a second decoding pass found only {slot} of {stop} frames (did "
                             "the file change?)", self.path)

    def backward(self, first: int, stop: int, convert: Convert | None = None,
                 chunk: int = BACKWARD_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(slot, frame)`` for slots ``stop - 1`` down to ``first`` (see :meth:`forward`).

        Args:
            first: lowest slot.
            stop: one past the highest slot.
            convert: applied once to each frame, before a chunk is held.
            chunk: slots decoded per seek (and frames held at once).
        """
        for high in range(min(stop, self.index.num_slots), first, -chunk):
            frames = list(self.forward(max(first, high - chunk), high, convert))
            while frames:
                yield frames.pop()

    def _seek_before(self, container: av.container.InputContainer, stream: av.VideoStream,
                     target: int) -> Iterator[av.VideoFrame]:
        """Decoded frames from a keyframe at or before timestamp ``target`` on."""
        time_base = stream.time_base or Fraction(1, 90000)
        margin = round(1 / time_base)  # one second, doubled while seeks land too late
        offset = target
        while offset > 0:
            try:
                container.seek(offset, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                break
            frames = container.decode(stream)
            first = next(frames, None)
            if first is not None and first.pts is not None and first.pts <= target:
                return itertools.chain([first], frames)
            offset = max(0, offset - margin)
            margin *= 2
        # Seeking ever earlier reached the start: decode everything from there.
        container.seek(0, stream=stream, backward=True, any_frame=False)
        return container.decode(stream)


def slot_of_time(index: GridIndex, seconds: float) -> int | None:
    """Slot nearest to ``seconds`` after the first frame, or None past the video's end.

    Args:
        index: the video's grid.
        seconds: time of a prompt.
    """
    if seconds > index.duration + 1e-9:
        return None
    return min(round_near(Fraction(seconds) * GRID_FPS), index.num_slots - 1)


def frames_in(seconds: float) -> int:
    """Slots before ``seconds`` (the first slot at or after it), as the mask reader counts."""
    return max(0, math.ceil(Fraction(seconds) * GRID_FPS - Fraction(1, 10**6)))


def read_slots(grid: VideoGrid, slots: Sequence[int],
               convert: Convert | None = None) -> dict[int, np.ndarray]:
    """The frames of the given slots (converted), decoded in one forward pass.

    Args:
        grid: the video.
        slots: the slots wanted.
        convert: applied to each wanted frame (e.g. the model's resize).
    """
    wanted = set(slots)
    frames = grid.forward(min(wanted), max(wanted) + 1) if wanted else iter(())
    return {slot: frame if convert is None else convert(frame)
            for slot, frame in frames if slot in wanted}
