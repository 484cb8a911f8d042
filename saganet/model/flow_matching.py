"""Rectified-flow matching: interpolation, regression target, loss, training time
distribution, and the ODE solvers that turn noise into latents.

Convention: noise at t = 0, data at t = 1; ``x_t = (1 - (1 - min_sigma) t) x0 + t x1``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``f(t, x) -> v``: t is a 0-d tensor, x and v have the latent's shape."""

METHODS = ("euler", "adaptive")


@dataclass
class FlowMatching:
    """Flow-matching objective and samplers.

    Args:
        min_sigma: noise left at t = 1 (0 in every SAGANet/MMAudio config).
        method: ``"euler"`` (fixed steps, the default everywhere) or ``"adaptive"``
            (torchdiffeq dopri5; ``num_steps`` is ignored).
        num_steps: Euler steps.
        t_mean: mean of the logit-normal training time distribution.
        t_scale: scale of the logit-normal training time distribution.
        rtol: relative tolerance of the adaptive solver.
        atol: absolute tolerance of the adaptive solver.
    """

    min_sigma: float = 0.0
    method: str = "euler"
    num_steps: int = 25
    t_mean: float = 0.0
    t_scale: float = 1.0
    rtol: float = 1e-7
    atol: float = 1e-9

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown sampling method {self.method!r}; choose one of {METHODS}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be positive, got {self.num_steps}")

    def get_conditional_flow(self, x0: torch.Tensor, x1: torch.Tensor,
                             t: torch.Tensor) -> torch.Tensor:
        """The point ``x_t`` between noise ``x0`` and data ``x1``.

        Args:
            x0: ``(B, ...)`` noise.
            x1: ``(B, ...)`` normalised data latents.
            t: ``(B,)`` times in [0, 1].
        """
        t = t.view(-1, *([1] * (x0.dim() - 1)))  # (B, 1, 1)
        return (1 - (1 - self.min_sigma) * t) * x0 + t * x1

    def target(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """The velocity the network regresses: ``x1 - (1 - min_sigma) x0``."""
        return x1 - (1 - self.min_sigma) * x0

    def loss(self, pred_v: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Per-sample squared error, averaged over every non-batch axis.

        Args:
            pred_v: ``(B, ...)`` predicted velocity.
            x0: ``(B, ...)`` noise.
            x1: ``(B, ...)`` data.

        Returns:
            ``(B,)``; the training objective is its mean.
        """
        error = (pred_v - self.target(x0, x1)).pow(2)
        return error.mean(dim=tuple(range(1, error.dim())))

    def sample_t(self, batch: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Training times ``sigmoid(t_mean + t_scale * n)``, n ~ N(0, 1) (logit-normal).

        Args:
            batch: number of times.
            generator: the random generator (the trainer's, for reproducible runs).
            device: where to draw them (must match the generator's device).
        """
        noise = torch.randn(batch, generator=generator, device=device)
        return torch.sigmoid(self.t_mean + self.t_scale * noise)

    def to_data(self, fn: VelocityFn, x0: torch.Tensor) -> torch.Tensor:
        """Integrate from noise (t = 0) to data (t = 1 - min_sigma).

        Args:
            fn: velocity function ``f(t, x)``.
            x0: initial noise.
        """
        return self._solve(fn, x0, 0.0, 1.0 - self.min_sigma)

    def to_prior(self, fn: VelocityFn, x1: torch.Tensor) -> torch.Tensor:
        """Integrate backwards from data (t = 1) to noise (t = -min_sigma).

        Args:
            fn: velocity function ``f(t, x)``.
            x1: data latents.
        """
        return self._solve(fn, x1, 1.0, 0.0 - self.min_sigma)

    def _solve(self, fn: VelocityFn, x: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
        if self.method == "euler":
            return euler(fn, x, torch.linspace(t0, t1, self.num_steps + 1))
        log.info("adaptive sampling ignores num_steps=%d", self.num_steps)
        return adaptive(fn, x, t0, t1, rtol=self.rtol, atol=self.atol)


def euler(fn: VelocityFn, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Explicit Euler on a time grid; ``fn`` is never evaluated at the last grid point.

    Step sizes are differences of the fp32 grid values and ``dt * v`` is formed in ``v``'s
    dtype before it is added to ``x`` (bf16 under autocast), as in the reference.

    Args:
        fn: velocity function ``f(t, x)``.
        x: initial state.
        grid: ``(S + 1,)`` increasing or decreasing times (``torch.linspace``, fp32, CPU).
    """
    for t, t_next in itertools.pairwise(grid):
        x = x + (t_next - t) * fn(t, x)
    return x


def adaptive(fn: VelocityFn, x: torch.Tensor, t0: float, t1: float, *, rtol: float = 1e-7,
             atol: float = 1e-9) -> torch.Tensor:
    """Dormand-Prince (dopri5) from ``t0`` to ``t1``; returns only the final state.

    (The reference returns torchdiffeq's stacked ``(2, ...)`` trajectory of the start and end
    states; only the end state is of use.)

    Args:
        fn: velocity function ``f(t, x)``.
        x: initial state.
        t0: start time.
        t1: end time.
        rtol: relative tolerance.
        atol: absolute tolerance.
    """
    from torchdiffeq import odeint  # optional dependency, only needed here

    times = torch.tensor([t0, t1], dtype=torch.float32, device=x.device)
    return odeint(fn, x, times, method="dopri5", rtol=rtol, atol=atol)[-1]
