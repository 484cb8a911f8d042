"""Test helper: write small synthetic videos (optionally with an audio track) with PyAV.

``write_video`` is the one place the tests encode video; each test module keeps only what
its frames look like. Typical use::

    frames = [np.full((48, 64, 3), 10 * k, np.uint8) for k in range(25)]
    write_video(tmp_path / "clip.mp4", frames, fps=25, audio=sine(440, 1.0, 44100))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = 25, *,
                codec: str = "libx264", pix_fmt: str = "yuv420p",
                options: Mapping[str, str] | None = None, container: str | None = None,
                faststart: bool = False, gop_size: int | None = None,
                pts_ms: Sequence[int] | None = None, rotation: float | None = None,
                pixel_aspect: Fraction | None = None, codec_tag: str | None = None,
                color_tags: Mapping[str, int] | None = None,
                audio: np.ndarray | None = None, audio_rate: int = 44100,
                audio_codec: str = "aac", audio_start: float = 0.0) -> Path:
    """Encode uint8 frames (``(H, W, 3)`` RGB or ``(H, W)`` grey) into ``path``; return it.

    ``frames`` may be any iterable (a list, a ``(T, H, W[, 3])`` array, a generator); the
    first frame gives the size. Parent folders are created.

    - ``fps``: the nominal rate (NTSC-style fractions such as ``30000 / 1001`` are kept
      exact); frame ``k`` is shown at ``k / fps`` unless ``pts_ms`` is given.
    - ``codec``, ``pix_fmt``, ``options``: encoder, its pixel format and private options
      (default: the encoder's own, i.e. lossy H.264; ``{"qp": "0"}`` makes it lossless).
    - ``container``: muxer name (``"mp4"``, ``"matroska"``, ``"avi"``, ``"h264"`` for a raw
      stream without timestamps ...); default: guessed from the file name.
    - ``faststart``: put the MP4 index first (``movflags=+faststart``).
    - ``gop_size``: keyframe interval (short GOPs make seeking land close to the target).
    - ``pts_ms``: per-frame presentation times in milliseconds (a variable frame rate).
    - ``rotation``: display-rotation metadata in degrees.
    - ``pixel_aspect``: the sample aspect ratio of an anamorphic video (stored frames shown
      that much wider).
    - ``codec_tag``: the video's four-character tag in MP4/MOV (``"hvc1"``, as iPhones write
      HEVC; default: the muxer's choice).
    - ``color_tags``: colour attributes of the stream and its frames (``color_primaries``,
      ``color_trc``, ``colorspace``, ``color_range``, FFmpeg's numbers); the frames are
      converted with that matrix and range.
    - ``audio``: float samples in [-1, 1], ``(C, T)`` with C 1 (mono) or 2 (stereo), or
      ``(T,)``; written as one ``audio_codec`` stream at ``audio_rate`` Hz starting at
      ``audio_start`` seconds (the first frame is shown at 0).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first = np.asarray(next(frames))
    height, width = first.shape[:2]
    muxer_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=muxer_options) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001),
                                options=dict(options or {}))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        if pts_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pixel_aspect is not None:
            stream.codec_context.sample_aspect_ratio = pixel_aspect
        if codec_tag is not None:
            stream.codec_context.codec_tag = codec_tag
        for name, value in (color_tags or {}).items():
            setattr(stream.codec_context, name, value)
        sound = None
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, np.float32))
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            sound = out.add_stream(audio_codec, rate=audio_rate)
            sound.layout = layout
        for i, image in enumerate(itertools.chain([first], frames)):
            image = np.ascontiguousarray(image)
            frame = av.VideoFrame.from_ndarray(image, format="gray" if image.ndim == 2
                                               else "rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for name, value in (color_tags or {}).items():
                setattr(frame, name, value)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            frame = av.AudioFrame.from_ndarray(audio, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = audio_rate, round(audio_start * audio_rate)
            out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def sine(hz: float, seconds: float, sample_rate: int, amplitude: float = 0.3) -> np.ndarray:
    """A float32 sine ``(T,)`` of ``round(seconds * sample_rate)`` samples."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Samples ``(C, L)`` as floats in [-1, 1] and the rate of a file's first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([_planar(f) for f in container.decode(stream)], axis=1)
        rate = stream.rate
    if samples.dtype == np.int32:  # 24-bit FLAC comes as s32
        samples = samples / 2.0**31
    return samples, rate


def _planar(frame: av.AudioFrame) -> np.ndarray:
    """A frame's samples as ``(C, n)`` (interleaved formats come as ``(1, n * C)``)."""
    samples = frame.to_ndarray()
    if frame.format.is_planar:
        return samples
    return samples.reshape(-1, len(frame.layout.channels)).T


def stream_ends(path: Path) -> dict[str, list[float]]:
    """Per stream type (``video``, ``audio``), each stream's end in seconds from its last
    packet (robust to missing duration headers)."""
    ends: dict[int, float] = {}
    kinds: dict[int, str] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.duration is None:
                continue
            end = float((packet.pts + packet.duration) * packet.time_base)
            ends[packet.stream.index] = max(ends.get(packet.stream.index, 0.0), end)
            kinds[packet.stream.index] = packet.stream.type
    result: dict[str, list[float]] = {}
    for index, end in sorted(ends.items()):
        result.setdefault(kinds[index], []).append(end)
    return result
