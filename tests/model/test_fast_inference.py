"""The sampling shortcuts (``FlowNetwork.set_fast_inference``) against the reference operations.

Shortcuts: adaLN modulation once per distinct Synchformer row, one latent projection per guided
step, token convolutions as matrix products on the CPU. Each must give the straightforward
path's values up to float rounding, for any sequence lengths.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from saganet.model import Conditions, FlowMatching, SequenceConfig
from saganet.model.layers import ChannelLastConv1d


@pytest.mark.parametrize(("kernel", "padding"), [(1, 0), (3, 1), (7, 3), (3, 0), (5, 4)])
def test_conv_as_matmul_equals_the_convolution(kernel: int, padding: int) -> None:
    generator = torch.Generator().manual_seed(kernel + padding)
    conv = ChannelLastConv1d(12, 20, kernel, padding=padding)
    x = torch.randn(3, 17, 12, generator=generator, requires_grad=True)
    fast = conv(x)
    grads_fast = torch.autograd.grad(fast.square().sum(), [x, conv.weight, conv.bias])
    conv.as_matmul = False
    reference = conv(x)
    grads_ref = torch.autograd.grad(reference.square().sum(), [x, conv.weight, conv.bias])
    assert fast.shape == reference.shape == (3, 17 + 2 * padding - kernel + 1, 20)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


def test_strided_convolutions_keep_the_convolution() -> None:
    conv = ChannelLastConv1d(4, 6, 3, stride=2, padding=1)
    x = torch.randn(2, 9, 4)
    expected = torch.nn.functional.conv1d(x.transpose(1, 2), conv.weight, conv.bias, stride=2,
                                          padding=1).transpose(1, 2)
    torch.testing.assert_close(conv(x), expected)


def _guided(net, inputs, negative, *, fast: bool, batched: bool, strength: float):
    net.set_fast_inference(fast)
    cond = net.preprocess_conditions(inputs["clip_f"], inputs["sync_f"], inputs["text_f"])
    empty = net.get_empty_conditions(len(inputs["latent"]), negative_text_features=negative)
    return (net.ode_wrapper(torch.tensor(0.35), inputs["latent"], cond, empty, strength,
                            batched=batched),
            net.predict_flow(inputs["latent"], inputs["t"], cond))


# Durations whose Synchformer rows repeat in different patterns after upsampling.
@pytest.mark.parametrize("duration", [1.0, 2.0, 3.3])
@pytest.mark.parametrize("batched", [False, True])
@torch.no_grad()
def test_fast_sampling_equals_the_reference(make_network, make_inputs, tiny_config,
                                            duration: float, batched: bool) -> None:
    sequence = SequenceConfig(duration=duration, sampling_rate=16000, hop=256)
    config = tiny_config.with_sequence(sequence)
    net = make_network(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
    inputs = make_inputs(net.config)
    assert net.latent_seq_len > net.sync_seq_len  # some rows repeat
    strength = 4.5
    tolerance = 1e-5 * (2 * strength + 1)
    negative = torch.randn_like(inputs["text_f"])
    for uncond_text in (None, negative):
        reference, flow_ref = _guided(net, inputs, uncond_text, fast=False, batched=False,
                                      strength=strength)
        fast, flow_fast = _guided(net, inputs, uncond_text, fast=True, batched=batched,
                                  strength=strength)
        assert fast.shape == reference.shape == inputs["latent"].shape
        torch.testing.assert_close(fast, reference, atol=tolerance, rtol=tolerance)
        torch.testing.assert_close(flow_fast, flow_ref, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_fast_euler_run_equals_the_reference(make_network, inputs) -> None:
    net = make_network()
    cond = net.preprocess_conditions(inputs["clip_f"], inputs["sync_f"], inputs["text_f"])
    empty = net.get_empty_conditions(len(inputs["latent"]))
    x0 = torch.randn_like(inputs["latent"])
    strength, steps = 4.5, 4
    runs = {}
    for fast in (False, True):
        net.set_fast_inference(fast)
        runs[fast] = FlowMatching(num_steps=steps).to_data(
            lambda t, x, batched=fast: net.ode_wrapper(t, x, cond, empty, strength,
                                                       batched=batched), x0)
    tolerance = 1e-5 * (2 * strength + 1)
    torch.testing.assert_close(runs[True], runs[False], atol=tolerance, rtol=tolerance)


@torch.no_grad()
def test_conditions_that_are_not_upsampled_take_the_full_path(make_network, inputs) -> None:
    net = make_network()
    cond = net.preprocess_conditions(inputs["clip_f"], inputs["sync_f"], inputs["text_f"])
    # Every latent token with its own sync row: the repeated-row shortcut must not apply.
    distinct = dataclasses.replace(cond, sync_f=torch.randn_like(cond.sync_f),
                                   sync_upsampled=False)
    flows = []
    for fast in (False, True):
        net.set_fast_inference(fast)
        flows.append(net.predict_flow(inputs["latent"], inputs["t"], distinct))
    torch.testing.assert_close(flows[1], flows[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(flows[0], net.predict_flow(inputs["latent"], inputs["t"], cond))


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("batched", [False, True])
@torch.no_grad()
def test_guidance_goes_through_predict_flow(make_network, inputs, fast: bool,
                                            batched: bool) -> None:
    # batch_eval's compile=true shadows predict_flow with a compiled graph: guided sampling
    # must reach it whatever the shortcuts.
    net = make_network().set_fast_inference(fast)
    cond = net.preprocess_conditions(inputs["clip_f"], inputs["sync_f"], inputs["text_f"])
    empty = net.get_empty_conditions(len(inputs["latent"]))
    calls = []
    method = net.predict_flow

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return method(*args, **kwargs)

    net.predict_flow = counting
    net.ode_wrapper(torch.tensor(0.5), inputs["latent"], cond, empty, 3.0, batched=batched)
    assert len(calls) == (1 if batched else 2)


@torch.no_grad()
def test_selected_and_stacked_conditions_keep_the_repeated_rows_flag(make_network,
                                                                     inputs) -> None:
    net = make_network()
    cond = net.preprocess_conditions(inputs["clip_f"], inputs["sync_f"], inputs["text_f"])
    empty = net.get_empty_conditions(len(inputs["latent"]))
    assert cond.sync_upsampled and empty.sync_upsampled
    first = cond.select(slice(0, 1))
    assert first.sync_upsampled and first.sync_f.shape[0] == 1
    torch.testing.assert_close(first.text_f_c, cond.text_f_c[:1])
    stacked = Conditions.cat(first, cond, empty)
    assert stacked.sync_upsampled and stacked.clip_f.shape[0] == 1 + 2 * len(inputs["latent"])
    plain = dataclasses.replace(cond, sync_upsampled=False)
    assert not Conditions.cat(cond, plain).sync_upsampled
    assert set(Conditions.tensor_fields()) == {"clip_f", "sync_f", "text_f", "clip_f_c",
                                               "text_f_c"}
