"""Magnitude-preserving primitives of the audio VAE (after EDM2, Karras et al. 2024).

The VAE keeps activations at unit RMS by construction: its convolutions carry normalised
weights, its non-linearity and residual sum are rescaled to preserve magnitude. This module owns
those primitives; the blocks built from them live in ``vae_blocks.py``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# Gain that brings SiLU of a unit-variance Gaussian back to unit RMS.
_SILU_RMS = 0.596


def normalize(x: torch.Tensor, dim: int | Sequence[int] | None = None,
              eps: float = 1e-4) -> torch.Tensor:
    """Scale ``x`` to unit RMS over ``dim`` (all but the first axis when ``None``).

    The norm is accumulated in fp32 whatever the dtype of ``x``; ``eps`` keeps all-zero
    slices finite.

    Args:
        x: any tensor.
        dim: axis or axes reduced by the norm.
        eps: added to the RMS before dividing.
    """
    if dim is None:
        dim = list(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True,
                                    dtype=torch.promote_types(x.dtype, torch.float32))
    # RMS = norm / sqrt(number of reduced elements); add eps and rescale in one fused op.
    rms_scale = math.sqrt(norm.numel() / x.numel())
    norm = torch.add(eps, norm, alpha=rms_scale)
    return x / norm.to(x.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU rescaled to preserve unit RMS."""
    return F.silu(x) / _SILU_RMS


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """Blend ``a`` and ``b`` with weight ``t`` on ``b``, rescaled to preserve unit RMS.

    Args:
        a: the residual (weight ``1 - t``).
        b: the branch (weight ``t``).
        t: blend factor in [0, 1].
    """
    # The divisor is a Python (float64) constant, as in the reference, so rounding matches.
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


class MPConv1D(nn.Module):
    """1-D convolution without bias whose weight is normalised once after loading.

    Training (not done here) kept each output filter at unit norm; for inference the
    normalisation ``w / ||w|| / sqrt(fan_in)`` is folded into the stored weight by
    :meth:`remove_weight_norm`, which must run exactly once after the checkpoint is loaded and
    before any forward (checked). The state-dict key stays ``weight``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel length; padding keeps the sequence length.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        # Values come from the owner's init method or from a checkpoint.
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size))
        # Python attribute, not a buffer: checkpoints hold the raw weights, never this flag.
        self.weight_norm_removed = False

    def remove_weight_norm(self) -> MPConv1D:
        """Fold the weight normalisation into ``weight`` (in fp32); later calls do nothing."""
        if self.weight_norm_removed:
            return self
        with torch.no_grad():
            w = self.weight.to(torch.float32)
            w = normalize(w)  # unit RMS per output filter
            w = w / math.sqrt(w[0].numel())  # then unit norm: magnitude-preserving fan-in scale
            self.weight.copy_(w.to(self.weight.dtype))
        self.weight_norm_removed = True
        return self

    def forward(self, x: torch.Tensor, gain: float | torch.Tensor = 1) -> torch.Tensor:
        """Convolve ``x (B, C_in, T)`` to ``(B, C_out, T)``, scaling the weight by ``gain``."""
        if not self.weight_norm_removed:
            raise RuntimeError("MPConv1D: call remove_weight_norm() after loading the weights "
                               "and before the first forward")
        w = self.weight * gain
        return F.conv1d(x, w, padding=w.shape[-1] // 2)

    def extra_repr(self) -> str:
        out_channels, in_channels, kernel_size = self.weight.shape
        return f"{in_channels}, {out_channels}, kernel_size={kernel_size}"
