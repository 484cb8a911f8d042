"""Anti-aliased activation for BigVGAN: 2x up-sample, point-wise non-linearity, 2x down-sample.

Follows the alias-free resampling of StyleGAN3 as used by BigVGAN (torch path, not the fused
CUDA kernel). The 12-tap Kaiser-windowed sinc low-pass filters are persistent buffers, so they
load from the vocoder checkpoint; the values computed here only matter for random-weight models.
A fused implementation can replace :class:`AntiAliasedActivation` as long as it keeps the
submodule names ``act``, ``upsample``, ``downsample.lowpass`` (the checkpoint keys).

At inference (no gradient) the activation runs by default (``fused``) a cheaper but
equivalent sequence that never builds the up-sampled signal: the up-sampling as a polyphase
filter (each output phase is a short filter over the input, instead of a transposed convolution
over a zero-stuffed signal), the Snake on each phase written straight into a replicate-padded
buffer, and the down-sampling as the sum of one stride-1 filter per phase. The values are those
of the reference sequence up to float rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from saganet.codec.snake import Snake, SnakeBeta

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
        self._phase_taps, self._phase_pads = self._polyphase_layout(kernel_size)
        self.polyphase = True

    def _polyphase_layout(self, kernel_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Which filter tap each output phase applies to which input offset.

        Output ``ratio * a + s`` of the trimmed transposed convolution is the sum over input
        offsets ``o`` of ``x[a + o - pad] * filter[s + trim_left - ratio * o]`` (taps in range).

        Returns:
            ``(ratio, W)`` tap index per phase and window position (``kernel_size``: no tap,
            a zero), and the (left, right) replicate padding that makes the windows fit.
        """
        r, lead = self.ratio, self.trim_left
        offsets = {s: [o for o in range(-kernel_size, 2 * kernel_size)
                       if 0 <= s + lead - r * o < kernel_size] for s in range(r)}
        low = min(min(o) for o in offsets.values())
        high = max(max(o) for o in offsets.values())
        # Sample `a` of phase `s` reads inputs `a - left .. a + right`.
        self.phase_reach = [(self.pad - min(o), max(o) - self.pad) for o in offsets.values()]
        taps = torch.full((r, high - low + 1), kernel_size, dtype=torch.long)
        for s, phase_offsets in offsets.items():
            for o in phase_offsets:
                taps[s, o - low] = s + lead - r * o
        return taps, (self.pad - low, high - self.pad)

    def phases(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The up-sampled signal as ``ratio`` phases, each ``(B, C, T)`` (polyphase filter).

        Output sample ``ratio * a + s`` of :meth:`forward` is ``phases[s][..., a]``.
        """
        channels = x.shape[1]
        # The transposed convolution's gain `ratio` is folded into the taps (exact for 2).
        taps = torch.cat([self.filter.view(-1), self.filter.new_zeros(1)])
        taps = self.ratio * taps[self._phase_taps.to(x.device)]  # (ratio, W)
        left, right = self._phase_pads
        x = F.pad(x, (left, right), mode="replicate")
        # One depth-wise filter per phase: oneDNN runs these about four times faster than a
        # single grouped convolution with `ratio` outputs per group.
        return [F.conv1d(x, phase_taps.expand(channels, 1, -1), groups=channels)
                for phase_taps in taps]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, ratio * T)``."""
        if self.polyphase:
            return torch.stack(self.phases(x), dim=-1).flatten(2)
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
        self.phase_layout = self._phase_layout(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T / stride)``."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride,
                        groups=channels)

    def _phase_layout(self, kernel_size: int) -> list[tuple[slice, int, int]]:
        """How :meth:`forward` of an interleaved signal splits over its ``stride`` phases.

        With ``z[stride * a + s] = phase_s[a]``, output ``n`` sums, for each phase ``s``, the
        taps ``pad_left + s + stride * d`` applied to ``phase_s[n + d]`` (``d`` from ``-left``
        to ``right``), out-of-range samples replicated from ``z``'s ends.

        Returns:
            per phase: its taps as a strided slice of the filter (in ``d`` order), left and
            right padding.
        """
        layout = []
        for s in range(self.stride):
            offsets = [(k - self.pad_left - s) // self.stride for k in range(kernel_size)
                       if (k - self.pad_left - s) % self.stride == 0]
            first = self.pad_left + s + self.stride * offsets[0]
            taps = slice(first, first + self.stride * len(offsets), self.stride)
            layout.append((taps, -offsets[0], offsets[-1]))
        return layout

    def padded_phases(self, like: torch.Tensor, length: int) -> list[tuple[torch.Tensor,
                                                                           torch.Tensor]]:
        """Empty padded buffers for :meth:`filter_phases`, each with its ``length`` core.

        Args:
            like: a ``(B, C, ...)`` tensor giving batch, channels, dtype and device.
            length: samples per phase.

        Returns:
            per phase: the ``(B, C, left + length + right)`` buffer and its core view to fill.
        """
        batch, channels = like.shape[:2]
        buffers = []
        for _, left, right in self.phase_layout:
            buffer = like.new_empty(batch, channels, left + length + right)
            buffers.append((buffer, buffer[..., left:left + length]))
        return buffers

    def filter_phases(self, buffers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """:meth:`forward` of the interleaved phases held in the cores of ``buffers``.

        Decimating phase by phase never builds the interleaved signal, and each phase is a
        plain depth-wise filter with stride 1 (oneDNN's fast case). Fills the padding.

        Args:
            buffers: from :meth:`padded_phases`, cores filled with the phases.

        Returns:
            ``(B, C, length)``.
        """
        first = buffers[0][1][..., :1]  # z[0]
        last = buffers[-1][1][..., -1:]  # z[-1]
        taps_all = self.filter.view(-1)
        out = None
        for (buffer, _), (taps, left, right) in zip(buffers, self.phase_layout, strict=True):
            buffer[..., :left] = first
            buffer[..., buffer.shape[-1] - right:] = last
            weight = taps_all[taps].expand(buffer.shape[1], 1, -1)
            phase = F.conv1d(buffer, weight, groups=buffer.shape[1])
            out = phase if out is None else out.add_(phase)
        return out


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
        self.fused = True

    @property
    def radius(self) -> int:
        """Input samples on either side that one output sample can depend on.

        Output ``n`` reads samples ``n - left .. n + right`` of each up-sampled phase
        (the decimation layout), and sample ``a`` of a phase reads input samples around ``a``
        (the polyphase layout); the two reaches add phase by phase.
        """
        layout = self.downsample.lowpass.phase_layout
        return max(max(up_left + down_left, up_right + down_right)
                   for (up_left, up_right), (_, down_left, down_right)
                   in zip(self.upsample.phase_reach, layout, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T)``."""
        # The fused sequence writes in place, so it serves inference only (the codec is frozen).
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.act.parameters()))
        # Under torch.compile the reference sequence: the compiler fuses it by itself, and
        # tracing a hundred in-place sequences of views exhausts its recursion limit.
        lowpass = self.downsample.lowpass
        if (needs_grad or torch.compiler.is_compiling()
                or not (self.fused and isinstance(self.act, (Snake, SnakeBeta)))
                or lowpass.stride != self.upsample.ratio):
            return self.downsample(self.act(self.upsample(x)))
        buffers = lowpass.padded_phases(x, x.shape[-1])
        for phase, (_, core) in zip(self.upsample.phases(x), buffers, strict=True):
            self.act.forward_into(phase, core)
        return lowpass.filter_phases(buffers)
