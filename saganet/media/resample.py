"""Changing the sampling rate of finished sound, for files at the rate of the user's project.

The model makes 44.1 kHz; video and post-production sessions mostly run at 48 kHz, and other
tools want 16, 22.05 or 96 kHz. Sound is resampled here by a polyphase FIR filter (SciPy's
``resample_poly``, zero phase: sample ``j`` of the output sits at time ``j / rate_out`` of the
input) with a Kaiser-windowed low-pass designed for the pair of rates: flat to 91 % of the
lower Nyquist frequency (20 kHz for 44.1 kHz), at least 100 dB down from that Nyquist
frequency on, so that nothing folds back into the audible band. SciPy's default filter would
start rolling off near 19 kHz and stop only 50 dB down.

Long sound (memory-mapped stems of a long video) goes through in blocks, each with enough of
its neighbours for the filter to see everything it reaches: the result is the one of the
whole array at once, and memory does not grow with the length.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# Where the filter's pass band ends and it is fully down, as fractions of the lower of the
# two Nyquist frequencies, and how far down it is (dB).
PASS_EDGE = 0.91
STOP_EDGE = 1.0
ATTENUATION_DB = 100.0
# Input samples per block (rounded to whole periods of the rate ratio).
BLOCK = 1 << 20


def _ratio(rate_in: int, rate_out: int) -> tuple[int, int]:
    gcd = math.gcd(rate_in, rate_out)
    return rate_out // gcd, rate_in // gcd


@lru_cache(maxsize=8)
def lowpass(rate_in: int, rate_out: int) -> np.ndarray:
    """The FIR low-pass that resamples ``rate_in`` to ``rate_out``, at ``up x rate_in``
    (``up``: the ratio's numerator): odd length, symmetric, unit gain in the pass band."""
    # Imported here: importing the library stays light (SciPy's signal package takes a second).
    from scipy.signal import firwin

    up, _ = _ratio(rate_in, rate_out)
    fast = up * rate_in
    nyquist = min(rate_in, rate_out) / 2
    width = (STOP_EDGE - PASS_EDGE) * nyquist
    # Kaiser's formulas for the window's shape and length at this attenuation and width.
    beta = 0.1102 * (ATTENUATION_DB - 8.7)
    taps = math.ceil((ATTENUATION_DB - 7.95) / (2.285 * 2 * math.pi * width / fast)) + 1
    taps += 1 - taps % 2
    cutoff = (PASS_EDGE + STOP_EDGE) / 2 * nyquist
    return firwin(taps, cutoff, window=("kaiser", beta), fs=fast)


def resampled_length(length: int, rate_in: int, rate_out: int) -> int:
    """Samples of ``length`` input samples at ``rate_out``: every output time within the
    input's span (``ceil(length x rate_out / rate_in)``)."""
    up, down = _ratio(rate_in, rate_out)
    return -(-length * up // down)


def resample_into(samples: np.ndarray, rate_in: int, rate_out: int, out: np.ndarray) -> None:
    """Resample ``samples`` (``(L,)`` or ``(C, L)``, may be memory-mapped) into ``out``
    (``(resampled_length(L),)`` or ``(C, ...)``, float32, may be memory-mapped), a block at a
    time.

    Raises:
        ValueError: ``out`` has another shape.
    """
    length = samples.shape[-1]
    expected = (*samples.shape[:-1], resampled_length(length, rate_in, rate_out))
    if out.shape != expected:
        raise ValueError(f"resampled output must be {expected}, got {out.shape}")
    if rate_in == rate_out:
        out[...] = samples
        return
    from scipy.signal import resample_poly

    up, down = _ratio(rate_in, rate_out)
    taps = lowpass(rate_in, rate_out)
    # Blocks start on whole periods (input k x down is output k x up); the context either
    # side covers the filter's half length in input samples, also whole periods.
    reach = (len(taps) // 2) // up + 2
    context = -(-reach // down) * down
    block = max(1, BLOCK // down) * down
    for start in range(0, length, block):
        stop = min(start + block, length)
        first, last = max(0, start - context), min(length, stop + context)
        piece = resample_poly(np.asarray(samples[..., first:last], np.float64), up, down,
                              axis=-1, window=taps)
        skip = (start - first) // down * up
        begin, end = start // down * up, min(-(-stop * up // down), out.shape[-1])
        out[..., begin:end] = piece[..., skip : skip + end - begin]
