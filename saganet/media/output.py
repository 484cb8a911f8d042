"""Writing results: the generated audio as FLAC, and an MP4 of the source video with it.

Both writers produce their file under a temporary name in the destination folder and rename it
at the end, so an interrupted run never leaves a half-written output, and both refuse to
replace an existing file unless asked to.

The MP4 copies the source's video packets (no re-encoding, no quality loss) for the first
``duration`` seconds. Packets are kept in decoding order up to the last one that a frame shown
before ``duration`` needs, so every kept frame decodes; with B-frames this may keep a few
frames past ``duration``. The video is re-encoded (H.264, yuv420p) only to draw a mask overlay
or when the source codec cannot be stored in MP4.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from saganet.errors import UserInputError
from saganet.media.video import SYNC_FPS, PathLike, open_video, probe_video

logger = logging.getLogger(__name__)

FLAC_BITS = 24
AAC_BIT_RATE = 192_000
# Re-encoded video: libx264 constant rate factor (18 is visually lossless) and a fast preset
# (the MP4 is a preview; encoding speed matters more than file size).
H264_OPTIONS = {"crf": "18", "preset": "veryfast"}
# Demuxing reads this far past the cut so that reordered (B-frame) references are seen.
_REORDER_MARGIN_S = 1.0


@contextmanager
def _atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success."""
    if path.exists() and not overwrite:
        raise UserInputError("output exists; pass overwrite=True to replace it", path)
    if path.is_dir():
        raise UserInputError("output is a folder", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _mono(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(L,)`` or ``(1, L)`` float audio -> ``(L,)`` float32 clipped to [-1, 1]."""
    array = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else (
        np.asarray(audio, dtype=np.float32))
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"audio must be (L,) or (1, L) with L > 0, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("audio contains NaN or infinite samples")
    return np.clip(array, -1.0, 1.0)


def write_flac(path: PathLike, audio: torch.Tensor | np.ndarray, sr: int = 44100,
               overwrite: bool = False) -> Path:
    """Write mono audio as a 24-bit FLAC file.

    Args:
        path: output file.
        audio: ``(L,)`` or ``(1, L)`` float samples in [-1, 1] (clipped beyond).
        sr: sampling rate in Hz.
        overwrite: replace an existing file.

    Raises:
        UserInputError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    samples = _mono(audio)
    full_scale = 2 ** (FLAC_BITS - 1) - 1
    # FFmpeg's FLAC encoder stores s32 input as 24-bit samples taken from the top bits: quantise
    # to 24 bits ourselves (rounding) and shift them up.
    quantised = np.round(samples * full_scale).astype(np.int32) << (32 - FLAC_BITS)
    with _atomic_output(path, overwrite) as tmp, av.open(str(tmp), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=sr, layout="mono")
        stream.codec_context.format = "s32"
        frame = av.AudioFrame.from_ndarray(quantised[None], format="s32", layout="mono")
        frame.sample_rate = sr
        frame.pts = 0
        frame.time_base = Fraction(1, sr)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _add_aac(out: av.container.OutputContainer, sr: int) -> av.AudioStream:
    stream = out.add_stream("aac", rate=sr, layout="mono")
    stream.codec_context.bit_rate = AAC_BIT_RATE
    return stream


def _mux_audio(out: av.container.OutputContainer, stream: av.AudioStream, samples: np.ndarray,
               sr: int) -> None:
    # One frame holding everything: PyAV splits it into the encoder's frame size.
    frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
    frame.sample_rate = sr
    frame.pts = 0
    frame.time_base = Fraction(1, sr)
    out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _cut_packets(container: av.container.InputContainer, stream: av.VideoStream,
                 duration: float) -> list[av.Packet] | None:
    """The source's packets, in decoding order, that the first ``duration`` seconds need.

    The time origin is the first frame shown (the smallest pts), as for reading. Returns None
    when packets carry no timestamps (raw streams), which cannot be cut without decoding.
    """
    time_base = stream.time_base
    read_until = None
    packets = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's final flush packet
            when = packet.pts if packet.pts is not None else packet.dts
            if when is None:
                return None
            if read_until is None:
                read_until = when + (duration + _REORDER_MARGIN_S) / time_base
            if (packet.dts if packet.dts is not None else when) >= read_until:
                break
            packets.append(packet)
    except av.error.FFmpegError as err:
        logger.warning("%s: stopped reading the video at a damaged packet (%s)",
                       container.name, err)
    if not packets:
        return []

    def shown_at(packet: av.Packet) -> int:
        return packet.pts if packet.pts is not None else packet.dts

    cut = min(shown_at(p) for p in packets) + duration / time_base  # first pts not kept
    # Keep everything decoded up to the last frame shown before the cut (with its references).
    needed = [i for i, p in enumerate(packets) if shown_at(p) < cut]
    return packets[: needed[-1] + 1]


def _write_copy(out: av.container.OutputContainer, src: Path, samples: np.ndarray, sr: int,
                duration: float) -> bool:
    """Copy the source's video packets into ``out``; False (nothing written) when MP4 cannot
    hold the codec or the packets have no timestamps."""
    with open_video(src) as (container, stream):
        if stream.codec_context.name not in out.supported_codecs:
            return False
        packets = _cut_packets(container, stream, duration)
        if packets is None:
            return False
        if not packets:
            raise UserInputError("the video stream has no readable packet", src)
        out_stream = out.add_stream_from_template(stream)
        audio_stream = _add_aac(out, sr)
        out.start_encoding()
        for packet in packets:
            packet.stream = out_stream
            out.mux(packet)
    _mux_audio(out, audio_stream, samples, sr)
    return True


def _masks_for_overlay(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(T, 1, h, w)`` or ``(T, h, w)`` masks in [0, 1] -> float32 ``(T, 1, h, w)``."""
    masks = torch.as_tensor(masks).detach().cpu().float()
    if masks.ndim == 3:
        masks = masks[:, None]
    if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] == 0:
        raise ValueError(f"overlay masks must be (T, 1, h, w) or (T, h, w), got "
                         f"{tuple(masks.shape)}")
    return masks.clamp(0, 1)


class _Overlay:
    """Tints the masked object on decoded frames (masks at 25 fps, upright, any size).

    Args:
        masks: ``(T, 1, h, w)`` float masks in [0, 1].
        color: RGB tint colour, 0-255.
        alpha: tint strength where the mask is 1.
        turns: counter-clockwise quarter turns that make the coded frames upright.
    """

    def __init__(self, masks: torch.Tensor, color: Sequence[int], alpha: float,
                 turns: int) -> None:
        # Tint weights 0-255 at the masks' own size, converted once.
        self.weights = (masks[:, 0] * (255 * alpha)).round().to(torch.uint8).numpy()  # (T, h, w)
        self.color = np.asarray(color, dtype=np.uint32)
        self.turns = turns
        self._cached: tuple[int, np.ndarray] | None = None
        self._scaler = VideoReformatter()

    def _weight_at(self, seconds: float, height: int, width: int) -> np.ndarray:
        """Tint weight 0-255 per pixel of the coded frame, ``(H, W)`` uint32."""
        index = min(max(round(seconds * SYNC_FPS), 0), len(self.weights) - 1)
        if self._cached is None or self._cached[0] != index:
            up_w, up_h = (height, width) if self.turns % 2 else (width, height)
            small = av.VideoFrame.from_ndarray(self.weights[index], format="gray")
            # swscale's bilinear upscale: fast, and no torch thread pool per frame.
            weight = self._scaler.reformat(small, up_w, up_h, interpolation="BILINEAR")
            weight = weight.to_ndarray()
            # Back to the coded orientation of the frames being tinted.
            weight = np.rot90(weight, -self.turns).astype(np.uint32)  # (H, W)
            self._cached = index, weight
        return self._cached[1]

    def apply(self, frame: av.VideoFrame, seconds: float) -> av.VideoFrame:
        rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3)
        weight = self._weight_at(seconds, frame.height, frame.width)
        rows, cols = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
        if rows.size:
            # Integer blend inside the mask's bounding box only: most of a frame is untouched.
            box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            w = weight[box][..., None]  # (h, w, 1)
            region = rgb[box].astype(np.uint32)
            rgb[box] = ((region * (255 - w) + self.color * w + 127) // 255).astype(np.uint8)
        new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        new.pts, new.time_base = frame.pts, frame.time_base
        return new


def _h264_codec() -> str:
    for name in ("libx264", "h264", "libopenh264", "mpeg4"):
        if name in av.codecs_available:
            return name
    raise RuntimeError("this FFmpeg build has no H.264 or MPEG-4 encoder")


def _write_reencoded(out: av.container.OutputContainer, src: Path, samples: np.ndarray,
                     sr: int, duration: float,
                     overlay: tuple[torch.Tensor, Sequence[int], float] | None) -> None:
    """Decode the first ``duration`` seconds, optionally tint them, encode as H.264 yuv420p."""
    info = probe_video(src)
    with open_video(src) as (container, stream):
        stream.thread_type = "AUTO"
        codec = _h264_codec()
        rate = Fraction(stream.guessed_rate or stream.average_rate or SYNC_FPS)
        out_stream = out.add_stream(codec, rate=rate,
                                    options=H264_OPTIONS if codec == "libx264" else {})
        coded_w, coded_h = ((info.height, info.width) if info.rotation % 180
                            else (info.width, info.height))
        # yuv420p needs even sizes: drop the odd last row or column.
        out_stream.width, out_stream.height = coded_w - coded_w % 2, coded_h - coded_h % 2
        out_stream.pix_fmt = "yuv420p"
        # Keep the source's timestamps, so a variable frame rate stays variable.
        out_stream.codec_context.time_base = stream.time_base
        out_stream.time_base = stream.time_base
        if info.rotation:
            out_stream.set_display_rotation(info.rotation)
        audio_stream = _add_aac(out, sr)
        out.start_encoding()
        painter = None if overlay is None else _Overlay(*overlay, turns=info.rotation // 90)
        start = previous = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    # Raw streams carry no timestamps: follow on from the previous frame.
                    frame.pts = 0 if previous is None else previous.pts + (
                        previous.duration or max(1, round(1 / (rate * stream.time_base))))
                if start is None:
                    start = frame.pts
                previous = frame
                seconds = float((frame.pts - start) * stream.time_base)
                if seconds >= duration - 1e-9:
                    break
                if painter is not None:
                    frame = painter.apply(frame, seconds)
                # Let the encoder choose frame types instead of copying the source's.
                frame.pict_type = av.video.frame.PictureType.NONE
                out.mux(out_stream.encode(frame))
        except av.error.FFmpegError as err:
            if start is None:
                raise UserInputError(f"cannot decode the video: {err}", src) from None
            logger.warning("%s: decoding stopped early (%s)", src, err)
        if start is None:
            raise UserInputError("the video stream has no decodable frame", src)
        out.mux(out_stream.encode(None))
    _mux_audio(out, audio_stream, samples, sr)


def write_video_with_audio(
    src_video: PathLike,
    audio: torch.Tensor | np.ndarray,
    sr: int,
    out_path: PathLike,
    duration: float,
    overlay_masks: torch.Tensor | np.ndarray | None = None,
    overlay_color: Sequence[int] = (255, 48, 48),
    overlay_alpha: float = 0.5,
    overwrite: bool = False,
) -> Path:
    """Write an MP4 of the source video's first ``duration`` seconds with new AAC audio.

    The video stream is copied without re-encoding when possible; it is re-encoded (H.264,
    yuv420p) to draw ``overlay_masks`` or when MP4 cannot store the source codec. The audio is
    written whole (not cut to ``duration``), as AAC, mono.

    Args:
        src_video: the source video file.
        audio: ``(L,)`` or ``(1, L)`` float samples in [-1, 1].
        sr: audio sampling rate in Hz.
        out_path: output ``.mp4`` file.
        duration: seconds of video to keep.
        overlay_masks: optional ``(T, 1, h, w)`` or ``(T, h, w)`` masks in [0, 1] at 25 fps
            (upright, any size, e.g. ``VideoInputs.masks``); the masked object is tinted.
        overlay_color: RGB tint colour (0-255).
        overlay_alpha: tint strength where the mask is 1.
        overwrite: replace an existing file.

    Raises:
        UserInputError: unreadable source video, or ``out_path`` exists and ``overwrite`` is
            False.
    """
    src, out_path = Path(src_video), Path(out_path)
    if not duration > 0 or not math.isfinite(duration):
        raise UserInputError(f"duration must be a positive number of seconds, got {duration}")
    samples = _mono(audio)
    overlay = None
    if overlay_masks is not None:
        if len(overlay_color) != 3:
            raise ValueError(f"overlay_color must be RGB, got {overlay_color}")
        overlay = (_masks_for_overlay(overlay_masks), overlay_color, float(overlay_alpha))
    with _atomic_output(out_path, overwrite) as tmp:
        if overlay is None:
            try:
                with av.open(str(tmp), "w", format="mp4") as out:
                    copied = _write_copy(out, src, samples, sr, duration)
            except av.error.FFmpegError as err:
                # The muxer refused the copied stream (e.g. a codec tag MP4 does not accept).
                logger.info("%s: cannot copy the video stream (%s)", src, err)
                copied = False
            if copied:
                return out_path
            logger.info("%s: re-encoding the video as H.264 for MP4", src)
        with av.open(str(tmp), "w", format="mp4") as out:
            _write_reencoded(out, src, samples, sr, duration, overlay)
    return out_path
