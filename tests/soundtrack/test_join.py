"""Joining windows: crossfade weights, equal-amplitude weights, and velocity fusion."""

from __future__ import annotations

import pytest
import torch

from saganet.model import CONFIG_44K_SA
from saganet.soundtrack.join import VelocityFusion, join_weights
from saganet.soundtrack.plan import WindowPlan, plan_windows

SAMPLES_PER_LATENT = 1024
LENGTHS = [5.1, 12.3, 21.0]


def _plan(duration: float) -> WindowPlan:
    return plan_windows(duration, CONFIG_44K_SA, SAMPLES_PER_LATENT, overlap=1.0)


def _on_grid(plan: WindowPlan, weights: list[torch.Tensor], per_latent: int | None,
             power: int) -> torch.Tensor:
    """Sum over windows of ``weight ** power`` on the segment's grid."""
    scale = SAMPLES_PER_LATENT if per_latent is None else per_latent
    total = torch.zeros(plan.num_latents * scale, dtype=torch.float64)
    for window, weight in zip(plan.windows, weights, strict=True):
        span = plan.latent_span(window)
        total[span.start * scale : span.stop * scale] += weight ** power
    return total


@pytest.mark.parametrize("duration", LENGTHS)
@pytest.mark.parametrize("per_latent", [None, 1, 2])
def test_crossfade_keeps_power_and_fusion_keeps_amplitude(duration: float,
                                                          per_latent: int | None) -> None:
    plan = _plan(duration)
    power = join_weights(plan, equal_power=True, per_latent=per_latent)
    amplitude = join_weights(plan, equal_power=False, per_latent=per_latent)
    torch.testing.assert_close(_on_grid(plan, power, per_latent, 2),
                               torch.ones(1, dtype=torch.float64).expand(
                                   _on_grid(plan, power, per_latent, 2).shape))
    sums = _on_grid(plan, amplitude, per_latent, 1)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    # The weights ramp: each window fades in over its overlap with the one before, up to 1
    # where it is alone.
    for weight in power[1:]:
        assert weight[0] < 0.1 and weight.max() == pytest.approx(1.0)


def test_a_silent_neighbour_makes_a_window_fade_out() -> None:
    plan = _plan(12.3)
    assert len(plan.windows) >= 2
    weights = join_weights(plan, equal_power=True)
    first, second = plan.sample_span(plan.windows[0]), plan.sample_span(plan.windows[1])
    overlap = first.stop - second.start
    fading = weights[0][-overlap:]
    # Counted as silence, the second window still takes its share: the first fades out.
    assert fading[0] > 0.99 and fading[-1] < 0.01
    assert torch.all(fading[1:] <= fading[:-1] + 1e-12)


@pytest.mark.parametrize("duration", LENGTHS)
def test_fusion_makes_overlaps_identical(duration: float) -> None:
    plan = _plan(duration)
    count = len(plan.windows)
    # Two objects: one visible everywhere, one missing from the middle window(s).
    groups = [list(range(count)), [0, count - 1]]
    channels = 3
    velocity = torch.randn(sum(map(len, groups)), plan.window_latents, channels,
                           generator=torch.Generator().manual_seed(count))
    fused = VelocityFusion(plan, groups)(velocity)
    assert fused.shape == velocity.shape
    item = 0
    for indices in groups:
        spans = [plan.latent_span(plan.windows[i]) for i in indices]
        for a in range(len(indices)):
            for b in range(a + 1, len(indices)):
                low = max(spans[a].start, spans[b].start)
                high = min(spans[a].stop, spans[b].stop)
                if low >= high:
                    continue
                first = fused[item + a, low - spans[a].start : high - spans[a].start]
                second = fused[item + b, low - spans[b].start : high - spans[b].start]
                assert torch.equal(first, second)
        # Where a window is alone, its velocity is untouched.
        for a, span in enumerate(spans):
            shared = torch.zeros(plan.window_latents, dtype=torch.bool)
            for b, other in enumerate(spans):
                if b != a:
                    low, high = max(span.start, other.start), min(span.stop, other.stop)
                    if low < high:
                        shared[low - span.start : high - span.start] = True
            assert torch.allclose(fused[item + a][~shared], velocity[item + a][~shared])
        item += len(indices)


def test_fusion_rejects_a_batch_of_another_size() -> None:
    plan = _plan(12.3)
    fusion = VelocityFusion(plan, [list(range(len(plan.windows)))])
    with pytest.raises(ValueError, match="items"):
        fusion(torch.zeros(len(plan.windows) + 1, plan.window_latents, 2))


def test_fusion_moves_its_weights_to_the_velocities_device_once() -> None:
    """On a GPU a host-to-device copy per window and Euler step would stall the host; the
    weights move on the first call and stay (the meta device stands in for a GPU here)."""
    plan = _plan(12.3)
    fusion = VelocityFusion(plan, [list(range(len(plan.windows)))])
    velocity = torch.zeros(len(plan.windows), plan.window_latents, 2, device="meta")
    assert fusion(velocity).device.type == "meta"
    moved = [w for ws in fusion._weights for w in ws]
    assert moved and all(w.device.type == "meta" for w in moved)
    fusion(velocity)
    assert all(a is b for a, b in zip(moved, [w for ws in fusion._weights for w in ws],
                                      strict=True))
