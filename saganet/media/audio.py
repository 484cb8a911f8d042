"""Reading a clip's soundtrack as the fixed-length mono waveform the audio VAE encodes.

This follows the training data's preparation (the reference decoded with FFmpeg): the first
audio stream is resampled to the target rate by FFmpeg's own resampler (libswresample, through
PyAV; every channel kept), mixed to mono by the mean over channels, then zero-padded or
truncated to a fixed number of samples. No peak normalisation. Reading stops as soon as enough
samples are decoded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np
import torch

from saganet.errors import UserInputError
from saganet.fileio import ffmpeg_name

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100

# A seek to a time may land up to this much after it in files with sparse index entries.
_SEEK_MARGIN_S = 1.0
# Timestamps further than this from where the samples run to are a jump in the file (a cut,
# a lost packet), not the jitter of rounding: 10 ms at 44.1 kHz.
_GAP_SAMPLES = 441


@dataclass(frozen=True)
class MonoAudio:
    """A fixed-length mono waveform and how much of it came from the file.

    Args:
        waveform: ``(num_samples,)`` float32, zero-padded past ``decoded``.
        decoded: samples read from the file at the target rate, before padding or truncation
            (reading stops once there are ``num_samples``, so a longer file reads as a little
            more than ``num_samples``).
        sample_rate: rate of ``waveform`` in Hz.
    """

    waveform: torch.Tensor
    decoded: int
    sample_rate: int


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def load_mono_audio(path: str | os.PathLike[str], num_samples: int,
                    sample_rate: int = SAMPLE_RATE, min_samples: int = 0) -> MonoAudio:
    """The first ``num_samples`` of a file's first audio stream, mono, at ``sample_rate``.

    Args:
        path: any FFmpeg-readable file with an audio stream (e.g. a clip's ``.mp4``).
        num_samples: output length; shorter audio is zero-padded, longer audio truncated.
        sample_rate: output rate in Hz.
        min_samples: fewer decoded samples than this is an error (0: accept any length).

    Raises:
        UserInputError: unreadable file, no audio stream, no decodable sample, or fewer than
            ``min_samples`` samples.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError("file not found", path)
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    try:
        container = av.open(ffmpeg_name(path))
    except (av.error.FFmpegError, OSError) as err:
        raise UserInputError(f"cannot read the file: {_reason(err)}", path) from None
    chunks: list[np.ndarray] = []
    decoded = 0
    with container:
        if not container.streams.audio:
            raise UserInputError("no audio stream", path)
        stream = container.streams.audio[0]
        # Planar float output at the target rate; the layout stays the source's, so the channel
        # mean below happens after resampling, as in the FFmpeg pipeline of the reference.
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())  # (channels, n)
                    decoded += out.samples
                if decoded >= num_samples:
                    break
            else:
                for out in resampler.resample(None):  # the resampler's buffered tail
                    chunks.append(out.to_ndarray())
                    decoded += out.samples
        except av.error.FFmpegError as err:
            if not decoded:
                raise UserInputError(f"cannot decode the audio: {_reason(err)}", path) from None
            log.warning("%s: audio decoding stopped after %d samples (%s); using them", path,
                        decoded, _reason(err))
    if decoded == 0:
        raise UserInputError("the audio stream has no decodable sample", path)
    if decoded < min_samples:
        raise UserInputError(
            f"audio too short: {decoded / sample_rate:.3f} s ({decoded} samples at "
            f"{sample_rate} Hz), need {min_samples} samples", path)
    mono = np.concatenate(chunks, axis=1).mean(axis=0)  # (L,) float32
    waveform = torch.zeros(num_samples, dtype=torch.float32)
    kept = min(num_samples, mono.shape[0])
    waveform[:kept] = torch.from_numpy(mono[:kept])
    return MonoAudio(waveform=waveform, decoded=decoded, sample_rate=sample_rate)


def read_video_sound(path: str | os.PathLike[str], start: float, out: np.ndarray,
                     sample_rate: int = SAMPLE_RATE) -> bool:
    """Fill ``out`` with a video's own sound from ``start`` seconds after its first frame.

    The sound is placed by its timestamps against the video's first frame (the time origin the
    frames are read with), so a sound track that starts late leaves silence in front instead
    of moving against the picture. It is resampled to ``sample_rate`` by FFmpeg's resampler
    and mixed to mono by the mean over channels, as :func:`load_mono_audio`; samples the file
    does not have stay 0. Decoding goes a chunk at a time into ``out`` (which may be
    memory-mapped), so memory does not grow with the length.

    Args:
        path: the video.
        start: seconds from the video's first frame at which ``out`` starts.
        out: ``(L,)`` float32 array to fill (``L`` samples at ``sample_rate``).
        sample_rate: rate of ``out`` in Hz.

    Returns:
        False when the file has no audio stream (``out`` is then all zeros), else True.

    Raises:
        UserInputError: the file cannot be opened.
    """
    path = Path(path)
    out[:] = 0
    try:
        container = av.open(ffmpeg_name(path))
    except (av.error.FFmpegError, OSError) as err:
        raise UserInputError(f"cannot read the file: {_reason(err)}", path) from None
    with container:
        if not container.streams.audio:
            return False
        stream = container.streams.audio[0]
        # The picture's stream as the frames are read (cover art is no picture).
        video = next((s for s in container.streams.video
                      if not s.disposition & av.stream.Disposition.attached_pic), None)
        origin = (float(video.start_time * video.time_base)
                  if video is not None and video.start_time is not None else 0.0)
        begin = origin + start
        if start > _SEEK_MARGIN_S:
            # Frames before the start are skipped by their times; the margin covers a seek
            # that lands a little after the wanted point.
            container.seek(int((begin - _SEEK_MARGIN_S) * av.time_base), backward=True)
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        position: int | None = None  # where the resampler's next output goes in ``out``
        try:
            for frame in container.decode(stream):
                at = None if frame.time is None else round((frame.time - begin) * sample_rate)
                if position is None or (at is not None and abs(at - position) > _GAP_SAMPLES):
                    # The first frame, and any frame after a jump in the timestamps: placed
                    # by its time. Otherwise frames follow each other, so the resampler's
                    # delay does not open gaps between them.
                    position = 0 if at is None else at
                for chunk in resampler.resample(frame):
                    position = _place(out, chunk.to_ndarray().mean(axis=0), position)
                if position >= len(out):
                    break
            else:
                for chunk in resampler.resample(None):
                    position = _place(out, chunk.to_ndarray().mean(axis=0), position)
        except av.error.FFmpegError as err:
            log.warning("%s: stopped reading the video's sound at %s (%s); the rest is silent",
                        path, "its start" if position is None else
                        f"{max(position, 0) / sample_rate:.2f} s", _reason(err))
    return True


def _place(out: np.ndarray, samples: np.ndarray, position: int) -> int:
    """Write ``samples`` into ``out`` at ``position`` (clipped to ``out``); the next position."""
    lo, hi = max(position, 0), min(position + len(samples), len(out))
    if hi > lo:
        out[lo:hi] = samples[lo - position : hi - position]
    return position + len(samples)
