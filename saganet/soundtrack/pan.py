"""A stereo mix that puts each object where it is in the picture.

The model generates mono sound. For the stereo mix each object's stem is panned by the
horizontal position of its mask: the centre of mass of the mask's pixels, as a fraction of the
frame's width (0 the left edge, 1 the right), on the masks' 25 fps grid. Frames where the mask
is empty hold the last position seen (before the first one, the first seen; an object never
seen stays in the middle). The positions are smoothed by a moving average of
:data:`SMOOTHING_S`, so a mask's ragged edge does not make the sound jitter, and followed
linearly between frames, so the gains never step.

The pan law is equal power: left ``cos(p * pi / 2)``, right ``sin(p * pi / 2)`` for position
``p``, so an object sounds equally loud wherever it is (each channel at -3 dB in the middle)
and the image spans the speakers as the picture spans the screen.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from saganet.media.masks import MaskSource
from saganet.media.video import SYNC_FPS

# Seconds of the moving average over the positions.
SMOOTHING_S = 0.2
# Mask frames read at a time (10 s of uint8 224x224 masks: 12.5 MB).
_READ_FRAMES = 250


def mask_positions(masks: MaskSource, start: float, duration: float) -> np.ndarray:
    """Smoothed horizontal positions in [0, 1] of an object, one per 25 fps mask frame.

    Args:
        masks: the object's masks.
        start: second of the masks where the segment starts.
        duration: seconds of the segment.

    Returns:
        ``(ceil(duration * 25),)`` float64 positions; frame ``k`` is the mask at
        ``start + k / 25``.
    """
    count = max(1, math.ceil(duration * SYNC_FPS - 1e-9))
    found = np.full(count, np.nan)
    for first in range(0, count, _READ_FRAMES):
        last = min(first + _READ_FRAMES, count)
        frames = masks.read(start + first / SYNC_FPS, start + last / SYNC_FPS)
        found[first : first + len(frames)] = _centres(frames)
    return _smoothed(_held(found))


def _centres(frames: torch.Tensor) -> np.ndarray:
    """Each ``(T, 1, H, W)`` mask's centre of mass across its width, as a fraction of the
    width (NaN where the mask is empty)."""
    weights = frames.reshape(len(frames), -1, frames.shape[-1]).double().sum(dim=1)  # (T, W)
    width = weights.shape[1]
    columns = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    total = weights.sum(dim=1)
    centres = (weights * columns).sum(dim=1) / total.clamp(min=1e-12)
    return torch.where(total > 0, centres, torch.nan).numpy()


def _held(positions: np.ndarray) -> np.ndarray:
    """NaNs replaced by the last position before them (the first one, before any); all NaN:
    the middle."""
    seen = np.flatnonzero(~np.isnan(positions))
    if not seen.size:
        return np.full_like(positions, 0.5)
    # For each frame, the index of the last frame seen at or before it (the first seen before).
    last = np.maximum.accumulate(np.where(np.isnan(positions), -1, np.arange(len(positions))))
    return positions[np.where(last < 0, seen[0], last)]


def _smoothed(positions: np.ndarray) -> np.ndarray:
    """A centred moving average of :data:`SMOOTHING_S`, the ends held."""
    half = round(SMOOTHING_S * SYNC_FPS) // 2
    if half == 0 or len(positions) < 2:
        return positions
    padded = np.pad(positions, half, mode="edge")
    return np.convolve(padded, np.full(2 * half + 1, 1 / (2 * half + 1)), mode="valid")


class Pan:
    """The left and right gains of one object's stem, sample by sample.

    Args:
        positions: the object's smoothed positions, one per 25 fps frame of the segment
            (:func:`mask_positions`).
        sample_rate: the stems' rate in Hz.
    """

    def __init__(self, positions: np.ndarray, sample_rate: int) -> None:
        self.positions = np.asarray(positions, dtype=np.float64)
        self.sample_rate = sample_rate
        # Frame k shows the mask of [k / 25, (k + 1) / 25): its position holds at its middle.
        self.times = (np.arange(len(self.positions)) + 0.5) / SYNC_FPS

    def gains(self, first: int, stop: int) -> np.ndarray:
        """``(2, stop - first)`` left and right gains of samples ``first`` to ``stop``."""
        times = np.arange(first, stop) / self.sample_rate
        angle = np.interp(times, self.times, self.positions) * (math.pi / 2)
        return np.stack([np.cos(angle), np.sin(angle)])
