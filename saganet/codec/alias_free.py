"""Anti-aliased activation for BigVGAN: 2x up-sample, point-wise non-linearity, 2x down-sample.

Follows the alias-free resampling of StyleGAN3 as used by BigVGAN (torch path, not the fused
CUDA kernel). The 12-tap Kaiser-windowed sinc low-pass filters are persistent buffers, so they
load from the vocoder checkpoint; the values computed here only matter for random-weight models.
A fused implementation can replace :class:`AntiAliasedActivation` as long as it keeps the
submodule names ``act``, ``upsample``, ``downsample.lowpass`` (the checkpoint keys).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Resampling ratio and filter length used everywhere in BigVGAN.
RATIO = 2
KERNEL_SIZE = 12


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass filter of shape ``(1, 1, kernel_size)``, summing to one.

    Args:
        cutoff: cutoff frequency as a fraction of the sampling rate (0.25 for ratio 2).
        half_width: transition half-band width, same unit.
        kernel_size: number of taps; even lengths are centred between samples.
    """
    half = kernel_size // 2
    # Kaiser's design formula: attenuation A (dB) from the transition width, then beta.
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    if kernel_size % 2 == 0:
        time = torch.arange(-half, half) + 0.5
    else:
        time = torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    taps = taps / taps.sum()
    return taps.view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """Up-sample by ``ratio`` with a transposed depth-wise low-pass filter (length kept exact).

    Args:
        ratio: up-sampling factor.
        kernel_size: filter taps.
    """

    def __init__(self, ratio: int = RATIO, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__()
        self.ratio = ratio
        # Replicate-pad the input, then trim the transposed convolution's extra output.
        self.pad = kernel_size // ratio - 1
        self.trim_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.trim_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, ratio * T)``."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1),
                                            stride=self.ratio, groups=channels)
        return x[..., self.trim_left:-self.trim_right]


class LowPassFilter1d(nn.Module):
    """Depth-wise low-pass filter with stride (replicate padding keeps ``T / stride`` samples).

    Args:
        stride: decimation factor.
        kernel_size: filter taps.
    """

    def __init__(self, stride: int = RATIO, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__()
        self.stride = stride
        even = kernel_size % 2 == 0
        self.pad_left = kernel_size // 2 - int(even)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / stride, 0.6 / stride,
                                                          kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T / stride)``."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride,
                        groups=channels)


class DownSample1d(nn.Module):
    """Down-sample by ``ratio`` (wraps the filter as ``lowpass`` to keep the checkpoint keys).

    Args:
        ratio: down-sampling factor.
        kernel_size: filter taps.
    """

    def __init__(self, ratio: int = RATIO, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__()
        self.lowpass = LowPassFilter1d(ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T / ratio)``."""
        return self.lowpass(x)


class AntiAliasedActivation(nn.Module):
    """Apply ``activation`` at twice the sampling rate to limit aliasing.

    Args:
        activation: point-wise module on ``(B, C, T)``, e.g. :class:`SnakeBeta`.
    """

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d()
        self.downsample = DownSample1d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T)``."""
        return self.downsample(self.act(self.upsample(x)))
