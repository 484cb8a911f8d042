"""Audio files for evaluation: discovery, pairing by stem, PyAV reading and preprocessing.

Owns the preprocessing av-benchmark applies before its PANNs/VGGish/PaSST extractors, written
here without torchaudio: mix to mono by the channel mean, remove the DC offset, resample
(polyphase, :func:`scipy.signal.resample_poly`) and truncate, never pad, to
``audio_length · sample_rate`` samples. The resampler is not torchaudio's sinc/Hann filter, so
features computed from this path differ slightly from av-benchmark's own loaders; the
av-benchmark adapter therefore lets av-benchmark read the files itself.
"""

from __future__ import annotations

import logging
from math import gcd
from pathlib import Path

import av
import numpy as np

from saganet.errors import UserInputError
from saganet.fileio import ffmpeg_name

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")


def list_audio_files(directory: str | Path) -> dict[str, Path]:
    """Every ``*.wav`` / ``*.flac`` directly inside ``directory``, keyed by stem, sorted.

    Args:
        directory: folder to scan (not recursive), as av-benchmark does.

    Raises:
        UserInputError: the folder does not exist, holds no audio, or two files share a stem.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise UserInputError("not a directory", folder)
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            raise UserInputError(
                f"two audio files share the stem {path.stem!r} ({files[path.stem].name}, "
                f"{path.name}); names pair predictions with ground truth",
                folder,
            )
        files[path.stem] = path
    if not files:
        raise UserInputError("no .wav or .flac files found", folder)
    return dict(sorted(files.items()))


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of a file with PyAV.

    Args:
        path: a ``.wav``/``.flac`` (or any FFmpeg-readable) file.

    Returns:
        ``(waveform (C, T) float32, sample_rate)``; integer formats are scaled to [-1, 1).

    Raises:
        UserInputError: the file cannot be opened or has no audio stream.
    """
    try:
        container = av.open(ffmpeg_name(path))
    except (av.error.FFmpegError, OSError) as err:
        # FFmpeg's message repeats the name (as FFmpeg opened it): the reason alone.
        reason = getattr(err, "strerror", None) or err
        raise UserInputError(f"cannot read audio ({reason})", path) from err
    with container:
        if not container.streams.audio:
            raise UserInputError("no audio stream", path)
        stream = container.streams.audio[0]
        # Converting to planar float keeps channels separate and scales integers exactly.
        converter = av.AudioResampler(format="fltp")
        chunks = []
        for frame in container.decode(stream):
            chunks.extend(f.to_ndarray() for f in converter.resample(frame))
        chunks.extend(f.to_ndarray() for f in converter.resample(None))
        sample_rate = stream.codec_context.sample_rate
    if not chunks:
        raise UserInputError("audio stream is empty", path)
    return np.concatenate(chunks, axis=1).astype(np.float32), int(sample_rate)  # (C, T)


def audio_seconds(path: str | Path) -> float | None:
    """Length in seconds of a file's first audio stream, from its header (nothing is
    decoded); None when it cannot be read or states none.

    Args:
        path: a ``.wav``/``.flac`` (or any FFmpeg-readable) file.
    """
    try:
        with av.open(ffmpeg_name(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except (av.error.FFmpegError, OSError):
        pass  # reading the file for the metrics says what is wrong with it
    return None


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with a polyphase filter.

    Args:
        waveform: ``(..., T)`` samples.
        orig_sr: its sample rate.
        target_sr: wanted sample rate.

    Returns:
        ``(..., ceil(T · target_sr / orig_sr))`` float32 samples (the input itself if the rates
        are equal).
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {target_sr}")
    if orig_sr == target_sr:
        return waveform.astype(np.float32, copy=False)
    # Imported here: scipy.signal takes about a second to import, and the trainer imports this
    # module with its configuration, whether it evaluates or not.
    from scipy.signal import resample_poly

    common = gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // common, int(orig_sr) // common
    out = resample_poly(waveform.astype(np.float64), up, down, axis=-1)
    return out.astype(np.float32)


def preprocess(
    waveform: np.ndarray,
    sample_rate: int,
    target_sr: int,
    audio_length: float | None,
    *,
    remove_dc: bool = True,
) -> np.ndarray:
    """av-benchmark's audio preprocessing: mono, DC removal, resample, truncate.

    Args:
        waveform: ``(C, T)`` or ``(T,)`` samples.
        sample_rate: its rate.
        target_sr: the rate the extractor expects.
        audio_length: keep at most this many seconds (truncation only; shorter clips stay
            short); None keeps everything.
        remove_dc: subtract the mean before resampling (av-benchmark does for PANNs, VGGish,
            PaSST and CLAP, not for Synchformer).

    Returns:
        ``(T',)`` float32 mono samples at ``target_sr``.
    """
    mono = waveform if waveform.ndim == 1 else waveform.mean(axis=0)  # (T,)
    if remove_dc:
        mono = mono - mono.mean()
    out = resample(mono, sample_rate, target_sr)
    if audio_length is not None:
        out = out[: int(target_sr * audio_length)]
    return out


def load_for_extractor(
    path: str | Path,
    target_sr: int,
    audio_length: float | None,
    *,
    remove_dc: bool = True,
) -> np.ndarray:
    """Read a file and apply :func:`preprocess`; returns ``(T,)`` float32 mono samples."""
    waveform, sample_rate = read_audio(path)
    return preprocess(waveform, sample_rate, target_sr, audio_length, remove_dc=remove_dc)
