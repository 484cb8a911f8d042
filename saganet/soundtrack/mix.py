"""The mix of several stems, levelled so that it never clips.

The mix is the plain sum of the stems, scaled by one constant gain chosen after the whole sum
is known: 1 when its peak stays at or below -1 dBFS, else whatever brings the peak to exactly
-1 dBFS. No compression or limiting, so the balance between the objects and their dynamics are
those of the stems; one gain for the whole file, so nothing pumps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Headroom of the mix's peak: -1 dBFS.
MIX_PEAK = 10 ** (-1 / 20)
_CHUNK = 1 << 18


@dataclass(frozen=True)
class MixLevel:
    """How a mix was levelled.

    Args:
        peak: peak absolute value of the plain sum.
        gain: the factor applied to the sum.
    """

    peak: float
    gain: float


def mix_gain(peak: float) -> float:
    """The gain that keeps a sum with this peak at or below :data:`MIX_PEAK`."""
    return 1.0 if peak <= MIX_PEAK else MIX_PEAK / peak


def level_mix(stems: Sequence[np.ndarray], out: np.ndarray) -> MixLevel:
    """Write ``gain * sum(stems)`` into ``out``, chunk by chunk (memory-mapped arrays work).

    Args:
        stems: ``(L,)`` float arrays of equal length.
        out: ``(L,)`` float32 array receiving the mix.
    """
    length = len(out)
    if any(len(s) != length for s in stems):
        raise ValueError("stems and mix must have one length")
    peak = 0.0
    for i in range(0, length, _CHUNK):
        chunk = np.sum([np.asarray(s[i : i + _CHUNK], dtype=np.float64) for s in stems], axis=0)
        out[i : i + _CHUNK] = chunk
        peak = max(peak, float(np.abs(chunk).max(initial=0.0)))
    gain = mix_gain(peak)
    if gain != 1.0:
        for i in range(0, length, _CHUNK):
            out[i : i + _CHUNK] = np.asarray(out[i : i + _CHUNK], dtype=np.float64) * gain
    return MixLevel(peak, gain)
