"""The mix of several stems, levelled so that it never clips.

The mix is the plain sum of the stems, scaled by one constant gain chosen after the whole sum
is known: 1 when its peak stays at or below -1 dBFS, else whatever brings the peak to exactly
-1 dBFS. No compression or limiting, so the balance between the objects and their dynamics are
those of the stems; one gain for the whole file, so nothing pumps. A stereo mix sums each stem
into both channels with its pan's gains (:mod:`saganet.soundtrack.pan`), and one gain serves
both channels (the peak is that of either).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from saganet.soundtrack.pan import Pan

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


def level_mix(stems: Sequence[np.ndarray], out: np.ndarray,
              pans: Sequence[Pan] | None = None) -> MixLevel:
    """Write ``gain * sum(stems)`` into ``out``, chunk by chunk (memory-mapped arrays work).

    Args:
        stems: ``(L,)`` float arrays of equal length.
        out: ``(L,)`` float32 array receiving the mix; ``(2, L)`` with ``pans``.
        pans: one per stem: a stereo mix, each stem in the left and right channels with its
            pan's gains.
    """
    length = out.shape[-1]
    if any(len(s) != length for s in stems):
        raise ValueError("stems and mix must have one length")
    if pans is not None and (len(pans) != len(stems) or out.shape != (2, length)):
        raise ValueError("a stereo mix needs a (2, L) output and one pan per stem")
    peak = 0.0
    for i in range(0, length, _CHUNK):
        stop = min(i + _CHUNK, length)
        parts = [np.asarray(s[i:stop], dtype=np.float64) for s in stems]
        if pans is not None:
            parts = [pan.gains(i, stop) * part for pan, part in zip(pans, parts, strict=True)]
        chunk = np.sum(parts, axis=0)
        out[..., i:stop] = chunk
        peak = max(peak, float(np.abs(chunk).max(initial=0.0)))
    gain = mix_gain(peak)
    if gain != 1.0:
        for i in range(0, length, _CHUNK):
            out[..., i : i + _CHUNK] = np.asarray(out[..., i : i + _CHUNK],
                                                  dtype=np.float64) * gain
    return MixLevel(peak, gain)
