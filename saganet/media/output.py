"""Writing results: audio as FLAC, an MP4 of the source video with new sound tracks, and
lossless mask videos.

Every writer produces its file under a temporary name in the destination folder and renames it
at the end (:mod:`saganet.fileio`), so an interrupted run never leaves a half-written output,
and refuses to replace an existing file unless asked to. Audio is encoded in chunks, so a long
soundtrack can come from a memory-mapped file without being loaded.

The MP4 copies the source's video packets (no re-encoding, no quality loss) for the seconds
``[0, duration)``: packets are kept in decoding order up to the last one that a frame shown
before ``duration`` needs, so every kept frame decodes; with B-frames this may keep a few
frames past ``duration``. The video is re-encoded (H.264, yuv420p) to draw mask overlays, to
start later than the first frame (a copy could only start at a keyframe), or when browsers do
not play the source codec in MP4 (MJPEG, PNG, ProRes ...). Audio tracks are AAC; the first is
the default track and every track may carry a title (players list them by it).

Every writer takes ``tags``: file-level text tags (Vorbis comments in FLAC, the INFO list in WAV,
the metadata atoms in MP4), such as the ``comment`` that records how a result was generated
(:mod:`saganet.soundtrack.settings`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import av.error
import numpy as np
import torch
from av.video.reformatter import ColorRange, VideoReformatter

from saganet.errors import UserInputError, check_seconds
from saganet.fileio import atomic_output, ffmpeg_name
from saganet.media.video import SYNC_FPS, PathLike, open_video, probe_video

logger = logging.getLogger(__name__)

FLAC_BITS = 24
AAC_BIT_RATE = 192_000
# Re-encoded video: libx264 constant rate factor (18 is visually lossless) and a fast preset
# (the MP4 is a preview; encoding speed matters more than file size).
H264_OPTIONS = {"crf": "18", "preset": "veryfast"}
# Demuxing reads this far past the cut so that reordered (B-frame) references are seen.
_REORDER_MARGIN_S = 1.0
# Audio is converted and encoded this many samples at a time.
_AUDIO_CHUNK = 1 << 16
# Audio is muxed this far ahead of the video, so the file stays interleaved.
_AUDIO_LEAD_S = 1.0
# Video codecs copied into the MP4: those browsers play there. H.264 plays everywhere; HEVC in
# Safari, and in Chrome and Edge where the hardware decodes it; AV1 and VP9 in Chrome, Edge and
# Firefox (Safari: only some systems). Others MP4 can hold (MJPEG, PNG, FFV1, MPEG-4 part 2
# ...) played nowhere in a browser, so the web app showed no picture: they are re-encoded.
_PLAYABLE_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})
# Sample-entry tags a copied stream keeps (MP4 takes both of each pair). PyAV's stream copy
# resets the tag, and the muxer's default for HEVC, "hev1", is one Apple's players (QuickTime,
# Safari, iOS) refuse: the copy of an iPhone's "hvc1" video did not play there.
_KEPT_TAGS = {"hevc": ("hvc1", "hev1"), "h264": ("avc1", "avc3")}
# Overlay tint colours, one per object (RGB).
OVERLAY_COLORS = ((255, 48, 48), (48, 128, 255), (64, 220, 64), (255, 200, 0),
                  (220, 64, 255), (0, 220, 220))

AudioLike = torch.Tensor | np.ndarray


def _as_channels(audio: AudioLike) -> np.ndarray:
    """``(L,)``, ``(1, L)`` or ``(2, L)`` float audio -> a ``(C, L)`` array, C 1 (mono) or 2
    (stereo); a view where possible."""
    array = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else audio
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] not in (1, 2) or array.shape[1] == 0:
        raise ValueError(f"audio must be (L,), (1, L) or (2, L) with L > 0, got {array.shape}")
    return array


def _chunks(samples: np.ndarray, start: int = 0, stop: int | None = None,
            ) -> Iterator[np.ndarray]:
    """float32 ``(C, n)`` chunks of ``samples[:, start:stop]``, clipped to [-1, 1]."""
    length = samples.shape[1]
    stop = length if stop is None else min(stop, length)
    for i in range(start, stop, _AUDIO_CHUNK):
        chunk = np.asarray(samples[:, i : min(i + _AUDIO_CHUNK, stop)], dtype=np.float32)
        if not np.isfinite(chunk).all():
            raise ValueError("audio contains NaN or infinite samples")
        yield np.clip(chunk, -1.0, 1.0)


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def _audio_frame(chunk: np.ndarray, fmt: str, sr: int, pts: int) -> av.AudioFrame:
    """A frame of ``(C, n)`` samples in sample format ``fmt`` (planar or interleaved)."""
    channels = chunk.shape[0]
    if not av.AudioFormat(fmt).is_planar:
        chunk = np.ascontiguousarray(chunk.T).reshape(1, -1)  # interleaved: L R L R ...
    frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=_layout(channels))
    frame.sample_rate, frame.pts, frame.time_base = sr, pts, Fraction(1, sr)
    return frame


def write_flac(path: PathLike, audio: AudioLike, sr: int = 44100,
               overwrite: bool = False, *, tags: Mapping[str, str] | None = None) -> Path:
    """Write mono or stereo audio as a 24-bit FLAC file.

    Args:
        path: output file.
        audio: ``(L,)`` or ``(1, L)`` (mono) or ``(2, L)`` (stereo: left, right) float samples
            in [-1, 1] (clipped beyond); may be a memory-mapped array (read in chunks).
        sr: sampling rate in Hz.
        overwrite: replace an existing file.
        tags: text tags of the file (Vorbis comments), e.g. ``{"comment": ...}``.

    Raises:
        UserInputError: ``path`` exists and ``overwrite`` is False.
    """
    return _write_pcm(path, audio, sr, overwrite, "flac", "flac", tags)


def write_wav(path: PathLike, audio: AudioLike, sr: int = 44100,
              overwrite: bool = False, *, tags: Mapping[str, str] | None = None,
              time_reference: int | None = None) -> Path:
    """Write mono or stereo audio as a 24-bit PCM WAV file: the samples of
    :func:`write_flac`, uncompressed, for tools that do not read FLAC (arguments as there;
    ``tags`` go into the INFO list, which holds only the keys RIFF names, ``comment`` among
    them).

    Args:
        time_reference: where the first sample belongs on the timeline, in samples from its
            start: the file is then a Broadcast WAV whose ``bext`` chunk holds it, which
            editors and DAWs use to place the file ("spot to original time stamp").
    """
    if time_reference is None:
        return _write_pcm(path, audio, sr, overwrite, "wav", "pcm_s24le", tags)
    if isinstance(time_reference, bool) or not 0 <= time_reference < 2**64:
        raise ValueError(f"time_reference must be a sample count, got {time_reference!r}")
    bext = {"time_reference": str(int(time_reference)), "originator": "saganet"}
    return _write_pcm(path, audio, sr, overwrite, "wav", "pcm_s24le", {**(tags or {}), **bext},
                      {"write_bext": "1"})


# The audio file types the soundtrack writes, by suffix.
AUDIO_WRITERS = {".flac": write_flac, ".wav": write_wav}


def write_audio(path: PathLike, audio: AudioLike, sr: int = 44100,
                overwrite: bool = False, *, tags: Mapping[str, str] | None = None,
                time_reference: int | None = None) -> Path:
    """:func:`write_flac` or :func:`write_wav`, by the suffix of ``path``; ``time_reference``
    goes into a WAV file only (FLAC has no standard place for it)."""
    suffix = Path(path).suffix.lower()
    if suffix not in AUDIO_WRITERS:
        raise ValueError(f"{path}: audio files are {' or '.join(AUDIO_WRITERS)}")
    if suffix == ".wav":
        return write_wav(path, audio, sr, overwrite, tags=tags, time_reference=time_reference)
    return AUDIO_WRITERS[suffix](path, audio, sr, overwrite, tags=tags)


def _write_pcm(path: PathLike, audio: AudioLike, sr: int, overwrite: bool, container: str,
               codec: str, tags: Mapping[str, str] | None,
               options: Mapping[str, str] | None = None) -> Path:
    """24-bit samples through an encoder that takes them as the top bits of s32; ``options``:
    the muxer's."""
    path = Path(path)
    samples = _as_channels(audio)
    full_scale = 2 ** (FLAC_BITS - 1) - 1
    with atomic_output(path, overwrite) as tmp, \
            av.open(ffmpeg_name(tmp), "w", format=container, options=dict(options or {})) as out:
        out.metadata.update(tags or {})
        stream = out.add_stream(codec, rate=sr, layout=_layout(samples.shape[0]))
        stream.codec_context.format = "s32"
        position = 0
        for chunk in _chunks(samples):
            # FFmpeg's FLAC and 24-bit PCM encoders store s32 input as 24-bit samples taken
            # from the top bits: quantise to 24 bits ourselves (rounding) and shift them up.
            quantised = np.round(chunk * full_scale).astype(np.int32) << (32 - FLAC_BITS)
            out.mux(stream.encode(_audio_frame(quantised, "s32", sr, position)))
            position += chunk.shape[1]
        out.mux(stream.encode(None))
    return path


@dataclass(frozen=True)
class AudioTrack:
    """One sound track of an MP4.

    Args:
        samples: ``(L,)`` or ``(1, L)`` (mono) or ``(2, L)`` (stereo) float samples in
            [-1, 1]; may be memory-mapped.
        title: the name players show for it (None: untitled).
    """

    samples: AudioLike
    title: str | None = None


class _AudioMuxer:
    """Encodes sound tracks as AAC alongside the video, a chunk at a time."""

    def __init__(self, out: av.container.OutputContainer, tracks: Sequence[AudioTrack],
                 sr: int) -> None:
        self.out, self.sr = out, sr
        self.sources = [_as_channels(t.samples) for t in tracks]
        self.streams = []
        for track, source in zip(tracks, self.sources, strict=True):
            stream = out.add_stream("aac", rate=sr, layout=_layout(source.shape[0]))
            stream.codec_context.bit_rate = AAC_BIT_RATE
            if track.title:
                stream.metadata["title"] = track.title
                stream.metadata["handler_name"] = track.title
            self.streams.append(stream)
        self.done = 0  # samples encoded in every track

    def until(self, seconds: float) -> None:
        """Encode every track up to ``seconds`` (and a little ahead)."""
        end = max(s.shape[1] for s in self.sources)
        stop = end if math.isinf(seconds) else min(
            end, max(0, math.ceil((seconds + _AUDIO_LEAD_S) * self.sr)))
        if stop <= self.done:
            return
        for source, stream in zip(self.sources, self.streams, strict=True):
            position = self.done
            for chunk in _chunks(source, self.done, stop):
                self.out.mux(stream.encode(_audio_frame(chunk, "fltp", self.sr, position)))
                position += chunk.shape[1]
        self.done = stop

    def finish(self) -> None:
        self.until(math.inf)
        for stream in self.streams:
            self.out.mux(stream.encode(None))


class MaskFrames(Protocol):
    """Masks of an object on the 25 fps grid (:class:`saganet.media.masks.MaskSource`)."""

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        ...


@dataclass(frozen=True)
class Overlay:
    """An object to tint in the video.

    Args:
        masks: its masks; slot ``k`` is drawn at ``k / 25`` s of the written video.
        color: RGB tint colour, 0-255.
        alpha: tint strength where the mask is full.
    """

    masks: MaskFrames
    color: Sequence[int] = OVERLAY_COLORS[0]
    alpha: float = 0.5


class _TensorMasks:
    """Masks held in memory, ``(T, 1, h, w)`` or ``(T, h, w)`` in [0, 1], as a mask source."""

    def __init__(self, masks: torch.Tensor | np.ndarray) -> None:
        masks = torch.as_tensor(masks).detach().cpu().float()
        if masks.ndim == 3:
            masks = masks[:, None]
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] == 0:
            raise ValueError(f"overlay masks must be (T, 1, h, w) or (T, h, w), got "
                             f"{tuple(masks.shape)}")
        self.masks = (masks.clamp(0, 1) * 255).round().to(torch.uint8)

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        first = math.ceil(start * SYNC_FPS - 1e-6)
        stop = len(self.masks) if end is None else math.ceil(end * SYNC_FPS - 1e-6)
        return self.masks[first:stop]


class _Painter:
    """Tints the objects of :class:`Overlay` on decoded frames, reading masks a second ahead.

    Args:
        overlays: the objects.
        turns: counter-clockwise quarter turns that make the coded frames upright.
        colours: colour attributes of the written stream (:func:`_colour_tags`).
    """

    _BLOCK_S = 1.0

    def __init__(self, overlays: Sequence[Overlay], turns: int,
                 colours: dict[str, int]) -> None:
        self.overlays = overlays
        self.turns = turns
        self.colours = colours
        self._block: tuple[int, list[torch.Tensor]] | None = None
        self._cached: dict[tuple[int, int], np.ndarray] = {}
        self._scaler = VideoReformatter()

    def _masks_at(self, slot: int) -> list[np.ndarray | None]:
        """Each object's uint8 mask at a 25 fps slot (None past its end)."""
        per_block = round(self._BLOCK_S * SYNC_FPS)
        block = slot // per_block
        if self._block is None or self._block[0] != block:
            start = block * per_block / SYNC_FPS
            self._block = block, [o.masks.read(start, start + self._BLOCK_S)
                                  for o in self.overlays]
            self._cached = {}
        index = slot - block * per_block
        return [m[index, 0].numpy() if index < len(m) else (m[-1, 0].numpy() if len(m) else None)
                for m in self._block[1]]

    def _weight(self, number: int, mask: np.ndarray, slot: int, alpha: float, height: int,
                width: int) -> np.ndarray:
        """Tint weight 0-255 per pixel of the coded frame, ``(H, W)`` uint32."""
        key = (number, slot)
        if key not in self._cached:
            small = (mask.astype(np.float32) * alpha).round().astype(np.uint8)
            up_w, up_h = (height, width) if self.turns % 2 else (width, height)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(small), format="gray")
            # swscale's bilinear upscale: fast, and no torch thread pool per frame.
            weight = self._scaler.reformat(frame, up_w, up_h, interpolation="BILINEAR")
            # Back to the coded orientation of the frames being tinted.
            self._cached[key] = np.rot90(weight.to_ndarray(), -self.turns).astype(np.uint32)
        return self._cached[key]

    def apply(self, frame: av.VideoFrame, seconds: float) -> av.VideoFrame:
        rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3)
        slot = max(round(seconds * SYNC_FPS), 0)
        for number, (overlay, mask) in enumerate(zip(self.overlays, self._masks_at(slot),
                                                     strict=True)):
            if mask is None or not mask.any():
                continue
            weight = self._weight(number, mask, slot, overlay.alpha, frame.height, frame.width)
            rows, cols = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
            if rows.size:
                # Integer blend inside the mask's bounding box only: most of a frame is
                # untouched.
                box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
                w = weight[box][..., None]  # (h, w, 1)
                color = np.asarray(overlay.color, dtype=np.uint32)
                region = rgb[box].astype(np.uint32)
                rgb[box] = ((region * (255 - w) + color * w + 127) // 255).astype(np.uint8)
        new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        new.pts, new.time_base = frame.pts, frame.time_base
        # The encoder converts it to yuv420p with the matrix and range it carries: the
        # source's, which the stream is tagged with.
        for name, value in self.colours.items():
            setattr(new, name, value)
        return new


def _copy_packets(container: av.container.InputContainer, stream: av.VideoStream,
                  duration: float, src: Path) -> Iterator[av.Packet] | None:
    """The source's packets, in decoding order, that the first ``duration`` seconds need.

    The time origin is the first frame shown, as for reading (:func:`_time_origin`). Packets
    shown after the cut are held back until a later packet shown before it proves them needed
    (as references), so only the reordering window is ever held. Returns None when packets
    carry no timestamps (raw streams), which cannot be cut without decoding.
    """
    time_base = stream.time_base
    demuxed = (p for p in container.demux(stream) if p.size)
    try:
        first = next(demuxed, None)
    except av.error.FFmpegError:
        first = None
    if first is None:
        return iter(())
    if first.pts is None and first.dts is None:
        return None

    def packets() -> Iterator[av.Packet]:
        known = stream.start_time is not None
        origin = _time_origin(stream, first)
        cut = origin + duration / time_base
        read_until = origin + (duration + _REORDER_MARGIN_S) / time_base
        held: list[av.Packet] = []
        try:
            for packet in _chain(first, demuxed):
                when = _shown_at(packet)
                if when is None:
                    continue
                if when < origin and not known and not packet.is_discard:
                    # pts may start before the first packet's in reordered streams.
                    origin, cut = when, when + duration / time_base
                if (packet.dts if packet.dts is not None else when) >= read_until:
                    break
                if when < cut:
                    yield from held
                    held = []
                    yield packet
                else:
                    held.append(packet)
        except av.error.FFmpegError as err:
            logger.warning("%s: stopped reading the video at a damaged packet (%s)", src, err)

    return packets()


def _shown_at(packet: av.Packet) -> int:
    """A packet's time: when it is shown, else (no pts) when it is decoded."""
    return packet.pts if packet.pts is not None else packet.dts


def _time_origin(stream: av.VideoStream, first: av.Packet) -> int:
    """The time of the first frame shown, in the stream's time base: the stream's start time
    (which follows edit lists: packets an edit list cuts from the start are decoded as
    references but never shown), else the first packet's."""
    if stream.start_time is not None:
        return stream.start_time
    return _shown_at(first)


def _chain(first: av.Packet, rest: Iterator[av.Packet]) -> Iterator[av.Packet]:
    yield first
    yield from rest


def _write_copy(out: av.container.OutputContainer, src: Path, tracks: Sequence[AudioTrack],
                sr: int, duration: float) -> bool:
    """Copy the source's video packets into ``out``; False (nothing written) when browsers
    do not play the codec in MP4 (:data:`_PLAYABLE_CODECS`) or the packets have no
    timestamps."""
    with open_video(src) as (container, stream):
        codec = stream.codec_context.codec.canonical_name
        if codec not in _PLAYABLE_CODECS:
            return False
        packets = _copy_packets(container, stream, duration, src)
        if packets is None:
            return False
        # opaque: take the decoder's codec as it is; a new one is looked up by the decoder's
        # name as an encoder, and AV1's decoder (libdav1d) has none.
        out_stream = out.add_stream_from_template(stream, opaque=True)
        if stream.codec_tag in _KEPT_TAGS.get(codec, ()):
            out_stream.codec_context.codec_tag = stream.codec_tag
        audio = _AudioMuxer(out, tracks, sr)
        out.start_encoding()
        origin = shift = None
        count = 0
        for packet in packets:
            when = _shown_at(packet)
            origin = when if origin is None else min(origin, when)
            audio.until(float((when - origin) * stream.time_base))
            # The sound starts at the first frame shown: so must the copied video, whose
            # timestamps may start later (MPEG-TS), or players would play it that much late.
            shift = _time_origin(stream, packet) if shift is None else shift
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = out_stream
            out.mux(packet)
            count += 1
        if not count:
            raise UserInputError("the video stream has no readable packet", src)
    audio.finish()
    return True


def h264_codec() -> str:
    """An H.264 encoder of this FFmpeg build, else MPEG-4 part 2 (both go into MP4)."""
    for name in ("libx264", "h264", "libopenh264", "mpeg4"):
        if name in av.codecs_available:
            return name
    raise RuntimeError("this FFmpeg build has no H.264 or MPEG-4 encoder")


def even_size(pixels: int) -> int:
    """The even size yuv420p (chroma at half resolution) can hold for ``pixels``: one less
    where odd, and 2 for 1."""
    return max(2, pixels - pixels % 2)


def _colour_tags(source: av.video.codeccontext.VideoCodecContext) -> dict[str, int]:
    """The source's colour attributes the re-encoded stream keeps, by codec-context name.

    Primaries and transfer (BT.2020, PQ, HLG: HDR) pass through the conversion to yuv420p
    untouched. The matrix and range are those of YUV sources only: their frames are converted
    with them, so the pixels match; RGB and gray sources get the encoder's defaults, as before.
    """
    tags = {"color_primaries": source.color_primaries, "color_trc": source.color_trc}
    fmt = av.VideoFormat(source.pix_fmt) if source.pix_fmt else None
    if fmt is not None and not fmt.is_rgb and len(fmt.components) >= 3:
        tags |= {"colorspace": source.colorspace, "color_range": source.color_range}
    # 0 and 3 are reserved (or RGB, for a matrix) in every one of these: they describe
    # nothing, and FFmpeg's scaler refuses some of them.
    return {name: value for name, value in tags.items() if value not in (0, 3)}


def _write_reencoded(out: av.container.OutputContainer, src: Path, tracks: Sequence[AudioTrack],
                     sr: int, start: float, duration: float,
                     overlays: Sequence[Overlay]) -> None:
    """Decode ``[start, start + duration)``, optionally tint it, encode as H.264 yuv420p; the
    written video starts at 0."""
    info = probe_video(src)
    with open_video(src) as (container, stream):
        stream.thread_type = "AUTO"
        codec = h264_codec()
        rate = Fraction(stream.guessed_rate or stream.average_rate or SYNC_FPS)
        out_stream = out.add_stream(codec, rate=rate,
                                    options=H264_OPTIONS if codec == "libx264" else {})
        coded_w, coded_h = ((info.height, info.width) if info.rotation % 180
                            else (info.width, info.height))
        # yuv420p needs even sizes: the encoder scales frames to the size set here, one pixel
        # smaller where odd, and 2 where only 1 (a 1-pixel video made a size of 0, which the
        # encoder refused).
        out_stream.width, out_stream.height = even_size(coded_w), even_size(coded_h)
        out_stream.pix_fmt = "yuv420p"
        colours = _colour_tags(stream.codec_context)
        for name, value in colours.items():
            setattr(out_stream.codec_context, name, value)
        # Keep the source's timestamps, so a variable frame rate stays variable.
        out_stream.codec_context.time_base = stream.time_base
        out_stream.time_base = stream.time_base
        if info.rotation:
            out_stream.set_display_rotation(info.rotation)
        audio = _AudioMuxer(out, tracks, sr)
        out.start_encoding()
        painter = _Painter(overlays, info.rotation // 90, colours) if overlays else None
        origin = previous = None
        shift = None  # pts of the first written frame
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    # Raw streams carry no timestamps: follow on from the previous frame.
                    frame.pts = 0 if previous is None else previous.pts + (
                        previous.duration or max(1, round(1 / (rate * stream.time_base))))
                if origin is None:
                    origin = frame.pts
                previous = frame
                seconds = float((frame.pts - origin) * stream.time_base) - start
                if seconds < -1e-9:
                    continue
                if seconds >= duration - 1e-9:
                    break
                if shift is None:
                    shift = frame.pts
                if painter is not None:
                    frame = painter.apply(frame, seconds)
                frame.pts -= shift
                # Let the encoder choose frame types instead of copying the source's.
                frame.pict_type = av.video.frame.PictureType.NONE
                audio.until(seconds)
                out.mux(out_stream.encode(frame))
        except av.error.FFmpegError as err:
            if shift is None:
                raise UserInputError(f"cannot decode the video: {err}", src) from None
            logger.warning("%s: decoding stopped early (%s)", src, err)
        if shift is None:
            raise UserInputError("the video stream has no decodable frame in the range "
                                 f"{start:g}-{start + duration:g} s", src)
        out.mux(out_stream.encode(None))
    audio.finish()


def write_video_with_audio(
    src_video: PathLike,
    audio: AudioLike | Sequence[AudioTrack],
    sr: int,
    out_path: PathLike,
    duration: float,
    overlay_masks: torch.Tensor | np.ndarray | None = None,
    overlay_color: Sequence[int] = OVERLAY_COLORS[0],
    overlay_alpha: float = 0.5,
    overwrite: bool = False,
    *,
    start: float = 0.0,
    overlays: Sequence[Overlay] = (),
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write an MP4 of the source video's ``[start, start + duration)`` with new AAC audio.

    The video stream is copied without re-encoding when possible (see the module docstring).
    The audio tracks are written whole (not cut to ``duration``), as AAC, mono or stereo.

    Args:
        src_video: the source video file.
        audio: ``(L,)``, ``(1, L)`` or ``(2, L)`` float samples in [-1, 1] for one untitled
            track, or
            several :class:`AudioTrack` (the first is the default track).
        sr: audio sampling rate in Hz.
        out_path: output ``.mp4`` file.
        duration: seconds of video to keep.
        overlay_masks: optional ``(T, 1, h, w)`` or ``(T, h, w)`` masks in [0, 1] at 25 fps
            (upright, any size, e.g. ``VideoInputs.masks``) of one object to tint.
        overlay_color: RGB tint colour (0-255) of ``overlay_masks``.
        overlay_alpha: tint strength where ``overlay_masks`` is 1.
        overwrite: replace an existing file.
        start: seconds of the source to skip (from its first frame); the output starts there.
        overlays: objects to tint, each with its own masks and colour.
        tags: text tags of the file (MP4 metadata), e.g. ``{"comment": ...}``.

    Raises:
        UserInputError: unreadable source video, or ``out_path`` exists and ``overwrite`` is
            False.
    """
    src, out_path = Path(src_video), Path(out_path)
    duration = check_seconds(duration, "duration", positive=True)
    start = check_seconds(start, "start", nonnegative=True)
    is_tracks = isinstance(audio, Sequence) and not isinstance(audio, np.ndarray) and all(
        isinstance(t, AudioTrack) for t in audio)
    tracks = list(audio) if is_tracks else [AudioTrack(audio)]
    if not tracks:
        raise ValueError("at least one audio track is needed")
    overlays = list(overlays)
    if overlay_masks is not None:
        if len(overlay_color) != 3:
            raise ValueError(f"overlay_color must be RGB, got {overlay_color}")
        overlays.append(Overlay(_TensorMasks(overlay_masks), overlay_color, overlay_alpha))
    with atomic_output(out_path, overwrite, suffix=".mp4") as tmp:
        if not overlays and start == 0:
            try:
                with av.open(ffmpeg_name(tmp), "w", format="mp4") as out:
                    out.metadata.update(tags or {})
                    copied = _write_copy(out, src, tracks, sr, duration)
            except av.error.FFmpegError as err:
                # The muxer refused the copied stream (e.g. a codec tag MP4 does not accept).
                logger.info("%s: cannot copy the video stream (%s)", src, err)
                copied = False
            if copied:
                return out_path
            logger.info("%s: re-encoding the video as H.264 for MP4", src)
        with av.open(ffmpeg_name(tmp), "w", format="mp4") as out:
            out.metadata.update(tags or {})
            _write_reencoded(out, src, tracks, sr, start, duration, overlays)
    return out_path


def _lossless_codec() -> tuple[str, dict[str, str]]:
    if "libx264" in av.codecs_available:
        return "libx264", {"qp": "0", "preset": "veryfast"}
    return "ffv1", {}


def write_mask_video(path: PathLike, masks: Iterable[np.ndarray], fps: float = SYNC_FPS,
                     overwrite: bool = False) -> Path:
    """Write binary masks losslessly: 8-bit gray (0 or 255), full range, in MP4.

    H.264 lossless (``qp=0``, the High 4:4:4 Predictive profile) where FFmpeg has libx264,
    else FFV1. FFmpeg-based readers decode it bit-exactly: reading the file back
    (:func:`saganet.media.video.read_frames` with ``gray=True``) gives exactly the masks
    written, at any size. (Browsers do not play this profile: it is data, not a preview.)

    Args:
        path: output file (``.mp4``).
        masks: ``(H, W)`` masks per frame, bool or uint8 (non-zero: the object), all one size.
        fps: frame rate; frame ``k`` is shown at ``k / fps``.
        overwrite: replace an existing file.

    Raises:
        UserInputError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    codec, options = _lossless_codec()
    with atomic_output(path, overwrite, suffix=".mp4") as tmp, \
            av.open(ffmpeg_name(tmp), "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=rate, options=options)
        stream.pix_fmt = "gray"
        stream.codec_context.color_range = ColorRange.JPEG
        stream.codec_context.time_base = 1 / rate
        for index, mask in enumerate(masks):
            image = np.where(np.asarray(mask) != 0, 255, 0).astype(np.uint8)
            if index == 0:
                stream.height, stream.width = image.shape
            frame = av.VideoFrame.from_ndarray(image, format="gray")
            frame.pts, frame.time_base = index, 1 / rate
            frame.color_range = ColorRange.JPEG
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
