"""Flow-matching objective, samplers and classifier-free guidance."""

from __future__ import annotations

import math

import pytest
import torch

from saganet.model import FlowMatching


def test_loss_is_zero_for_the_exact_target() -> None:
    fm = FlowMatching()
    x0, x1 = torch.randn(3, 7, 4), torch.randn(3, 7, 4)
    loss = fm.loss(x1 - x0, x0, x1)
    assert loss.shape == (3,) and torch.equal(loss, torch.zeros(3))
    off = fm.loss(x1 - x0 + torch.tensor([0.0, 1.0, 2.0])[:, None, None], x0, x1)
    torch.testing.assert_close(off, torch.tensor([0.0, 1.0, 4.0]))


def test_interpolant_and_target() -> None:
    fm = FlowMatching()
    x0, x1 = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    torch.testing.assert_close(fm.get_conditional_flow(x0, x1, torch.zeros(2)), x0)
    torch.testing.assert_close(fm.get_conditional_flow(x0, x1, torch.ones(2)), x1)
    # The target is the (constant) time derivative of the interpolant.
    t, h = torch.tensor([0.2, 0.7]), 0.125
    slope = (fm.get_conditional_flow(x0, x1, t + h) - fm.get_conditional_flow(x0, x1, t)) / h
    torch.testing.assert_close(slope, fm.target(x0, x1), atol=1e-5, rtol=1e-5)


def test_training_times_are_logit_normal_and_reproducible() -> None:
    fm = FlowMatching()
    t = fm.sample_t(20000, torch.Generator().manual_seed(0))
    assert torch.equal(t, fm.sample_t(20000, torch.Generator().manual_seed(0)))
    assert t.min() > 0 and t.max() < 1
    logits = torch.log(t / (1 - t))
    assert abs(logits.mean().item()) < 0.03 and abs(logits.std().item() - 1) < 0.03
    shifted = FlowMatching(t_mean=1.0, t_scale=0.5).sample_t(20000, torch.Generator())
    logits = torch.log(shifted / (1 - shifted))
    assert abs(logits.mean().item() - 1) < 0.03 and abs(logits.std().item() - 0.5) < 0.03


def test_euler_uses_the_linspace_grid_and_never_evaluates_t1() -> None:
    calls: list[torch.Tensor] = []

    def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        calls.append(t)
        return torch.full_like(x, 2.0) * t  # v = 2t  ->  x(1) = x(0) + 1 exactly
    x0 = torch.zeros(1, 2, 3)
    x1 = FlowMatching(num_steps=4).to_data(velocity, x0)
    assert [c.item() for c in calls] == [0.0, 0.25, 0.5, 0.75]
    assert all(c.dtype == torch.float32 and c.dim() == 0 for c in calls)
    # Euler on v = 2t: sum of 2 t_i dt = 2 * (0 + .25 + .5 + .75) / 4 = 0.75.
    torch.testing.assert_close(x1, torch.full_like(x0, 0.75))
    calls.clear()
    FlowMatching(num_steps=25).to_data(velocity, x0)
    assert len(calls) == 25 and max(c.item() for c in calls) < 1.0
    assert torch.equal(torch.stack(calls), torch.linspace(0, 1, 26)[:-1])


def test_to_prior_runs_backwards() -> None:
    fm = FlowMatching(num_steps=5)
    x1 = torch.randn(2, 4, 3)
    shift = torch.randn(2, 4, 3)
    torch.testing.assert_close(fm.to_prior(lambda t, x: shift, x1), x1 - shift)


def test_adaptive_returns_the_final_state() -> None:
    def decay(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -x * (1 + t)
    x0 = torch.randn(2, 6, 3)
    adaptive = FlowMatching(method="adaptive", rtol=1e-6, atol=1e-8).to_data(decay, x0)
    assert adaptive.shape == x0.shape
    torch.testing.assert_close(adaptive, x0 * math.exp(-1.5), atol=1e-5, rtol=1e-5)
    fine_euler = FlowMatching(num_steps=2000).to_data(decay, x0)
    torch.testing.assert_close(adaptive, fine_euler, atol=2e-3, rtol=2e-3)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown sampling method"):
        FlowMatching(method="heun")


def _guidance_setup(make_network, inputs):
    net = make_network()
    cond = net.preprocess_conditions(inputs["clip_f"], inputs["sync_f"], inputs["text_f"])
    negative = torch.randn_like(inputs["text_f"])
    return net, cond, net.get_empty_conditions(2), net.get_empty_conditions(2, negative)


@torch.no_grad()
def test_cfg_one_and_below_give_the_conditional_flow(make_network, inputs) -> None:
    net, cond, empty, _ = _guidance_setup(make_network, inputs)
    t = torch.tensor(0.3)
    conditional = net.predict_flow(inputs["latent"], torch.full((2,), 0.3), cond)
    for strength in (1.0, 0.5):
        guided = net.ode_wrapper(t, inputs["latent"], cond, empty, strength)
        torch.testing.assert_close(guided, conditional, atol=1e-5, rtol=1e-5)
    unconditional = net.predict_flow(inputs["latent"], torch.full((2,), 0.3), empty)
    guided = net.ode_wrapper(t, inputs["latent"], cond, empty, 3.0)
    torch.testing.assert_close(guided, 3 * conditional - 2 * unconditional, atol=1e-5,
                               rtol=1e-5)


@torch.no_grad()
def test_batched_cfg_equals_two_passes(make_network, inputs) -> None:
    net, cond, empty, empty_negative = _guidance_setup(make_network, inputs)
    strength = 4.5
    # A batch of two runs other matmul blockings than two batches of one: last-bit differences
    # per pass, which guidance scales by up to 2 * strength + 1.
    tolerance = 1e-5 * (2 * strength + 1)
    for uncond in (empty, empty_negative):
        two_pass = net.ode_wrapper(torch.tensor(0.6), inputs["latent"], cond, uncond, strength)
        batched = net.ode_wrapper(torch.tensor(0.6), inputs["latent"], cond, uncond, strength,
                                  batched=True)
        torch.testing.assert_close(batched, two_pass, atol=tolerance, rtol=tolerance)


@torch.no_grad()
def test_empty_conditions(make_network, inputs) -> None:
    net, _, empty, empty_negative = _guidance_setup(make_network, inputs)
    single = net.preprocess_conditions(net.get_empty_clip_sequence(1),
                                       net.get_empty_sync_sequence(1),
                                       net.get_empty_string_sequence(1))
    for field in ("clip_f", "sync_f", "text_f", "clip_f_c", "text_f_c"):
        value = getattr(empty, field)
        assert value.shape[0] == 2
        torch.testing.assert_close(value[1], getattr(single, field)[0])
    # Negative prompts replace only the text branch, one per sample.
    torch.testing.assert_close(empty_negative.clip_f, empty.clip_f)
    assert not torch.allclose(empty_negative.text_f[0], empty_negative.text_f[1])


@torch.no_grad()
def test_guided_sampling_is_deterministic_and_finite(make_network, inputs) -> None:
    net, cond, empty, _ = _guidance_setup(make_network, inputs)
    fm = FlowMatching(num_steps=3)
    x0 = torch.randn_like(inputs["latent"])
    first = fm.to_data(lambda t, x: net.ode_wrapper(t, x, cond, empty, 4.5), x0)
    second = fm.to_data(lambda t, x: net.ode_wrapper(t, x, cond, empty, 4.5, batched=True), x0)
    assert torch.isfinite(first).all() and first.shape == x0.shape
    torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-5)
