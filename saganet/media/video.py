"""Reading videos and mask videos into the frame tensors SAGANet consumes (PyAV only).

This follows the preprocessing the released checkpoints were trained on (the dataset path),
not the reference demo:

* frame-rate conversion with the semantics of FFmpeg's ``fps`` filter (default rounding
  "near"): every source frame gets the output slot ``round(pts * fps)`` (half away from
  zero), and output slot ``n`` shows the last source frame whose slot is ``<= n``; slot 0 is
  the slot of the first frame, and at the end of the stream slots run up to
  ``round(end * fps)`` where ``end`` is the last frame's pts plus its duration;
* FFmpeg's own pixel conversion of the decoded frame to ``rgb24`` or ``gray`` (real 8-bit gray,
  full range; frames with opacity give their gray over black);
* a squash resize to the target size (torchvision's bicubic with antialiasing, uint8 in and out,
  bit for bit, by :func:`saganet.resize.resize`);
* frames shown upright: the display matrix's rotation is applied.

Each source frame is decoded once for all requested rates; only frames that land in an output
slot are converted and resized, and decoding stops as soon as every requested slot is known.

The reference demo's own loader differs on purpose: its centre crop of the Synchformer frames,
its float-accumulator frame choice and its gray ``x 255`` overflow are not
reproduced, because the checkpoints never saw them in training.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
import torch
from av.video.reformatter import ColorRange, VideoReformatter

from saganet.errors import UserInputError, check_seconds
from saganet.fileio import ffmpeg_name
from saganet.resize import resize

logger = logging.getLogger(__name__)

CLIP_FPS = 8
CLIP_SIZE = 384
SYNC_FPS = 25
SYNC_SIZE = 224
# One Synchformer window: the shortest clip the model can condition on.
SYNC_WINDOW_FRAMES = 16
# Relative aspect-ratio difference tolerated between a video and its mask (rounding of sizes).
MASK_ASPECT_TOLERANCE = 0.01
# How far short of its stated length a video's packets may end before probe_video measures
# the length from the packets instead: more than the spread of last-packet durations and
# edit-list trims seen in normal files, less than anything worth a warning.
END_TOLERANCE_S = 0.25
# Masks are read as brightness, the object white (255): one whose brightest value stays below
# this over an area (0/1 masks, colour or grey masks) reaches the model faint, e.g. 1/255.
DIM_MASK_PEAK = 128
# Pixels (of 224x224) near the peak that make a dim mask a convention, not a tiny object
# squashed below a pixel (whose resized peak is low too).
_DIM_MASK_AREA = 16
# A mask is in colour when the median chroma (max - min of R, G, B) of its object's pixels,
# those at least _OBJECT_GRAY bright, reaches this: pure colours have 255, white and grey
# objects about 0, compression noise a few units. One frame with an object is looked at, on
# every fourth pixel each way, once it shows _COLOUR_SAMPLE_PIXELS of them.
_COLOUR_CHROMA = 96
_OBJECT_GRAY = 32
_COLOUR_SAMPLE_PIXELS = 16
# Gray frames are resized in groups of four packed as the channels of one image: channels are
# resized independently (so the result is identical), and torch's vectorised uint8 kernel,
# made for 3-4 channel images, is several times faster than its one-channel path.
_GRAY_PACK = 4

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as far as SAGANet cares.

    Args:
        path: the file.
        duration: seconds of the video stream from its first frame, as the file states it
            (the stream's length, else Matroska's track length tag, else the container's
            when it holds nothing else); from :func:`probe_video`, measured from the packets'
            timestamps when the file does not say (raw streams); None when that fails too.
        fps: frame rate as FFmpeg guesses it (nominal rate; variable-rate streams may differ).
        width: width of the upright (displayed) frames.
        height: height of the upright (displayed) frames.
        rotation: counter-clockwise rotation in degrees applied to show frames upright.
        codec: video codec name.
        pix_fmt: decoded pixel format.
        num_frames: frame count from the container (None when unknown).
        has_audio: the file also has an audio stream.
        pixel_aspect: width over height of one coded pixel (not 1 in anamorphic videos, which
            are shown wider or narrower than they are stored).
    """

    path: Path
    duration: float | None
    fps: float
    width: int
    height: int
    rotation: int
    codec: str
    pix_fmt: str | None
    num_frames: int | None
    has_audio: bool
    pixel_aspect: float = 1.0

    @property
    def display_size(self) -> tuple[float, float]:
        """Upright ``(width, height)`` as shown: the pixel aspect applied (it stretches the
        coded width, which is the upright height when the video is turned a quarter)."""
        if self.rotation % 180:
            return float(self.width), self.height * self.pixel_aspect
        return self.width * self.pixel_aspect, float(self.height)


@dataclass(frozen=True)
class VideoFrames:
    """Model-ready frames of one video (no mask).

    Args:
        clip_frames: ``(Tc, 3, 384, 384)`` float32 in [0, 1], 8 fps, ``Tc = int(8 * duration)``.
        sync_frames: ``(Ts, 3, 224, 224)`` float32 in [-1, 1], 25 fps,
            ``Ts = int(25 * duration)``.
        duration: seconds actually used (the requested duration or less).
        video_info: the video's metadata.
    """

    clip_frames: torch.Tensor
    sync_frames: torch.Tensor
    duration: float
    video_info: VideoInfo


@dataclass(frozen=True)
class VideoInputs(VideoFrames):
    """Model-ready frames of a video and the masks of its mask video (the fields of
    :class:`VideoFrames`, and these).

    Args:
        masks: ``(Ts, 1, 224, 224)`` float32 in [0, 1], 25 fps.
        mask_info: the mask video's metadata.
    """

    masks: torch.Tensor
    mask_info: VideoInfo


# ----------------------------------------------------------------------------------------------
# Opening files


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserInputError("file not found", path)
    if not path.is_file():
        raise UserInputError("not a file", path)
    if path.stat().st_size == 0:
        raise UserInputError("file is empty", path)


def _ffmpeg_reason(err: Exception) -> str:
    # FFmpeg errors repeat the file name in str(err); the user already sees it in front.
    return getattr(err, "strerror", None) or str(err)


@contextmanager
def open_video(path: Path) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open ``path`` with PyAV and pick its first real video stream.

    Args:
        path: the video file.

    Raises:
        UserInputError: missing, empty or unreadable file, or no video stream.
    """
    _check_file(path)
    try:
        container = av.open(ffmpeg_name(path), mode="r")
    except PermissionError:
        # FFmpeg's (av.error.PermissionError) too: the file is fine, its permissions are not.
        raise UserInputError("cannot be read: permission denied (check the file's "
                             "permissions)", path) from None
    except (av.error.FFmpegError, OSError) as err:
        raise UserInputError(f"cannot read as a video (not a video, truncated or corrupt?): "
                             f"{_ffmpeg_reason(err)}", path) from None
    try:
        # Cover art in audio files shows up as a one-picture "video" stream: not a video.
        streams = [s for s in container.streams.video
                   if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise UserInputError("no video stream", path)
        yield container, streams[0]
    finally:
        container.close()


def _frame_rate(stream: av.VideoStream) -> Fraction | None:
    # FFmpeg's own guess first: raw streams report a default average rate of 25.
    for rate in (stream.guessed_rate, stream.average_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


class _VideoSource:
    """An open video: its metadata (read when opened) and its decoded frames, in order.

    Opening decodes the first frame (the rotation lives in frame side data), which
    :meth:`frames` then yields first, so nothing is decoded twice.

    Args:
        path: the video file.

    Raises:
        UserInputError: missing, empty or unreadable file, no video stream, or no decodable
            frame.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._exit = ExitStack()
        self.container, self.stream = self._exit.enter_context(open_video(path))
        try:
            self.stream.thread_type = "AUTO"  # frame + slice threads in the decoder
            # Packets that did not decode, as (seconds, reason); why the packets ended early.
            self._damaged: list[tuple[float | None, str]] = []
            self._stopped: str | None = None
            self._decoder = self._decode()
            self._first = next(self._decoder, None)
            if self._first is None:
                if self._damaged or self._stopped:
                    reason = self._damaged[0][1] if self._damaged else self._stopped
                    raise UserInputError(f"cannot decode the video: {reason}", path)
                raise UserInputError("the video stream has no decodable frame", path)
            self.info = self._describe(self._first)
        except BaseException:
            self._exit.close()
            raise

    def __enter__(self) -> _VideoSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._exit.close()

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Decoded frames in order. A packet that does not decode (damage inside the file) is
        skipped, as FFmpeg's own tools do, so that the frames after it still come (the frame
        before it holds its time); damage to the container's structure ends the packets."""
        packets = self.container.demux(self.stream)
        time_base = self.stream.time_base
        start = self.stream.start_time or 0
        while True:
            try:
                packet = next(packets, None)
            except av.error.FFmpegError as err:
                self._stopped = _ffmpeg_reason(err)
                return
            if packet is None:
                return
            try:
                frames = packet.decode()
            except av.error.FFmpegError as err:
                seconds = (float((packet.pts - start) * time_base)
                           if packet.pts is not None and time_base else None)
                self._damaged.append((seconds, _ffmpeg_reason(err)))
                continue
            yield from frames

    def _describe(self, frame: av.VideoFrame) -> VideoInfo:
        stream, container = self.stream, self.container
        duration = None
        tagged = _tag_seconds(stream.metadata.get("DURATION"))
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif tagged is not None:
            # Matroska/WebM: the track's own end (the container's is that of its longest
            # track, often the sound), on the file's clock: counted here from the first frame.
            first = stream.start_time if stream.start_time is not None else 0
            duration = tagged - float(first * stream.time_base)
        elif container.duration is not None and len(container.streams) == 1:
            duration = container.duration / av.time_base
        rate = _frame_rate(stream)
        rotation = quarter_turns(frame.rotation) * 90
        width, height = frame.width, frame.height
        if rotation % 180:
            width, height = height, width
        pixel_aspect = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        return VideoInfo(
            path=self.path, duration=duration, fps=float(rate) if rate else 0.0, width=width,
            height=height, rotation=rotation, codec=stream.codec_context.name,
            pix_fmt=frame.format.name, num_frames=stream.frames or None,
            has_audio=any(True for _ in container.streams.audio),
            pixel_aspect=float(pixel_aspect) if pixel_aspect else 1.0,
        )

    def frames(self) -> Iterator[av.VideoFrame]:
        """Every decoded frame; what damage skipped or cut short is told in a warning."""
        yield self._first
        count = 1
        for frame in self._decoder:
            count += 1
            yield frame
        if self._damaged:
            seconds, reason = self._damaged[0]
            # Threaded decoders report an error a few packets late: the time is approximate.
            where = "" if seconds is None else f", the first around {seconds:.2f} s"
            logger.warning("%s: %d damaged packet(s) did not decode%s (%s); the frame before "
                           "each stands in for it", self.path, len(self._damaged), where,
                           reason)
        if self._stopped:
            logger.warning("%s: decoding stopped after %d frames (%s); using what was "
                           "decoded", self.path, count, self._stopped)


def _tag_seconds(text: str | None) -> float | None:
    """Seconds of a Matroska ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``), None if absent or
    malformed."""
    if not text:
        return None
    try:
        hours, minutes, seconds = text.strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def probe_video(path: PathLike) -> VideoInfo:
    """Read a video's metadata (decodes only its first frame, for the rotation).

    Args:
        path: the video file.

    Raises:
        UserInputError: missing, empty or unreadable file, or no video stream.
    """
    with _VideoSource(Path(path)) as source:
        info = source.info
        # While the file is open: the first frame is decoded, nothing else reads it.
        reaches = info.duration is None or _packets_reach(source.container, source.stream,
                                                          info.duration)
    if info.duration is None:
        info = replace(info, duration=_packet_duration(info.path))
    elif not reaches:
        # A file cut short (a stopped download or copy) keeps the header of the whole one;
        # trusting it would hold the last frame for the missing seconds, without a word.
        held = _packet_duration(info.path)
        if held is not None and held < info.duration:
            if _first_report(info.path):
                logger.warning("%s: the header says %.2f s of video but the file holds %.2f s "
                               "(cut short?); using %.2f s", info.path, info.duration, held,
                               held)
            info = replace(info, duration=held)
    return info


# The files (what, path, size, modification time) already reported as cut short or as masks in
# colour: one run reads its files at every stage (the checks, tracking, writing), and said so
# up to four times. The most recent ones only: a web app serving for weeks meets a new upload
# at every visit, and would keep every one.
_REPORTED: OrderedDict[tuple[str, str, int, int], None] = OrderedDict()
REPORTS_KEPT = 1024
_REPORTED_LOCK = threading.Lock()


def _first_report(path: Path, what: str = "cut short") -> bool:
    """Whether ``path``, as it is now, is reported as ``what`` for the first time in this
    process (among the last :data:`REPORTS_KEPT` files reported)."""
    stat = path.stat()
    key = (what, os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    with _REPORTED_LOCK:
        first = key not in _REPORTED
        _REPORTED[key] = None
        _REPORTED.move_to_end(key)
        while len(_REPORTED) > REPORTS_KEPT:
            _REPORTED.popitem(last=False)
    return first


def _packets_reach(container: av.container.InputContainer, stream: av.VideoStream,
                   seconds: float) -> bool:
    """Whether the video stream's packets reach ``seconds`` after its first one (within
    :data:`END_TOLERANCE_S`), reading only the packets from a second before that (it moves
    the container's read position)."""
    time_base = stream.time_base
    if not time_base:
        return True
    first = stream.start_time or 0
    end = None
    try:
        container.seek(first + max(0, int((seconds - 1.0) / time_base)), stream=stream,
                       backward=True)
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
    except av.error.FFmpegError:
        return False
    return end is not None and float((end - first) * time_base) >= seconds - END_TOLERANCE_S


def _packet_duration(path: Path) -> float | None:
    """Seconds of video from its packets' timestamps and durations, without decoding: for
    streams whose container states no length (a raw ``.h264``), which would otherwise be
    taken for as long as asked for."""
    start = end = None
    total = 0
    untimed = False
    with open_video(path) as (container, stream):
        time_base = stream.time_base or Fraction(1, 90000)
        nominal = _nominal_duration(time_base, _frame_rate(stream))
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                length = packet.duration or nominal
                total += length
                untimed = untimed or packet.pts is None
                if packet.pts is not None:
                    start = packet.pts if start is None else min(start, packet.pts)
                    end = packet.pts + length if end is None else max(end, packet.pts + length)
        except av.error.FFmpegError:
            pass  # a damaged tail: what was read so far
    if not total:
        return None
    # Timestamps where every packet has one; else the packets follow each other.
    span = total if untimed else end - start
    return float(span * time_base)


def quarter_turns(rotation: float | None) -> int:
    """Counter-clockwise quarter turns that show a frame upright.

    Args:
        rotation: a frame's display-matrix rotation in degrees (``VideoFrame.rotation``).
    """
    if not rotation or math.isnan(rotation):
        return 0
    return round(rotation / 90) % 4


# ----------------------------------------------------------------------------------------------
# Frame choice: FFmpeg's fps filter


def round_near(x: Fraction) -> int:
    """Round half away from zero (FFmpeg's AV_ROUND_NEAR_INF)."""
    return math.floor(x + Fraction(1, 2)) if x >= 0 else -math.floor(-x + Fraction(1, 2))


class _RateSlots:
    """Which source frame fills each output slot at one frame rate (FFmpeg ``fps`` filter).

    Slots are counted from the slot of the first source frame. Only slots in ``[first, stop)``
    are recorded (``stop=None``: until the end of the stream).

    Args:
        fps: output frame rate.
        time_base: time base of the source pts.
        first: first output slot to record.
        stop: one past the last output slot to record, or None.
    """

    def __init__(self, fps: Fraction, time_base: Fraction, first: int, stop: int | None) -> None:
        self.scale = fps * time_base  # source pts units -> output slots
        self.first = first
        self.stop = stop
        self.origin: int | None = None  # absolute slot of the first source frame
        self.next_slot = 0  # first slot not yet filled, relative to origin
        self.sources: list[int] = []  # source frame index of slot first + i

    @property
    def done(self) -> bool:
        return self.stop is not None and self.next_slot >= self.stop

    def push(self, pts: int, pending: int | None) -> bool:
        """Account for a new source frame at ``pts``; ``pending`` is the previous frame's index.

        Returns True when the previous frame filled at least one recorded slot.
        """
        slot = round_near(pts * self.scale)
        if self.origin is None:
            self.origin = slot
            return False
        return self._fill(slot - self.origin, pending)

    def finish(self, end_pts: int, pending: int | None) -> bool:
        """End of stream at ``end_pts``: the last frame holds until then."""
        if self.origin is None:
            return False
        return self._fill(round_near(end_pts * self.scale) - self.origin, pending)

    def _fill(self, until: int, pending: int | None) -> bool:
        """The pending frame fills slots ``next_slot .. until - 1`` (none if it is overtaken)."""
        if self.stop is not None:
            until = min(until, self.stop)
        used = False
        while self.next_slot < until:
            if self.next_slot >= self.first and pending is not None:
                self.sources.append(pending)
                used = True
            self.next_slot += 1
        return used


# ----------------------------------------------------------------------------------------------
# Conversion and resize of chosen frames


def _has_alpha(fmt: av.VideoFormat) -> bool:
    return any(c.is_alpha for c in fmt.components)


class _FrameConverter:
    """FFmpeg's conversion of decoded frames to rgb24 / gray, memoised for the current frame.

    Gray frames with opacity are the gray composited over black (brightness times opacity):
    masks are brightness, and under a transparent background may lie any colour, often white,
    which read alone made the whole frame the object.
    """

    def __init__(self) -> None:
        # One reformatter per output format keeps swscale contexts alive across frames.
        self._reformatters = {"rgb24": VideoReformatter(), "gray": VideoReformatter(),
                              "ya8": VideoReformatter()}
        self._index: int | None = None
        self._cache: dict[str, np.ndarray] = {}
        # The brightness of the object of a mask in colour, 0 if it is not; None: no gray
        # frame with an object seen yet.
        self.colour_gray: int | None = None

    def convert(self, frame: av.VideoFrame, index: int, fmt: str) -> np.ndarray:
        """``(H, W, 3)`` rgb24 or ``(H, W)`` gray uint8 of the coded frame."""
        if index != self._index:
            self._index, self._cache = index, {}
        if fmt not in self._cache:
            # A palette's colours may be transparent too (PNG, GIF).
            if fmt == "gray" and (_has_alpha(frame.format) or frame.format.has_palette):
                self._cache[fmt] = self._gray_over_black(frame)
            else:
                self._cache[fmt] = self._reformat(frame, fmt).to_ndarray()
            if fmt == "gray" and self.colour_gray is None:
                self._check_colour(frame, index)
        return self._cache[fmt]

    def _check_colour(self, frame: av.VideoFrame, index: int) -> None:
        """Set :attr:`colour_gray` from the first gray frame that shows an object: masks are
        read as brightness, so an object in colour is taken at a fraction of its strength
        (pure green at 59 %) without any other sign."""
        gray = self._cache["gray"][::4, ::4]
        inside = gray >= _OBJECT_GRAY
        if int(np.count_nonzero(inside)) < _COLOUR_SAMPLE_PIXELS:
            return
        rgb = self.convert(frame, index, "rgb24")[::4, ::4][inside].astype(np.int16)
        chroma = np.median(rgb.max(axis=1) - rgb.min(axis=1))
        self.colour_gray = int(np.median(gray[inside])) if chroma >= _COLOUR_CHROMA else 0

    def _reformat(self, frame: av.VideoFrame, fmt: str) -> av.VideoFrame:
        # The frame's own colour range decides how YUV is expanded; gray output is full range
        # (0-255), as FFmpeg's "gray" format is (and "ya8", its gray with alpha).
        return self._reformatters[fmt].reformat(
            frame, format=fmt, src_color_range=frame.color_range,
            dst_color_range=None if fmt == "rgb24" else ColorRange.JPEG)

    def _gray_over_black(self, frame: av.VideoFrame) -> np.ndarray:
        """``(H, W)`` gray times opacity; equal to the plain gray where the frame is opaque."""
        # ya8: FFmpeg's gray (the same values) interleaved with the alpha, in one conversion.
        converted = self._reformat(frame, "ya8")
        plane = converted.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(converted.height, plane.line_size)
        pairs = rows[:, : 2 * converted.width]
        gray, alpha = pairs[:, 0::2].astype(np.uint16), pairs[:, 1::2]
        return ((gray * alpha + 127) // 255).astype(np.uint8)


class _Resizer:
    """Squash-resizes the chosen source frames of one request and assembles the output.

    Args:
        size: output ``(height, width)`` of upright frames.
        gray: one gray channel instead of RGB.
        turns: counter-clockwise quarter turns that make frames upright.
    """

    def __init__(self, size: tuple[int, int], gray: bool, turns: int) -> None:
        self.gray = gray
        self.turns = turns
        # Frames are resized in coded orientation and rotated afterwards (cheaper, same result).
        self.coded_size = [size[1], size[0]] if turns % 2 else [size[0], size[1]]
        self.done: dict[int, np.ndarray] = {}  # source index -> (C, h, w) upright uint8
        self._waiting: list[tuple[int, np.ndarray]] = []

    def add(self, index: int, image: np.ndarray) -> None:
        """Queue source frame ``index`` (full-size ``(H, W, 3)`` or ``(H, W)`` uint8)."""
        if index in self.done or any(i == index for i, _ in self._waiting):
            return
        self._waiting.append((index, image))
        if not self.gray or len(self._waiting) >= _GRAY_PACK:
            self.flush()

    def flush(self) -> None:
        if not self._waiting:
            return
        if self.gray:
            packed = torch.from_numpy(np.stack([img for _, img in self._waiting]))  # (k, H, W)
        else:
            packed = torch.from_numpy(self._waiting[0][1]).permute(2, 0, 1)  # (3, H, W)
        resized = resize(packed, self.coded_size, "bicubic").numpy()
        # Rotation, splitting and stacking stay in NumPy: each small torch op would be a
        # parallel region, and those stall badly when the CPU cores are oversubscribed.
        if self.turns:
            resized = np.rot90(resized, self.turns, axes=(-2, -1))
        if self.gray:
            for k, (index, _) in enumerate(self._waiting):
                self.done[index] = resized[k : k + 1]  # (1, h, w)
        else:
            self.done[self._waiting[0][0]] = resized  # (3, h, w)
        self._waiting = []

    def release_before(self, index: int) -> None:
        """Forget resized frames of sources before ``index`` (no later slot can show them)."""
        for old in [i for i in self.done if i < index]:
            del self.done[old]


@dataclass(frozen=True)
class _Request:
    """Frames wanted from one video: a rate, an output size and a slot range."""

    fps: Fraction
    size: tuple[int, int]
    gray: bool
    first: int
    stop: int | None


class _SlotStream:
    """The frames of one request, handed out slot by slot as soon as they are resized.

    Args:
        request: rate, size and slot range.
        time_base: time base of the source pts.
        turns: counter-clockwise quarter turns that make frames upright.
    """

    def __init__(self, request: _Request, time_base: Fraction, turns: int) -> None:
        self.request = request
        self.slots = _RateSlots(request.fps, time_base, request.first, request.stop)
        self.resizer = _Resizer(request.size, request.gray, turns)
        self.emitted = 0  # slots handed out so far

    def ready(self, final: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """``(slot, (C, h, w) uint8)`` of every slot whose frame is resized, in order."""
        if final:
            self.resizer.flush()
        sources = self.slots.sources
        while self.emitted < len(sources) and sources[self.emitted] in self.resizer.done:
            yield self.request.first + self.emitted, self.resizer.done[sources[self.emitted]]
            self.emitted += 1
        if self.emitted:
            self.resizer.release_before(sources[self.emitted - 1])


def _stream_requests(source: _VideoSource, requests: Sequence[_Request],
                     ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Decode ``source`` once and yield ``(request index, slot, (C, h, w) uint8 frame)``.

    Slots of each request come in increasing order, as soon as their frame is resized, so a
    consumer may keep only the frames it still needs (see the module docstring for which
    source frame fills a slot).
    """
    stream = source.stream
    time_base = stream.time_base or Fraction(1, 90000)
    rate = _frame_rate(stream)
    turns = source.info.rotation // 90
    streams = [_SlotStream(r, time_base, turns) for r in requests]
    converter = _FrameConverter()
    pending: av.VideoFrame | None = None
    pending_index: int | None = None
    last_pts: int | None = None

    def hand_over(used: list[bool]) -> None:
        """Convert the pending frame for every request that put it in a slot."""
        for slot_stream, is_used in zip(streams, used, strict=True):
            if is_used:
                fmt = "gray" if slot_stream.request.gray else "rgb24"
                checked = converter.colour_gray is not None
                slot_stream.resizer.add(pending_index,
                                        converter.convert(pending, pending_index, fmt))
                if not checked and converter.colour_gray:
                    _warn_colour_mask(source.path, converter.colour_gray)

    finished = False
    for index, frame in enumerate(source.frames()):
        pts = _frame_pts(frame, pending, last_pts, time_base, rate)
        hand_over([s.slots.push(pts, pending_index) for s in streams])
        pending, pending_index, last_pts = frame, index, pts
        finished = all(s.slots.done for s in streams)
        for number, slot_stream in enumerate(streams):
            for slot, image in slot_stream.ready(final=finished):
                yield number, slot, image
        if finished:
            return
    # The stream ended: its last frame holds until the end of its duration.
    if pending is not None:
        end_pts = last_pts + _frame_duration(pending, time_base, rate)
        hand_over([s.slots.finish(end_pts, pending_index) for s in streams])
    for number, slot_stream in enumerate(streams):
        for slot, image in slot_stream.ready(final=True):
            yield number, slot, image


def _stack(frames: list[np.ndarray], request: _Request) -> torch.Tensor:
    """``(T, C, h, w)`` uint8 from per-slot frames (an empty tensor for none)."""
    if not frames:
        return torch.empty((0, 1 if request.gray else 3, *request.size), dtype=torch.uint8)
    return torch.from_numpy(np.stack(frames))


def _decode_requests(source: _VideoSource, requests: Sequence[_Request]) -> list[torch.Tensor]:
    """Decode ``source`` once; ``(T, C, h, w)`` uint8 frames per request (module docstring)."""
    collected: list[list[np.ndarray]] = [[] for _ in requests]
    for number, _, image in _stream_requests(source, requests):
        collected[number].append(image)
    return [_stack(frames, r) for frames, r in zip(collected, requests, strict=True)]


def _frame_pts(frame: av.VideoFrame, previous: av.VideoFrame | None, last_pts: int | None,
               time_base: Fraction, rate: Fraction | None) -> int:
    """The frame's pts; frames without one (raw streams) follow the previous frame's end."""
    if frame.pts is not None:
        return frame.pts
    if previous is None or last_pts is None:
        return 0
    return last_pts + _frame_duration(previous, time_base, rate)


def _nominal_duration(time_base: Fraction, rate: Fraction | None) -> int:
    if not rate:
        return 1
    return max(1, round(1 / (rate * time_base)))


def _frame_duration(frame: av.VideoFrame, time_base: Fraction, rate: Fraction | None) -> int:
    if frame.duration:
        return frame.duration
    return _nominal_duration(time_base, rate)


# ----------------------------------------------------------------------------------------------
# Public readers


def _as_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def slot_bound(seconds: float, fps: Fraction) -> int:
    """Index of the first slot at or after ``seconds`` (tolerant of float error in seconds)."""
    return max(0, math.ceil(Fraction(seconds) * fps - Fraction(1, 10**6)))


@dataclass(frozen=True)
class FrameRequest:
    """One set of frames to read from a video (see :func:`read_frame_sets`).

    Args:
        fps: output frame rate.
        size: output ``(height, width)`` of the upright frames, or one int for a square.
        gray: FFmpeg's 8-bit gray (full range, ``C = 1``) instead of RGB (``C = 3``).
        start: seconds to skip (the frames before are still decoded, not converted).
        end: seconds to stop at (None: the end of the video).
    """

    fps: float
    size: int | tuple[int, int]
    gray: bool = False
    start: float = 0.0
    end: float | None = None

    def slots(self) -> _Request:
        """The request as a range of output slots."""
        rate = Fraction(self.fps)
        size = _as_size(self.size)
        if rate <= 0 or min(size) <= 0:
            raise ValueError(f"fps and size must be positive, got {self.fps} and {self.size}")
        first = slot_bound(self.start, rate)
        stop = None if self.end is None else max(first, slot_bound(self.end, rate))
        return _Request(rate, size, self.gray, first, stop)


def read_frame_sets(path: PathLike, requests: Sequence[FrameRequest]) -> list[torch.Tensor]:
    """Several rates/sizes of one video from a single decoding pass.

    Output frame ``k`` of a request is the frame FFmpeg's ``fps`` filter would show at time
    ``k / fps`` after the first frame; the frames returned are those with
    ``start <= k / fps < end``, as uint8 ``(T, C, H, W)``, squash-resized (bicubic,
    antialiased) and upright.

    Args:
        path: the video file.
        requests: what to read.

    Raises:
        UserInputError: the file cannot be read as a video.
    """
    with _VideoSource(Path(path)) as source:
        return _decode_requests(source, [r.slots() for r in requests])


def stream_frames(path: PathLike, requests: Sequence[FrameRequest],
                  ) -> Iterator[tuple[int, int, np.ndarray]]:
    """The frames of :func:`read_frame_sets`, one at a time, from a single decoding pass.

    Yields ``(request index, slot k, (C, H, W) uint8 frame)``; each request's slots come in
    increasing order, so a long video can be consumed while holding only the frames still
    needed. Closing the generator closes the file.

    Args:
        path: the video file.
        requests: what to read.

    Raises:
        UserInputError: the file cannot be read as a video.
    """
    with _VideoSource(Path(path)) as source:
        yield from _stream_requests(source, [r.slots() for r in requests])


class SequentialReader:
    """Time ranges of one video at one rate and size, read forward through a single decoding
    pass: reading ``[a, b)`` then ``[c, d)`` with ``c >= a`` decodes each frame once, holding
    only the frames from ``c`` on (reading backwards starts a new pass).

    Args:
        path: the video file.
        fps: output frame rate.
        size: output ``(height, width)`` of the upright frames, or one int for a square.
        gray: FFmpeg's 8-bit gray instead of RGB.
    """

    def __init__(self, path: PathLike, fps: float, size: int | Sequence[int],
                 gray: bool = False) -> None:
        self.path = Path(path)
        self.request = FrameRequest(fps, _as_size(size), gray)
        self._frames: Iterator[tuple[int, int, np.ndarray]] | None = None
        self._buffer: dict[int, np.ndarray] = {}
        self._first = 0  # no slot before this one is held or will be decoded
        self._exhausted = False

    def _restart(self, first: int) -> None:
        self.close()
        start = first / Fraction(self.request.fps)
        self._frames = stream_frames(self.path, [FrameRequest(
            self.request.fps, self.request.size, self.request.gray, start=float(start))])
        self._first = first

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        """uint8 ``(T, C, H, W)`` frames of the slots ``k`` with ``start <= k / fps < end``
        (fewer when the video ends first)."""
        request = FrameRequest(self.request.fps, self.request.size, self.request.gray,
                               start, end).slots()
        if self._frames is None or request.first < self._first:
            self._restart(request.first)
        for old in [k for k in self._buffer if k < request.first]:
            del self._buffer[old]
        self._first = request.first
        last = max(self._buffer, default=request.first - 1)
        while not self._exhausted and (request.stop is None or last < request.stop - 1):
            item = next(self._frames, None)
            if item is None:
                self._exhausted = True
                break
            _, last, image = item
            if last >= request.first:
                self._buffer[last] = image
        stop = request.stop if request.stop is not None else last + 1
        frames = [self._buffer[k] for k in range(request.first, stop) if k in self._buffer]
        return _stack(frames, request)

    def close(self) -> None:
        """Close the file (a later read reopens it)."""
        if self._frames is not None:
            self._frames.close()
        self._frames, self._buffer, self._exhausted = None, {}, False


def read_frames(path: PathLike, fps: float, size: int | Sequence[int], gray: bool = False,
                start: float = 0.0, end: float | None = None) -> torch.Tensor:
    """Frames of a video at ``fps``, squash-resized, as uint8 ``(T, C, H, W)``.

    One :class:`FrameRequest` through :func:`read_frame_sets` (see there for which frames).

    Args:
        path: the video file.
        fps: output frame rate.
        size: output ``(height, width)`` of the upright frames, or one int for a square.
        gray: FFmpeg's 8-bit gray (full range, ``C = 1``) instead of RGB (``C = 3``).
        start: seconds to skip (the frames before are still decoded, not converted).
        end: seconds to stop at (None: the end of the video).

    Raises:
        UserInputError: the file cannot be read as a video.
    """
    request = FrameRequest(fps, _as_size(size), gray, start, end)
    return read_frame_sets(path, [request])[0]


def _used_duration(duration: float, available: Sequence[tuple[int, int]], what: str,
                   path: Path) -> float:
    """The requested duration, cut to what every stream holds; errors below one window.

    Args:
        duration: requested seconds.
        available: ``(frames, fps)`` per stream read.
        what: which input is short, for the warning.
        path: file named in errors.
    """
    # A stream is short only if it lacks frames the requested duration needs: a read of
    # exactly `duration` seconds holds int(fps * duration) frames, which is less than
    # fps * duration when the duration is not a whole number of frame periods.
    used = min([duration] + [count / fps for count, fps in available
                             if count < int(fps * duration)])
    if used < duration:
        logger.warning("%s holds only %.3f s: using that instead of %.3f s", what, used,
                       duration)
    # Plain float products, exactly as the sequence-length code computes them downstream.
    if int(SYNC_FPS * used) < SYNC_WINDOW_FRAMES:
        raise UserInputError(
            f"{what} is too short: {used:.3f} s, need at least "
            f"{SYNC_WINDOW_FRAMES / SYNC_FPS:.2f} s (one Synchformer window)", path)
    return used


def _video_requests(duration: float) -> list[_Request]:
    # Every slot before `duration`: a stream that fills them all holds at least `duration`.
    return [FrameRequest(CLIP_FPS, CLIP_SIZE, end=duration).slots(),
            FrameRequest(SYNC_FPS, SYNC_SIZE, end=duration).slots()]


def clip_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 CLIP frames -> float32 in [0, 1] (``x / 255``)."""
    return frames.float().div_(255)


def sync_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 Synchformer frames -> float32 in [-1, 1] (``(x / 255 - 0.5) / 0.5``)."""
    # In place, operation by operation, so values equal ToDtype + Normalize(0.5, 0.5).
    return frames.float().div_(255).sub_(0.5).div_(0.5)


def mask_input(masks: torch.Tensor) -> torch.Tensor:
    """uint8 gray masks -> float32 in [0, 1] (``x / 255``)."""
    return masks.float().div_(255)


def warn_if_dim_mask(masks: torch.Tensor, name: str) -> bool:
    """Warn when uint8 masks hold an object that is never bright: stored as 0/1, in colour or
    in grey, it reaches the model at a fraction of the strength of the white masks it was
    trained on (values pass through unchanged, as for any other mask).

    Args:
        masks: uint8 ``(T, 1, H, W)`` masks as read.
        name: the masks' name in the warning.

    Returns:
        True if it warned.
    """
    peak = int(masks.max()) if masks.numel() else 0
    if not 0 < peak < DIM_MASK_PEAK:
        return False
    near_peak = (masks >= max(1, 3 * peak // 4)).flatten(1).sum(dim=1)
    if int(near_peak.max()) < _DIM_MASK_AREA:
        return False
    logger.warning("%s: the brightest mask pixel is %d of 255, so the model sees the object at "
                   "%.1f%% strength (it reads masks as brightness, trained on white objects); "
                   "store masks as 0 (background) and 255 (object), not 0/1 or in colour",
                   name, peak, 100 * peak / 255)
    return True


def _warn_colour_mask(path: Path, gray: int) -> None:
    """Warn, once per file, that a mask in colour is read as its brightness ``gray``. A dim
    one (red, blue) is left to :func:`warn_if_dim_mask`, which names colour too."""
    if gray >= DIM_MASK_PEAK and _first_report(path, "colour"):
        logger.warning("%s: the mask is in colour: its object reads as brightness %d of 255, so "
                       "the model sees it at %.0f%% strength (masks are read as brightness, "
                       "not colour); store masks black and white: 0 (background) and 255 "
                       "(object)", path, gray, 100 * gray / 255)


def empty_mask_hint(info: VideoInfo) -> str:
    """What to add when a mask reads empty: masks are read as brightness over black, so an
    object drawn in black, opaque on a transparent background, is not seen. Empty for formats
    without opacity."""
    if info.pix_fmt and _has_alpha(av.VideoFormat(info.pix_fmt)):
        return (f" (the file has an alpha channel, {info.pix_fmt}: masks are read as brightness "
                "over black, so the object must be bright, not only opaque)")
    return ""


def load_video_frames(path: PathLike, duration: float = 5.0) -> VideoFrames:
    """CLIP (8 fps, 384²) and Synchformer (25 fps, 224²) frames of a video's first seconds.

    Args:
        path: the video file.
        duration: seconds wanted; a shorter video shortens it (with a warning).

    Raises:
        UserInputError: unreadable file, or less than one Synchformer window (0.64 s).
    """
    duration = check_seconds(duration, "duration", positive=True)
    path = Path(path)
    with _VideoSource(path) as source:
        clip, sync = _decode_requests(source, _video_requests(duration))
    used = _used_duration(duration, [(len(clip), CLIP_FPS), (len(sync), SYNC_FPS)],
                          f"video {path}", path)
    return VideoFrames(clip_frames=clip_input(clip[: int(CLIP_FPS * used)]),
                       sync_frames=sync_input(sync[: int(SYNC_FPS * used)]), duration=used,
                       video_info=source.info)


def _same_aspect(mask: tuple[float, float], video: tuple[float, float]) -> bool:
    # Allow one pixel of rounding on small masks, a relative tolerance on large ones.
    expected_width = mask[1] * video[0] / video[1]
    expected_height = mask[0] * video[1] / video[0]
    return (abs(mask[0] - expected_width) <= max(1.0, MASK_ASPECT_TOLERANCE * expected_width)
            or abs(mask[1] - expected_height)
            <= max(1.0, MASK_ASPECT_TOLERANCE * expected_height))


def check_mask_aspect(video: VideoInfo, mask: VideoInfo) -> None:
    """The mask may be scaled, not reshaped: its aspect ratio must match within rounding,
    as stored or as shown (an anamorphic video's masks may be made at either size: both
    cover the same picture, and both are squash-resized)."""
    masks = {(float(mask.width), float(mask.height)), mask.display_size}
    videos = {(float(video.width), float(video.height)), video.display_size}
    if any(_same_aspect(m, v) for m in masks for v in videos):
        return
    if video.rotation % 180 and any(_same_aspect(m, v[::-1]) for m in masks for v in videos):
        # A phone video is stored sideways and turned by its rotation metadata, which some
        # tools ignore; the stored size is also what most file inspectors print, so "the
        # aspect ratios differ" alone pointed at nothing the user could see.
        direction = "counter-clockwise" if video.rotation == 90 else "clockwise"
        raise UserInputError(
            f"mask is {mask.width}x{mask.height}, the size of the video {video.path.name} as "
            f"stored, but the video is shown turned 90 degrees {direction} (rotation "
            f"metadata), as {video.width}x{video.height}: masks must be upright, as shown",
            mask.path)
    shown = ""
    if video.pixel_aspect != 1:
        width, height = video.display_size
        shown = f" (shown as {width:.0f}x{height:.0f})"
    raise UserInputError(
        f"mask is {mask.width}x{mask.height} but the video {video.path.name} is "
        f"{video.width}x{video.height}{shown}: the aspect ratios differ", mask.path)


def _spare_cores() -> bool:
    """More than two usable cores: on fewer, the decoder threads already fill them and a second
    decoding thread only adds contention."""
    return len(os.sched_getaffinity(0)) > 2 if hasattr(os, "sched_getaffinity") else (
        (os.cpu_count() or 1) > 2)


def load_video_inputs(video_path: PathLike, mask_path: PathLike,
                      duration: float = 5.0) -> VideoInputs:
    """Model inputs for a video and the mask video of the object to sonify.

    The clip is the first ``duration`` seconds of the overlap of the two files (both start at
    their first frame). The mask may have another size or frame rate than the video, but the
    same aspect ratio.

    Args:
        video_path: the video file.
        mask_path: the mask video (any pixel format; the object white, 255, on black; dim
            objects, such as 0/1 masks, and objects in colour warn).
        duration: seconds wanted; shorter inputs shorten it (with a warning).

    Raises:
        UserInputError: unreadable file, mask of another aspect ratio, or an overlap shorter
            than one Synchformer window (0.64 s).
    """
    duration = check_seconds(duration, "duration", positive=True)
    video_path, mask_path = Path(video_path), Path(mask_path)
    video_requests = _video_requests(duration)
    mask_requests = [FrameRequest(SYNC_FPS, SYNC_SIZE, gray=True, end=duration).slots()]
    # Both files are opened (and checked) before either is decoded, so errors come fast.
    with _VideoSource(video_path) as video, _VideoSource(mask_path) as mask:
        check_mask_aspect(video.info, mask.info)
        if _spare_cores():
            # The files decode in parallel: PyAV and torch release the GIL while they work.
            with ThreadPoolExecutor(max_workers=2) as pool:
                video_job = pool.submit(_decode_requests, video, video_requests)
                mask_job = pool.submit(_decode_requests, mask, mask_requests)
                clip, sync = video_job.result()
                (masks,) = mask_job.result()
        else:
            clip, sync = _decode_requests(video, video_requests)
            (masks,) = _decode_requests(mask, mask_requests)
    used = _used_duration(
        duration, [(len(clip), CLIP_FPS), (len(sync), SYNC_FPS), (len(masks), SYNC_FPS)],
        f"the overlap of {video_path.name} and {mask_path.name}", video_path)
    masks = masks[: int(SYNC_FPS * used)]
    if not masks.any():
        logger.warning("%s: the mask is empty (all zero) in the first %.3f s%s", mask_path, used,
                       empty_mask_hint(mask.info))
    warn_if_dim_mask(masks, str(mask_path))
    return VideoInputs(
        clip_frames=clip_input(clip[: int(CLIP_FPS * used)]),
        sync_frames=sync_input(sync[: int(SYNC_FPS * used)]),
        masks=mask_input(masks), duration=used, video_info=video.info, mask_info=mask.info)


def resize_masks(masks: np.ndarray | torch.Tensor,
                 size: int | Sequence[int] = SYNC_SIZE) -> torch.Tensor:
    """Full-size masks -> squash-resized uint8 ``(T, 1, h, w)``, as a mask video is read.

    Binary masks made in memory (by tracking) go through exactly the resize that reading them
    back from a lossless mask video would apply, so both routes give equal model inputs.

    Args:
        masks: ``(T, H, W)`` upright masks, bool (True: the object) or uint8 gray (0-255).
        size: output ``(height, width)``, or one int for a square.
    """
    array = torch.as_tensor(masks).numpy() if isinstance(masks, torch.Tensor) else masks
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"masks must be (T, H, W), got {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        raise ValueError(f"masks must be bool or uint8, got {array.dtype}")
    resizer = _Resizer(_as_size(size), gray=True, turns=0)
    for index, frame in enumerate(array):
        resizer.add(index, frame)
    resizer.flush()
    if not len(array):
        return torch.empty((0, 1, *_as_size(size)), dtype=torch.uint8)
    return torch.from_numpy(np.stack([resizer.done[i] for i in range(len(array))]))
