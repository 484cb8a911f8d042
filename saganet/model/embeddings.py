"""Sinusoidal timestep embedding of the flow time t in [0, 1], followed by an MLP."""

from __future__ import annotations

import torch
from torch import nn


def timestep_frequencies(size: int, max_period: float, device: torch.device | None = None,
                         ) -> torch.Tensor:
    """``size // 2`` frequencies ``10000 / max_period / 10000^(2i / size)`` in fp32.

    Args:
        size: embedding size (cos and sin halves together).
        max_period: 10000 for v1 networks, 1 for v2 (which multiplies every frequency by 1e4).
        device: where to build them.
    """
    half = size // 2
    freqs = 1.0 / (10000 ** (torch.arange(half, dtype=torch.float32, device=device) / half))
    return freqs * (10000 / max_period)


class TimestepEmbedder(nn.Module):
    """``t -> MLP([cos(t f), sin(t f)])``; t is used unscaled (no x1000).

    ``freqs`` is a non-persistent buffer: it is not in checkpoints, but ``.to(dtype)`` casts it
    like any buffer (the reference's bf16 demo therefore sees bf16-rounded frequencies).

    Args:
        dim: output width D.
        frequency_size: embedding size before the MLP (256 for v1, D for v2).
        max_period: see :func:`timestep_frequencies`.
    """

    def __init__(self, dim: int, frequency_size: int = 256, max_period: float = 10000) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(frequency_size, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.register_buffer("freqs", timestep_frequencies(frequency_size, max_period),
                             persistent=False)

    def reset_frequencies(self) -> None:
        """Recompute ``freqs`` (fp32) in place, keeping the buffer's device and dtype."""
        fresh = timestep_frequencies(self.frequency_size, self.max_period, self.freqs.device)
        self.freqs = fresh.to(self.freqs.dtype)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``t`` of shape ``(B,)`` into ``(B, D)``."""
        # fp32 arguments even with bf16 frequencies (type promotion), as in the reference.
        args = t[:, None].float() * self.freqs[None]  # (B, F/2)
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(t.dtype)  # (B, F)
        return self.mlp(embedding)
