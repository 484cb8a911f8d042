"""Log-mel spectrogram of a waveform, as the VAE was trained on (44.1 kHz and 16 kHz).

Used to encode training audio; inference never computes a mel (it decodes latents).
The filterbank is librosa's Slaney-scale, Slaney-normalised one; frames come from an
uncentred STFT after reflect padding of ``(n_fft - hop) / 2`` samples, so a waveform of
``L`` samples (a multiple of the hop) gives exactly ``L / hop`` frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import librosa
import torch
import torch.nn.functional as F
from torch import nn

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
        basis = librosa.filters.mel(sr=config.sampling_rate, n_fft=config.n_fft,
                                    n_mels=config.num_mels, fmin=config.fmin, fmax=config.fmax)
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

