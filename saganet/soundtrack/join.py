"""Joining overlapping windows into one signal: weights, and the velocity fusion of joint
sampling.

Every window gets a raw weight that rises over its overlap with the previous window and falls
over its overlap with the next one, as a quarter sine: ``sin(pi/2 * x)``. Two windows meeting
over an overlap thus have raw weights ``cos`` and ``sin`` of the same angle. Normalised:

* **equal power** (``w_i = r_i / sqrt(sum r_j^2)``): the crossfade of independently sampled
  windows, whose overlaps are different signals: their powers add up to one;
* **equal amplitude** (``w_i = r_i^2 / sum r_j^2``, a partition of unity): for signals that
  are equal in the overlap, as after joint sampling.

A window missing from the sum (an object hidden there) still counts in the normalisation as
silence, so the neighbours fade out towards it instead of jumping to silence.

Joint sampling advances all windows of a segment through the same Euler steps; after each
velocity evaluation the velocities of all windows are averaged position by position on the
segment's latent grid with the equal-amplitude weights, and every window takes the average
back. As the initial noise is also cut from one noise sequence of the whole segment, the
windows hold identical latents wherever they overlap, at every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from saganet.soundtrack.plan import WindowPlan

JOIN_METHODS = ("joint", "crossfade")


def _raw_ramp(length: int, rise: int, fall: int) -> torch.Tensor:
    """``(length,)`` float64: a quarter sine over the first ``rise`` and last ``fall`` points."""
    ramp = torch.ones(length, dtype=torch.float64)
    positions = torch.arange(length, dtype=torch.float64)
    if rise > 0:
        ramp = ramp * torch.sin(math.pi / 2 * torch.clamp((positions + 0.5) / rise, max=1.0))
    if fall > 0:
        ramp = ramp * torch.sin(math.pi / 2 * torch.clamp((length - positions - 0.5) / fall,
                                                          max=1.0))
    return ramp


def _spans(plan: WindowPlan, per_latent: int | None) -> list[tuple[int, int]]:
    scale = plan.samples_per_latent if per_latent is None else per_latent
    return [(s.start * scale, s.stop * scale) for s in map(plan.latent_span, plan.windows)]


def _raw_weights(spans: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Each window's raw weight over its own span."""
    weights = []
    for i, (start, stop) in enumerate(spans):
        rise = spans[i - 1][1] - start if i > 0 else 0
        fall = stop - spans[i + 1][0] if i + 1 < len(spans) else 0
        weights.append(_raw_ramp(stop - start, max(rise, 0), max(fall, 0)))
    return weights


def join_weights(plan: WindowPlan, *, equal_power: bool, per_latent: int | None = None,
                 present: Sequence[bool] | None = None) -> list[torch.Tensor]:
    """Per-window weights over each window's span, float64.

    Args:
        plan: the windows.
        equal_power: normalise powers (crossfade) instead of amplitudes (joint sampling).
        per_latent: points of the grid per latent: 1 for the latent grid, 2 for the mel
            frames of the 44.1 kHz codec (None: the sample grid).
        present: which windows take part in the normalisation (default: all). Absent windows
            drop out entirely, as opposed to silent windows, which are present with no signal.
    """
    spans = _spans(plan, per_latent)
    raw = _raw_weights(spans)
    present = [True] * len(spans) if present is None else list(present)
    squares = [r.square() for r in raw]
    weights = []
    for i, (start, stop) in enumerate(spans):
        total = torch.zeros(stop - start, dtype=torch.float64)
        for j, (other_start, other_stop) in enumerate(spans):
            low, high = max(start, other_start), min(stop, other_stop)
            if present[j] and low < high:
                total[low - start : high - start] += squares[j][low - other_start :
                                                                high - other_start]
        weights.append(raw[i] / total.sqrt() if equal_power else squares[i] / total)
    return weights


class VelocityFusion:
    """Averages the velocities of overlapping windows (see the module docstring).

    The batch holds ``len(groups)`` groups (e.g. objects), each a run of consecutive items
    that are windows of one segment.

    Args:
        plan: the windows.
        groups: per group, the plan indices of its windows in batch order (a hidden object's
            windows may be missing).
    """

    def __init__(self, plan: WindowPlan, groups: Sequence[Sequence[int]]) -> None:
        self.plan = plan
        self.groups = [list(g) for g in groups]
        # float32 (N, 1) columns, as they multiply the velocities; moved to the velocities'
        # device once: a copy from host memory per window and step would make the host wait
        # for the GPU at every one of them.
        self._weights: list[list[torch.Tensor]] = []
        self._device = torch.device("cpu")
        for indices in self.groups:
            present = [i in indices for i in range(len(plan.windows))]
            weights = join_weights(plan, equal_power=False, per_latent=1, present=present)
            self._weights.append([weights[i].float()[:, None] for i in indices])

    def _weights_on(self, device: torch.device) -> list[list[torch.Tensor]]:
        if device != self._device:
            self._weights = [[w.to(device) for w in ws] for ws in self._weights]
            self._device = device
        return self._weights

    def __call__(self, velocity: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` velocities of the batch -> the fused velocities, same shape."""
        fused = torch.empty_like(velocity)
        item = 0
        for indices, weights in zip(self.groups, self._weights_on(velocity.device), strict=True):
            total = velocity.new_zeros(self.plan.num_latents, velocity.shape[-1],
                                       dtype=torch.float32)  # (N_segment, C)
            spans = [self.plan.latent_span(self.plan.windows[i]) for i in indices]
            for k, (span, w) in enumerate(zip(spans, weights, strict=True)):
                total[span] += w * velocity[item + k].float()
            for k, span in enumerate(spans):
                fused[item + k] = total[span].to(velocity.dtype)
            item += len(indices)
        if item != len(velocity):
            raise ValueError(f"fusion expects {item} items, the batch has {len(velocity)}")
        return fused
