"""Test helper: write small wav/flac files with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_audio(path: Path, waveform: np.ndarray, sample_rate: int) -> Path:
    """Write ``(C, T)`` or ``(T,)`` samples in [-1, 1] as 16-bit PCM wav or flac."""
    x = np.atleast_2d(np.asarray(waveform, dtype=np.float64))
    layout = "mono" if x.shape[0] == 1 else "stereo"
    codec = "flac" if path.suffix == ".flac" else "pcm_s16le"
    packed = np.round(x.T * 32767).astype(np.int16).reshape(1, -1)  # interleaved (1, T·C)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        stream.format = "s16"
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def tone(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.3) -> np.ndarray:
    """A sine tone ``(T,)``."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return amplitude * np.sin(2 * np.pi * freq * t)
