"""BigVGAN: weight-norm layouts, v1/v2 heads, config parsing, anti-aliasing filter, sizes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from saganet.codec import VOCODER_CONFIGS, BigVGAN, BigVGANConfig
from saganet.codec.alias_free import AntiAliasedActivation, kaiser_sinc_filter
from saganet.state_dict import CheckpointMismatchError
from tests.shared import GOLDEN_DIR, need

# Small and fast, with two stages so both ups and resblocks of several widths exist.
TINY = BigVGANConfig(upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4),
                     upsample_initial_channel=16, resblock_kernel_sizes=(3, 7),
                     resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)), num_mels=12,
                     use_tanh_at_final=False, use_bias_at_final=False)


def _trained_like(config: BigVGANConfig = TINY) -> BigVGAN:
    """A vocoder whose g differs from ||v|| and whose Snake parameters are not at init."""
    torch.manual_seed(0)
    model = BigVGAN(config).eval()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("original0"):
                tensor.uniform_(0.3, 0.6)
            elif name.endswith((".alpha", ".beta")):
                tensor.normal_(0.0, 0.1)
    return model


def _legacy(state_dict: dict) -> dict:
    return {k.replace("parametrizations.weight.original0", "weight_g")
             .replace("parametrizations.weight.original1", "weight_v"): v
            for k, v in state_dict.items()}


def test_all_weight_norm_layouts_load_to_the_same_outputs() -> None:
    source = _trained_like()
    mel = torch.randn(2, 12, 5)
    with torch.no_grad():
        expected = source(mel)
    parametrised = source.state_dict()
    folded = _trained_like().remove_weight_norm().state_dict()
    assert any(k.endswith("weight_g") for k in _legacy(parametrised))
    assert "conv_pre.weight" in folded

    outputs = {}
    for name, state_dict in (("current", parametrised), ("legacy", _legacy(parametrised)),
                             ("folded", folded)):
        model = BigVGAN(TINY).eval()
        model.load_weights(state_dict, what=name)
        assert model.weight_norm_parametrized == (name != "folded")
        with torch.no_grad():
            outputs[name] = model(mel)
        model.remove_weight_norm()
        with torch.no_grad():
            outputs[name + " then folded"] = model(mel)
    for name, audio in outputs.items():
        torch.testing.assert_close(audio, expected, atol=1e-6, rtol=1e-5, msg=name)


def test_parametrised_weights_load_into_a_folded_model() -> None:
    source = _trained_like()
    model = BigVGAN(TINY).eval().remove_weight_norm()
    model.load_weights(_legacy(source.state_dict()))
    mel = torch.randn(1, 12, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(mel), source(mel), atol=1e-6, rtol=1e-5)


def test_fold_keeps_bias_before_weight_like_the_published_layout() -> None:
    keys = list(BigVGAN(TINY).remove_weight_norm().state_dict())
    assert keys[:2] == ["conv_pre.bias", "conv_pre.weight"]
    assert keys[-1] == "conv_post.weight"  # v2: conv_post has no bias


def test_strict_load_names_missing_and_unexpected_keys() -> None:
    state_dict = _trained_like().state_dict()
    del state_dict["ups.1.0.bias"]
    state_dict["ups.9.0.bias"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"my_generator\.pt") as err:
        BigVGAN(TINY).load_weights(state_dict, what="my_generator.pt")
    assert "ups.1.0.bias" in str(err.value) and "ups.9.0.bias" in str(err.value)


def _head_input_and_output(model: BigVGAN) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv_post`` output (before the final non-linearity) and the vocoder output."""
    captured = []
    handle = model.conv_post.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        model.conv_post.weight.mul_(50.0)  # push part of the signal outside [-1, 1]
        audio = model(torch.randn(1, 12, 4))
    handle.remove()
    assert captured[0].abs().max() > 1.0
    return captured[0], audio


def test_v1_head_has_bias_and_tanh() -> None:
    config = BigVGANConfig(**{**TINY.to_dict(), "use_tanh_at_final": True,
                              "use_bias_at_final": True})
    model = _trained_like(config).remove_weight_norm()
    assert "conv_post.bias" in model.state_dict()
    pre, audio = _head_input_and_output(model)
    torch.testing.assert_close(audio, torch.tanh(pre))


def test_v2_head_clamps() -> None:
    model = _trained_like().remove_weight_norm()
    assert "conv_post.bias" not in model.state_dict()
    pre, audio = _head_input_and_output(model)
    torch.testing.assert_close(audio, pre.clamp(-1.0, 1.0))


def test_output_length_is_frames_times_upsampling() -> None:
    model = BigVGAN(TINY).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 12, 7)).shape == (3, 1, 7 * 8)


def test_config_json_training_fields_are_ignored() -> None:
    values = {**TINY.to_dict(), "learning_rate": 1e-4, "discriminator_channel_mult": 1,
              "dist_config": {"world_size": 1}, "use_cuda_kernel": False}
    values = json.loads(json.dumps(values))  # lists, as read from a file
    assert BigVGANConfig.from_dict(values) == TINY


def test_config_json_without_final_flags_means_v1() -> None:
    values = {k: v for k, v in TINY.to_dict().items()
              if k not in ("use_tanh_at_final", "use_bias_at_final")}
    config = BigVGANConfig.from_dict(values)
    assert config.use_tanh_at_final and config.use_bias_at_final


def test_official_config_matches_published_manifest() -> None:
    path = GOLDEN_DIR / "manifests" / "bigvgan_v2_44khz_128band_512x.json"
    need(path)
    published = BigVGANConfig.from_dict(json.loads(path.read_text())["config"])
    assert published == VOCODER_CONFIGS["bigvgan_v2_44khz_128band_512x"]


@pytest.mark.parametrize(("name", "folded_params"), [
    ("bigvgan_v2_44khz_128band_512x", 122_152_752), ("bigvgan_v1_16k", 112_199_473)])
def test_official_parameter_counts(name: str, folded_params: int) -> None:
    with torch.device("meta"):
        model = BigVGAN(VOCODER_CONFIGS[name]).remove_weight_norm()
    assert sum(p.numel() for p in model.parameters()) == folded_params


def test_kaiser_sinc_taps() -> None:
    taps = kaiser_sinc_filter(cutoff=0.25, half_width=0.3, kernel_size=12).flatten()
    expected = torch.tensor([0.002029, 0.009389, -0.025543, -0.057657, 0.128573, 0.443210])
    torch.testing.assert_close(taps[:6], expected, atol=2e-6, rtol=0)
    torch.testing.assert_close(taps, taps.flip(0))
    torch.testing.assert_close(taps.sum(), torch.tensor(1.0))


def test_anti_aliased_activation_keeps_length_and_passes_low_frequencies() -> None:
    act = AntiAliasedActivation(nn.Identity())
    t = torch.arange(256, dtype=torch.float32)
    slow = torch.sin(2 * torch.pi * t / 64)[None, None]  # far below the cutoff
    out = act(slow)
    assert out.shape == slow.shape
    torch.testing.assert_close(out[..., 16:-16], slow[..., 16:-16], atol=2e-2, rtol=0)


def test_activation_wrapper_is_swappable() -> None:
    built = []

    def wrapper(snake: nn.Module) -> nn.Module:
        module = AntiAliasedActivation(snake)
        built.append(module)
        return module

    model = BigVGAN(TINY, activation_wrapper=wrapper)
    # 2 stages x 2 AMP blocks x 6 activations, plus activation_post.
    assert len(built) == 2 * 2 * 6 + 1
    assert list(model.state_dict()) == list(BigVGAN(TINY).state_dict())
