"""Spectrogram pictures of generated sound, one per object and one of the mix.

A mel spectrogram (128 bands up to 16 kHz, where the model's sound lives) in decibels over the
top 80 dB, low frequencies at the bottom, coloured from black through purple and orange to
pale yellow, written as a PNG the page shows beside each player.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from saganet.fileio import atomic_output
from saganet.media.audio import SAMPLE_RATE, load_mono_audio

N_FFT = 2048
HOP = 512
N_MELS = 128
F_MAX = 16000
TOP_DB = 80.0
HEIGHT = 256
# Colour stops (RGB) from quiet to loud.
_STOPS = np.array([(0, 0, 4), (60, 15, 110), (150, 40, 120), (230, 90, 60), (250, 180, 50),
                   (252, 250, 190)], dtype=np.float32)


def colorize(levels: np.ndarray) -> np.ndarray:
    """Levels in [0, 1] -> uint8 RGB of the colour map (``(..., 3)``).

    Args:
        levels: any shape, values clipped to [0, 1].
    """
    position = np.clip(levels, 0, 1) * (len(_STOPS) - 1)
    low = np.minimum(np.floor(position).astype(int), len(_STOPS) - 2)
    frac = (position - low)[..., None]
    rgb = _STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def mel_levels(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``(N_MELS, frames)`` levels in [0, 1]: dB relative to the loudest bin over ``TOP_DB``.

    Args:
        audio: mono float samples.
        sr: sampling rate.
    """
    import librosa

    power = librosa.feature.melspectrogram(y=np.asarray(audio, np.float32), sr=sr, n_fft=N_FFT,
                                           hop_length=HOP, n_mels=N_MELS, fmax=F_MAX)
    if not power.any():
        return np.zeros_like(power)
    db = librosa.power_to_db(power, ref=np.max, top_db=TOP_DB)
    return (db + TOP_DB) / TOP_DB


def write_spectrogram(audio_path: str | os.PathLike[str], image_path: str | os.PathLike[str],
                      seconds: float, width: int = 800) -> Path:
    """Draw the spectrogram of a sound file into a PNG.

    Args:
        audio_path: the sound (any format FFmpeg reads; mixed to mono at 44.1 kHz).
        image_path: the PNG to write.
        seconds: how much of the sound to draw.
        width: the picture's width in pixels (its height is fixed).
    """
    audio = load_mono_audio(audio_path, max(1, round(seconds * SAMPLE_RATE))).waveform
    levels = mel_levels(audio.numpy())[::-1]  # low frequencies at the bottom
    picture = Image.fromarray(colorize(levels)).resize((width, HEIGHT),
                                                       Image.Resampling.BILINEAR)
    image_path = Path(image_path)
    with atomic_output(image_path, overwrite=True, suffix=".png") as tmp:
        picture.save(tmp, format="PNG")
    return image_path
