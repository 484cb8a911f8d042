"""The fused anti-aliased activation (polyphase up-sampling, Snake into the padded buffer)
against the reference sequence of operations."""

from __future__ import annotations

import pytest
import torch

from saganet.codec import BigVGAN, BigVGANConfig
from saganet.codec.alias_free import AntiAliasedActivation, LowPassFilter1d, UpSample1d
from saganet.codec.snake import Snake, SnakeBeta


@pytest.mark.parametrize(("ratio", "kernel"), [(2, 12), (2, 8), (3, 12), (4, 16), (2, 6)])
@pytest.mark.parametrize("length", [1, 7, 40])
def test_polyphase_upsampling_equals_the_transposed_convolution(ratio: int, kernel: int,
                                                                length: int) -> None:
    generator = torch.Generator().manual_seed(ratio * kernel + length)
    upsample = UpSample1d(ratio, kernel)
    with torch.no_grad():  # any filter, not only the symmetric Kaiser one
        upsample.filter.copy_(torch.randn(upsample.filter.shape, generator=generator))
    x = torch.randn(2, 5, length, generator=generator)
    fast = upsample(x)
    upsample.polyphase = False
    reference = upsample(x)
    assert fast.shape == reference.shape == (2, 5, ratio * length)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("snake", [SnakeBeta, Snake])
@pytest.mark.parametrize("logscale", [True, False])
@pytest.mark.parametrize("length", [1, 3, 64])
def test_fused_activation_equals_the_reference(snake: type, logscale: bool,
                                               length: int) -> None:
    generator = torch.Generator().manual_seed(length)
    channels = 6
    activation = AntiAliasedActivation(snake(channels, logscale=logscale))
    with torch.no_grad():
        for param in activation.act.parameters():
            scale = torch.randn(channels, generator=generator)
            param.copy_(0.3 * scale if logscale else 1 + 0.3 * scale.abs())
    x = 3 * torch.randn(2, channels, length, generator=generator)
    with torch.no_grad():
        fast = activation(x)
    differentiable = activation(x)  # the fused sequence works in place: not under autograd
    assert differentiable.requires_grad
    activation.fused = False
    activation.upsample.polyphase = False
    with torch.no_grad():
        reference = activation(x)
    assert fast.shape == reference.shape == x.shape
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(differentiable.detach(), reference, atol=1e-5, rtol=1e-5)


def test_activations_other_than_snake_take_the_reference_path() -> None:
    activation = AntiAliasedActivation(torch.nn.Tanh())
    x = torch.randn(1, 3, 20)
    expected = activation.downsample(torch.tanh(activation.upsample(x)))
    torch.testing.assert_close(activation(x), expected)


@torch.no_grad()
def test_fast_vocoder_equals_the_reference() -> None:
    config = BigVGANConfig(upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4),
                           upsample_initial_channel=16, resblock_kernel_sizes=(3, 7),
                           resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)), num_mels=10,
                           use_tanh_at_final=False, use_bias_at_final=False)
    torch.manual_seed(0)
    vocoder = BigVGAN(config).eval().remove_weight_norm()
    for name, param in vocoder.named_parameters():
        if name.endswith((".alpha", ".beta")):
            param.normal_(0.0, 0.3)
    mel = torch.randn(2, config.num_mels, 9)
    fast = vocoder(mel)
    reference = vocoder.set_fast_inference(False)(mel)
    assert fast.shape == reference.shape == (2, 1, 9 * config.upsample_factor)
    scale = reference.abs().max()
    torch.testing.assert_close(fast, reference, atol=1e-5 * scale, rtol=1e-5)
    assert torch.equal(vocoder.set_fast_inference(True)(mel), fast)


@pytest.mark.parametrize(("ratio", "kernel"), [(2, 12), (2, 8), (3, 12), (4, 16), (2, 6)])
@pytest.mark.parametrize("length", [1, 5, 33])
def test_phase_by_phase_decimation_equals_the_strided_filter(ratio: int, kernel: int,
                                                             length: int) -> None:
    generator = torch.Generator().manual_seed(ratio * kernel + length)
    lowpass = LowPassFilter1d(ratio, kernel)
    with torch.no_grad():
        lowpass.filter.copy_(torch.randn(lowpass.filter.shape, generator=generator))
    phases = torch.randn(ratio, 2, 3, length, generator=generator)  # (phase, B, C, T)
    interleaved = phases.permute(1, 2, 3, 0).flatten(2)  # z[ratio * a + s] = phase s at a
    buffers = lowpass.padded_phases(interleaved, length)
    for phase, (_, core) in zip(phases, buffers, strict=True):
        core.copy_(phase)
    fast = lowpass.filter_phases(buffers)
    reference = lowpass(interleaved)
    assert fast.shape == reference.shape == (2, 3, length)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


def test_under_torch_compile_the_activation_takes_the_reference_sequence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    activation = AntiAliasedActivation(SnakeBeta(4))
    with torch.no_grad():
        activation.act.alpha.normal_(0.0, 0.3)
    calls = []
    upsample_forward = activation.upsample.forward

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        return upsample_forward(x)

    monkeypatch.setattr(activation.upsample, "forward", counting)
    x = torch.randn(1, 4, 16)
    with torch.no_grad():
        fused = activation(x)
        assert calls == []  # the fused sequence never builds the up-sampled signal
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        traced = activation(x)
    assert calls == [x.shape]
    torch.testing.assert_close(traced, fused, atol=1e-5, rtol=1e-5)
