"""Mel converter: frame count, pure-tone peak band, 16 kHz log10 compression."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from saganet.codec import MEL_CONFIGS, mel_converter


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
