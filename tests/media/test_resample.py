"""Resampling finished sound (``saganet.media.resample``): lengths, block-wise equals
whole, and what the filter keeps and removes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from saganet.media import resample
from saganet.media.resample import lowpass, resample_into, resampled_length
from saganet.soundtrack.request import OUTPUT_RATES

MODEL_RATE = 44100
OTHER_RATES = [r for r in OUTPUT_RATES if r != MODEL_RATE]


def _resampled(samples: np.ndarray, rate_out: int) -> np.ndarray:
    out = np.zeros((*samples.shape[:-1], resampled_length(samples.shape[-1], MODEL_RATE,
                                                           rate_out)), np.float32)
    resample_into(samples, MODEL_RATE, rate_out, out)
    return out


@pytest.mark.parametrize("rate_out", OTHER_RATES)
def test_blocks_give_the_whole_array_s_result(rate_out, tmp_path, monkeypatch):
    rng = np.random.default_rng(rate_out)
    stereo = rng.standard_normal((2, 3 * MODEL_RATE // 7 + 13)).astype(np.float32)
    up, down = rate_out // np.gcd(rate_out, MODEL_RATE), MODEL_RATE // np.gcd(rate_out,
                                                                               MODEL_RATE)
    whole = resample_poly(stereo.astype(np.float64), up, down, axis=-1,
                          window=lowpass(MODEL_RATE, rate_out)).astype(np.float32)
    assert whole.shape[-1] == resampled_length(stereo.shape[-1], MODEL_RATE, rate_out)
    # Blocks of a few periods of the ratio, many more than the filter's reach.
    monkeypatch.setattr(resample, "BLOCK", 3 * down)
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32,
                                    shape=whole.shape)
    resample_into(np.lib.format.open_memmap(_save(tmp_path / "in.npy", stereo), mode="r"),
                  MODEL_RATE, rate_out, out)
    np.testing.assert_array_equal(out, whole)
    # Mono goes the same way as each channel.
    np.testing.assert_array_equal(_resampled(stereo[1], rate_out), whole[1])


def _save(path, array):
    np.save(path, array)
    return path


@pytest.mark.parametrize("rate_out", OTHER_RATES)
def test_tones_below_the_lower_nyquist_pass_and_those_above_go(rate_out):
    nyquist = min(MODEL_RATE, rate_out) / 2
    length = MODEL_RATE  # one second
    t = np.arange(length) / MODEL_RATE
    middle = slice(length // 4 * rate_out // MODEL_RATE, 3 * length // 4 * rate_out // MODEL_RATE)
    for frequency in (997.0, 0.85 * nyquist):
        tone = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
        out = _resampled(tone, rate_out)
        expected = 0.5 * np.sin(2 * np.pi * frequency * np.arange(len(out)) / rate_out)
        # In time (zero phase) and at its level: within -80 dB of the tone.
        assert np.abs(out[middle] - expected[middle]).max() < 0.5e-4, frequency
    if rate_out < MODEL_RATE:
        # Above the output's Nyquist frequency: it would fold back; at least 90 dB down.
        tone = np.sin(2 * np.pi * 1.05 * nyquist * t).astype(np.float32)
        assert np.abs(_resampled(tone, rate_out)[middle]).max() < 10 ** (-90 / 20)


def test_same_rate_copies_and_wrong_shapes_are_refused():
    samples = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    out = np.zeros_like(samples)
    resample_into(samples, MODEL_RATE, MODEL_RATE, out)
    np.testing.assert_array_equal(out, samples)
    with pytest.raises(ValueError, match="resampled output"):
        resample_into(samples, MODEL_RATE, OTHER_RATES[0], out)
