"""Mel converter: frame count, pure-tone peak band, 16 kHz log10 compression."""

from __future__ import annotations

import subprocess
import sys

import librosa
import numpy as np
import pytest
import torch

from saganet.codec import MEL_CONFIGS, mel_converter
from saganet.codec.mel import slaney_filterbank


def _tone(freq: float, sampling_rate: int, num_samples: int) -> torch.Tensor:
    t = torch.arange(num_samples, dtype=torch.float64) / sampling_rate
    return (0.5 * torch.sin(2 * np.pi * freq * t)).float()[None]  # (1, L)


@pytest.mark.parametrize(("mode", "freq"), [("44k", 440.0), ("44k", 1000.0), ("44k", 5000.0),
                                            ("16k", 300.0), ("16k", 2000.0)])
def test_pure_tone_peaks_in_nearest_band(mode: str, freq: float) -> None:
    config = MEL_CONFIGS[mode]
    mel = mel_converter(mode)(_tone(freq, config.sampling_rate, 16 * config.hop_size))
    peak = int(mel[0].mean(dim=-1).argmax())
    # Band i of an n-band Slaney filterbank is centred on edge i + 1 of n + 2 mel-spaced edges.
    centres = librosa.mel_frequencies(config.num_mels + 2, fmin=config.fmin,
                                      fmax=config.fmax)[1:-1]
    assert peak == int(np.abs(centres - freq).argmin())


def _filterbank_cases() -> list[tuple[int, int, int, float, float]]:
    cases = [(c.sampling_rate, c.n_fft, c.num_mels, c.fmin, c.fmax) for c in MEL_CONFIGS.values()]
    rng = np.random.default_rng(0)
    for _ in range(40):  # band edges on both sides of the scale's 1 kHz knee, odd FFT sizes
        rate = int(rng.choice([8000, 16_000, 22_050, 44_100, 48_000]))
        fmin = float(rng.choice([0.0, rng.uniform(0, 2000)]))
        fmax = float(rng.choice([rate / 2, rng.uniform(fmin + 1, rate / 2)]))
        cases.append((rate, int(rng.choice([255, 512, 1024, 2048])), int(rng.integers(1, 160)),
                      fmin, fmax))
    return cases


@pytest.mark.filterwarnings("ignore:Empty filters detected")
@pytest.mark.parametrize("case", _filterbank_cases())
def test_filterbank_is_librosas_bit_for_bit(case: tuple[int, int, int, float, float]) -> None:
    rate, n_fft, num_mels, fmin, fmax = case
    expected = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax)
    ours = slaney_filterbank(rate, n_fft, num_mels, fmin, fmax)
    assert ours.dtype == expected.dtype and ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


def test_building_a_converter_leaves_librosa_unimported() -> None:
    # Its filters import SciPy's signal package: seconds at the start of every command.
    code = ("import sys; from saganet.codec import mel_converter; mel_converter('44k'); "
            "print(sorted(m for m in ('librosa', 'scipy.signal') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("mode", ["44k", "16k"])
def test_one_frame_per_hop(mode: str) -> None:
    converter = mel_converter(mode)
    hop = converter.hop_length
    mel = converter(torch.zeros(2, 7 * hop))
    assert mel.shape == (2, MEL_CONFIGS[mode].num_mels, 7)
    assert converter.num_frames(7 * hop) == 7


def test_silence_hits_the_floor_in_each_log_base() -> None:
    # Silence: every mel energy is below the 1e-5 clamp, so the output is log(1e-5).
    ln = mel_converter("44k")(torch.zeros(1, 4096))
    log10 = mel_converter("16k")(torch.zeros(1, 4096))
    torch.testing.assert_close(ln, torch.full_like(ln, float(np.log(1e-5))))
    torch.testing.assert_close(log10, torch.full_like(log10, -5.0))


def test_clips_out_of_range_input() -> None:
    converter = mel_converter("44k")
    loud = _tone(1000.0, 44_100, 8 * 512) * 4
    torch.testing.assert_close(converter(loud), converter(loud.clamp(-1, 1)))


def test_non_persistent_buffers_leave_state_dict() -> None:
    assert list(mel_converter("44k").state_dict()) == ["mel_basis", "hann_window"]
    assert list(mel_converter("44k", persistent=False).state_dict()) == []
