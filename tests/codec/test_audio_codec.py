"""AudioCodec: 5 s round-trip shapes, channel-last contract, frozen state, config checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from saganet.codec import VOCODER_CONFIGS, AudioCodec, AudioCodecConfig

FIVE_SECONDS = 221_184  # 216 latents * 1024 samples (5.0155 s at 44.1 kHz)


@pytest.fixture(scope="module")
def codec() -> AudioCodec:
    torch.manual_seed(0)
    return AudioCodec.from_config(AudioCodecConfig.debug(), need_encoder=True)


def test_five_seconds_round_trip_shapes() -> None:
    # Lighter than the debug vocoder (one AMP block per stage): 221184 samples pass through
    # every activation at twice that rate, and only the shapes matter here.
    config = AudioCodecConfig.debug()
    light = dataclasses.replace(config.vocoder, resblock_kernel_sizes=(3,),
                                resblock_dilation_sizes=((1,),))
    codec = AudioCodec.from_config(dataclasses.replace(config, vocoder=light))
    waveform = 0.1 * torch.randn(1, FIVE_SECONDS)
    posterior = codec.encode(waveform)
    assert posterior.mean.shape == posterior.std.shape == (1, 216, codec.latent_dim)
    mel = codec.decode_mel(posterior.sample(torch.Generator().manual_seed(0)))
    assert mel.shape == (1, 128, 432)
    audio = codec.vocode(mel)
    assert audio.shape == (1, 1, FIVE_SECONDS)
    assert audio.abs().max() <= 1.0


def test_decode_is_decode_mel_then_vocode(codec: AudioCodec) -> None:
    latents = torch.randn(2, 3, codec.latent_dim)
    torch.testing.assert_close(codec.decode(latents), codec.vocode(codec.decode_mel(latents)))
    assert codec.decode(latents).shape == (2, 1, 3 * 1024)


def test_rates_and_sizes(codec: AudioCodec) -> None:
    assert (codec.sampling_rate, codec.hop_length, codec.samples_per_latent) == (44_100, 512, 1024)
    assert codec.latent_dim == 8
    official = AudioCodecConfig.for_mode("44k")
    assert (official.vae.embed_dim, official.vocoder.upsample_factor) == (40, 512)


def test_encode_is_the_vae_posterior_channel_last(codec: AudioCodec) -> None:
    waveform = 0.1 * torch.randn(2, 4 * 1024)
    with torch.no_grad():
        expected = codec.vae.encode(codec.mel_converter(waveform))
    posterior = codec.encode(waveform)
    torch.testing.assert_close(posterior.mean, expected.mean.transpose(1, 2))
    torch.testing.assert_close(posterior.std, expected.std.transpose(1, 2))


def test_decode_takes_channel_last_latents(codec: AudioCodec) -> None:
    latents = torch.randn(2, 3, codec.latent_dim)
    with torch.no_grad():
        expected = codec.vae.decode(latents.transpose(1, 2))
    torch.testing.assert_close(codec.decode_mel(latents), expected)
    with pytest.raises(ValueError, match="latents must be"):
        codec.decode(latents.transpose(1, 2))
    with pytest.raises(ValueError, match="N >= 1"):  # not a convolution's error deep inside
        codec.decode(latents[:, :0])


def test_encode_rejects_partial_latent(codec: AudioCodec) -> None:
    with pytest.raises(ValueError, match="multiple of 1024"):
        codec.encode(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match="positive multiple"):
        codec.encode(torch.zeros(1, 0))


def test_frozen_and_stays_in_eval(codec: AudioCodec) -> None:
    codec.train()
    assert not any(m.training for m in codec.modules())
    assert not any(p.requires_grad for p in codec.parameters())
    assert codec.vae.weight_norm_removed and not codec.vocoder.weight_norm_parametrized


def test_state_dict_layout_without_encoder() -> None:
    codec = AudioCodec.from_config(AudioCodecConfig.debug(), need_encoder=False)
    keys = list(codec.state_dict())
    assert keys[:3] == ["vae.data_mean", "vae.data_std", "vae.decoder.learnable_gain"]
    assert all(k.startswith(("vae.decoder.", "vae.data_", "vocoder.")) for k in keys)
    assert not codec.has_encoder
    with pytest.raises(RuntimeError, match="need_encoder=False"):
        codec.encode(torch.zeros(1, 1024))


def test_config_rejects_mismatched_parts() -> None:
    config = AudioCodecConfig.debug()
    slow = dataclasses.replace(VOCODER_CONFIGS["debug"], upsample_rates=(8, 8, 4))
    with pytest.raises(ValueError, match="upsamples 256x"):
        dataclasses.replace(config, vocoder=slow)
    with pytest.raises(ValueError, match="mel bands disagree"):
        dataclasses.replace(config, vae=dataclasses.replace(config.vae, data_dim=80))
    assert AudioCodecConfig.for_mode("16k").vocoder == VOCODER_CONFIGS["bigvgan_v1_16k"]
