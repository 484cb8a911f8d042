"""Periodic activations of BigVGAN: Snake and SnakeBeta, with per-channel parameters.

``snake(x) = x + sin²(αx) / α`` and ``snakebeta(x) = x + sin²(αx) / β``. With log-scale
parameters (all published BigVGAN checkpoints) the stored values are ``log α`` and ``log β``.
"""

from __future__ import annotations

import torch
from torch import nn

# Keeps 1 / beta finite when beta underflows.
_NO_DIV_BY_ZERO = 1e-9


class SnakeBeta(nn.Module):
    """``x + sin²(x·α) / (β + 1e-9)`` per channel.

    Args:
        channels: number of channels (axis 1 of the input).
        logscale: parameters are stored as logarithms (exponentiated in forward).
    """

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        # Values come from BigVGAN.init_weights or from a checkpoint.
        self.alpha = nn.Parameter(torch.empty(channels))
        self.beta = nn.Parameter(torch.empty(channels))

    def reset_parameters(self) -> None:
        """α = β = 1 (zeros in log scale)."""
        with torch.no_grad():
            for p in (self.alpha, self.beta):
                p.fill_(0.0 if self.logscale else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T)``."""
        alpha = self.alpha[None, :, None]
        beta = self.beta[None, :, None]
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + (1.0 / (beta + _NO_DIV_BY_ZERO)) * torch.sin(x * alpha).pow(2)

    def forward_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` of ``x`` ``(B, C, ...)`` written into ``out``, one temporary only."""
        alpha, beta = _per_channel(self.alpha, x), _per_channel(self.beta, x)
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return _snake_into(x, alpha, 1.0 / (beta + _NO_DIV_BY_ZERO), out)


class Snake(nn.Module):
    """``x + sin²(x·α) / (α + 1e-9)`` per channel.

    Args:
        channels: number of channels (axis 1 of the input).
        logscale: ``alpha`` is stored as a logarithm.
    """

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.empty(channels))

    def reset_parameters(self) -> None:
        """α = 1 (zero in log scale)."""
        with torch.no_grad():
            self.alpha.fill_(0.0 if self.logscale else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T)``."""
        alpha = self.alpha[None, :, None]
        if self.logscale:
            alpha = alpha.exp()
        return x + (1.0 / (alpha + _NO_DIV_BY_ZERO)) * torch.sin(x * alpha).pow(2)

    def forward_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` of ``x`` ``(B, C, ...)`` written into ``out``, one temporary only."""
        alpha = _per_channel(self.alpha, x)
        if self.logscale:
            alpha = alpha.exp()
        return _snake_into(x, alpha, 1.0 / (alpha + _NO_DIV_BY_ZERO), out)


def _per_channel(param: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ``(C,)`` parameter shaped to broadcast over axis 1 of ``x``."""
    return param.view(1, -1, *([1] * (x.dim() - 2)))


def _snake_into(x: torch.Tensor, alpha: torch.Tensor, scale: torch.Tensor,
                out: torch.Tensor) -> torch.Tensor:
    """``out = x + scale * sin(alpha * x)^2`` with one temporary, squared in place."""
    wave = torch.mul(x, alpha)
    wave.sin_()
    wave.mul_(wave)
    return torch.addcmul(x, wave, scale, out=out)
