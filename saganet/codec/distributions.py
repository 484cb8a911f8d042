"""The VAE posterior: a diagonal Gaussian over latent channels."""

from __future__ import annotations

import torch

# Range of the predicted log-variance, as trained; keeps exp() finite.
LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


class DiagonalGaussianDistribution:
    """Gaussian with per-element mean and variance, split from the encoder's moments.

    Args:
        moments: encoder output with ``2 * C`` channels on axis ``dim``; the first ``C`` are
            the mean, the rest the log-variance (clamped to [-30, 20]).
        dim: the channel axis (1 for the VAE's ``(B, 2C, T)``; -1 for channel-last latents).
    """

    def __init__(self, moments: torch.Tensor, dim: int = 1) -> None:
        self.moments = moments
        self.mean, logvar = torch.chunk(moments, 2, dim=dim)  # each (B, C, T) for dim=1
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``mean + std * eps`` with ``eps ~ N(0, I)`` from ``generator``.

        Args:
            generator: random source (on the tensors' device); the global one when ``None``.
        """
        noise = torch.empty_like(self.mean).normal_(generator=generator)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        """The most likely latent, i.e. the mean."""
        return self.mean
