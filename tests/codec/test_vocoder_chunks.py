"""BigVGAN on long inputs: chunks read with the receptive field as context give one pass's audio."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from saganet.codec import VOCODER_CONFIGS, BigVGAN, BigVGANConfig

TINY = BigVGANConfig(upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4),
                     upsample_initial_channel=16, resblock_kernel_sizes=(3, 7),
                     resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)), num_mels=12,
                     use_tanh_at_final=False, use_bias_at_final=False)
CONFIGS = {
    "tiny": TINY,
    "tiny_block2_tanh": dataclasses.replace(TINY, resblock="2", use_tanh_at_final=True,
                                            use_bias_at_final=True, activation="snake"),
    "debug": VOCODER_CONFIGS["debug"],
}


def _vocoder(config: BigVGANConfig) -> BigVGAN:
    torch.manual_seed(0)
    model = BigVGAN(config).double().eval().remove_weight_norm()
    with torch.no_grad():  # Snake parameters away from their init, as in a trained model
        for name, tensor in model.named_parameters():
            if name.endswith((".alpha", ".beta")):
                tensor.normal_(0.0, 0.3)
    return model


def _one_pass(model: BigVGAN, mel: torch.Tensor) -> torch.Tensor:
    chunk = model.chunk_frames
    model.chunk_frames = None
    try:
        return model(mel)
    finally:
        model.chunk_frames = chunk


@pytest.mark.parametrize("name", CONFIGS)
def test_receptive_field_is_exactly_what_a_frames_audio_reads(name: str) -> None:
    # The gradient shows every input the audio depends on, however weakly: the far taps'
    # products are far below rounding in the audio itself but not zero in the Jacobian.
    model = _vocoder(CONFIGS[name])
    model.chunk_frames = None
    radius, hop = model.receptive_field, model.config.upsample_factor
    frames = 4 * radius + 3
    mel = torch.randn(1, model.config.num_mels, frames, dtype=torch.float64,
                      requires_grad=True)
    frame = frames // 2
    model(mel)[0, 0, frame * hop:(frame + 1) * hop].sum().backward()
    read = mel.grad[0].abs().amax(0).nonzero().flatten()
    assert (read.min().item(), read.max().item()) == (frame - radius, frame + radius)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("fast", [True, False])
def test_chunked_audio_equals_one_pass(name: str, fast: bool) -> None:
    model = _vocoder(CONFIGS[name]).set_fast_inference(fast)
    radius = model.receptive_field
    frames = 3 * radius + 7
    mel = torch.randn(2, model.config.num_mels, frames, dtype=torch.float64)
    with torch.no_grad():
        expected = _one_pass(model, mel)
        chunks = [radius, frames // 3, frames - 1]
        if name != "debug":
            # One-frame chunks vocode 2 * radius + 1 frames each: at the debug vocoder's 512
            # samples per frame, most of this file's time. The chunking code is the same for
            # every config, so the 8-sample-hop ones cover them.
            chunks.insert(0, 1)
        for chunk in chunks:
            model.chunk_frames = chunk
            torch.testing.assert_close(model(mel), expected, rtol=1e-9, atol=1e-12,
                                       msg=f"chunks of {chunk} frames")


def test_too_little_context_changes_the_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _vocoder(TINY)
    radius = model.receptive_field
    frames = 4 * radius
    mel = torch.randn(1, model.config.num_mels, frames, dtype=torch.float64)
    with torch.no_grad():
        expected = _one_pass(model, mel)
        model.chunk_frames = radius
        monkeypatch.setattr(BigVGAN, "receptive_field", property(lambda self: radius // 4))
        assert not torch.allclose(model(mel), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("extra", [0, 1, 5])
def test_chunks_are_even_and_short_inputs_take_one_pass(extra: int) -> None:
    model = _vocoder(TINY)
    chunk = 2 * model.receptive_field
    model.chunk_frames = chunk
    lengths: list[int] = []
    original = model._forward_pass

    def recording(mel: torch.Tensor) -> torch.Tensor:
        lengths.append(mel.shape[-1])
        return original(mel)

    model._forward_pass = recording
    with torch.no_grad():
        model(torch.randn(1, model.config.num_mels, chunk, dtype=torch.float64))
        assert lengths == [chunk]
        lengths.clear()
        frames = 3 * chunk + extra
        audio = model(torch.randn(1, model.config.num_mels, frames, dtype=torch.float64))
    assert audio.shape[-1] == frames * model.config.upsample_factor
    count = math.ceil(frames / chunk)
    assert len(lengths) == count
    # Interior chunks carry context on both sides, so equal cores show as equal lengths.
    size = math.ceil(frames / count)
    assert all(length <= size + 2 * model.receptive_field for length in lengths)
    assert max(lengths[1:-1], default=0) == min(lengths[1:-1], default=0)
