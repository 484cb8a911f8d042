"""Log-mel spectrogram of a waveform, as the VAE was trained on (44.1 kHz and 16 kHz).

Used to encode training audio; inference never computes a mel (it decodes latents).
The filterbank is librosa's Slaney-scale, Slaney-normalised one (:func:`slaney_filterbank`
computes the same numbers without importing librosa, whose filters pull in SciPy's signal
package: two seconds at every start of a program that builds a codec). Frames come from an
uncentred STFT after reflect padding of ``(n_fft - hop) / 2`` samples, so a waveform of
``L`` samples (a multiple of the hop) gives exactly ``L / hop`` frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (a factor
# of 6.4 every 27 mels).
_LINEAR_HZ_PER_MEL = 200.0 / 3
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0

# Floors: magnitude offset inside the square root and mel-energy clamp before the log.
_MAGNITUDE_EPS = 1e-9
_MEL_FLOOR = 1e-5


@dataclass(frozen=True)
class MelConfig:
    """STFT and filterbank settings of one mel converter.

    Args:
        sampling_rate: audio rate in Hz.
        n_fft: FFT size.
        num_mels: mel bands.
        hop_size: samples between frames.
        win_size: Hann window length.
        fmin: lowest filter edge in Hz.
        fmax: highest filter edge in Hz.
        log: compression, natural ("ln", 44.1 kHz) or decimal ("log10", 16 kHz) logarithm.
    """

    sampling_rate: int
    n_fft: int
    num_mels: int
    hop_size: int
    win_size: int
    fmin: float
    fmax: float
    log: Literal["ln", "log10"]

    def __post_init__(self) -> None:
        if self.log not in ("ln", "log10"):
            raise ValueError(f"log must be 'ln' or 'log10', got {self.log!r}")
        if (self.n_fft - self.hop_size) % 2:
            raise ValueError("n_fft - hop_size must be even (symmetric reflect padding)")

    def to_dict(self) -> dict:
        """Plain dict for saving inside checkpoints."""
        return dataclasses.asdict(self)


MEL_CONFIGS: dict[str, MelConfig] = {
    "44k": MelConfig(sampling_rate=44_100, n_fft=2048, num_mels=128, hop_size=512, win_size=2048,
                     fmin=0.0, fmax=44_100 / 2, log="ln"),
    "16k": MelConfig(sampling_rate=16_000, n_fft=1024, num_mels=80, hop_size=256, win_size=1024,
                     fmin=0.0, fmax=8_000.0, log="log10"),
}


T = TypeVar("T")


def named_mode(table: Mapping[str, T], mode: str, what: str) -> T:
    """Look up a codec size by mode; SAGANet's "44k_sa" is MMAudio's "44k".

    Args:
        table: settings by mode name.
        mode: the requested mode.
        what: what is looked up, for the error message.
    """
    key = "44k" if mode == "44k_sa" else mode
    if key not in table:
        raise ValueError(f"unknown {what} mode {mode!r}; choose from {sorted(table)}")
    return table[key]


def mel_config(mode: str) -> MelConfig:
    """The named mel settings: "44k" (also "44k_sa") or "16k"."""
    return named_mode(MEL_CONFIGS, mode, "mel")


def hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Frequencies in Hz -> Slaney mels (float64)."""
    hz = np.asarray(hz, dtype=np.float64)
    above = hz >= _LOG_START_HZ
    # np.maximum keeps the logarithm's argument positive where the linear branch is chosen.
    logarithmic = _LOG_START_MEL + np.log(np.maximum(hz, _LOG_START_HZ) / _LOG_START_HZ) / _LOG_STEP
    return np.where(above, logarithmic, hz / _LINEAR_HZ_PER_MEL)


def slaney_mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Slaney mels -> frequencies in Hz (float64)."""
    mels = np.asarray(mels, dtype=np.float64)
    above = mels >= _LOG_START_MEL
    logarithmic = _LOG_START_HZ * np.exp(_LOG_STEP * (np.maximum(mels, _LOG_START_MEL)
                                                      - _LOG_START_MEL))
    return np.where(above, logarithmic, _LINEAR_HZ_PER_MEL * mels)


def slaney_filterbank(sampling_rate: int, n_fft: int, num_mels: int, fmin: float,
                      fmax: float) -> np.ndarray:
    """Triangular mel filters ``(num_mels, n_fft // 2 + 1)``, float32, the values of
    ``librosa.filters.mel`` (Slaney scale and area normalisation; ``tests/codec/test_mel.py``
    checks they are bit for bit the same).

    Filter ``i`` rises from edge ``i`` to edge ``i + 1`` and falls to edge ``i + 2`` of
    ``num_mels + 2`` edges evenly spaced in mels from ``fmin`` to ``fmax``, and is scaled by
    ``2 / (edge[i + 2] - edge[i])`` (in Hz) so that every filter has the same area.
    """
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sampling_rate)
    low, high = hz_to_slaney_mel(np.array([fmin, fmax]))
    edges = slaney_mel_to_hz(np.linspace(low, high, num_mels + 2))
    widths = np.diff(edges)
    offsets = edges[:, None] - bins[None, :]  # (edges, bins)
    rising = -offsets[:num_mels] / widths[:num_mels, None]
    falling = offsets[2:] / widths[1:, None]
    # Rounded to float32 before the scaling, as librosa stores the triangles first.
    triangles = np.maximum(0, np.minimum(rising, falling)).astype(np.float32)
    scale = 2.0 / (edges[2:] - edges[:num_mels])
    return (triangles * scale[:, None]).astype(np.float32)


class MelConverter(nn.Module):
    """Waveform ``(B, L)`` in [-1, 1] -> log-mel ``(B, num_mels, L / hop)``.

    Args:
        config: STFT and filterbank settings.
        persistent: keep ``mel_basis``/``hann_window`` in the state dict (as the reference
            module does); owners that must not add keys to their checkpoints pass ``False``.
            The buffers are recomputed from ``config`` either way.
    """

    def __init__(self, config: MelConfig, persistent: bool = True) -> None:
        super().__init__()
        self.config = config
        basis = slaney_filterbank(config.sampling_rate, config.n_fft, config.num_mels,
                                  config.fmin, config.fmax)
        self.register_buffer("mel_basis", torch.as_tensor(basis, dtype=torch.float32),
                             persistent=persistent)  # (num_mels, n_fft / 2 + 1)
        self.register_buffer("hann_window", torch.hann_window(config.win_size),
                             persistent=persistent)  # periodic

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_size

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` samples."""
        return (num_samples - self.config.hop_size) // self.config.hop_size + 1

    def forward(self, waveform: torch.Tensor, center: bool = False) -> torch.Tensor:
        """Log-mel ``(B, num_mels, F)`` (fp32) of ``waveform (B, L)``.

        Args:
            waveform: audio at ``config.sampling_rate``; values outside [-1, 1] are clipped.
            center: additionally let ``torch.stft`` reflect-pad ``n_fft / 2`` samples per side
                (not used by SAGANet; kept for parity with the reference converter).
        """
        cfg = self.config
        # Always fp32: torch.stft has no reduced-precision CPU kernels, and the VAE was trained
        # on fp32 mels; the buffers may have been cast along with an owning module.
        waveform = waveform.to(self.mel_basis.device, torch.float32).clamp(-1.0, 1.0)
        pad = (cfg.n_fft - cfg.hop_size) // 2
        waveform = F.pad(waveform.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(waveform, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size,
                          window=self.hann_window.float(), center=center, pad_mode="reflect",
                          normalized=False, onesided=True, return_complex=True)  # (B, n_fft/2+1, F)
        spec = torch.view_as_real(spec)
        magnitude = torch.sqrt(spec.pow(2).sum(-1) + _MAGNITUDE_EPS)
        mel = torch.matmul(self.mel_basis.float(), magnitude)  # (B, num_mels, F)
        mel = mel.clamp(min=_MEL_FLOOR)
        return torch.log(mel) if cfg.log == "ln" else torch.log10(mel)


def mel_converter(mode: str, persistent: bool = True) -> MelConverter:
    """The mel converter the VAE of ``mode`` ("44k", "44k_sa" or "16k") was trained on.

    Args:
        mode: sampling-rate family.
        persistent: see :class:`MelConverter`.
    """
    return MelConverter(mel_config(mode), persistent=persistent)

