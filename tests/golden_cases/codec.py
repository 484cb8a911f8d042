"""Golden handlers and manifests for saganet.codec (mel converter, VAE, BigVGAN, AudioCodec)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from saganet.codec import (
    VAE,
    VOCODER_CONFIGS,
    AudioCodec,
    AudioCodecConfig,
    BigVGAN,
    BigVGANConfig,
    MelConfig,
    MelConverter,
    VAEConfig,
    mel_converter,
)
from saganet.codec.mel import mel_config
from saganet.codec.vae import vae_config
from saganet.state_dict import load_state_dict_strict
from tests.golden_cases.compare import assert_close, assert_outputs, manifest_shapes

_AFTER_FOLD = "state_dict_after_remove_weight_norm."


def _folded_weights(case: dict, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict under the names the case records after weight-norm removal."""
    ours = module.state_dict()
    return {name: ours[name.removeprefix(_AFTER_FOLD)] for name in case["outputs"]
            if name.startswith(_AFTER_FOLD)}


def _mel(case: dict) -> None:
    cfg = case["config"]
    config = MelConfig(sampling_rate=cfg["sampling_rate"], n_fft=cfg["n_fft"],
                       num_mels=cfg["num_mels"], hop_size=cfg["hop_size"],
                       win_size=cfg["win_size"], fmin=cfg["fmin"], fmax=cfg["fmax"],
                       log={"torch.log": "ln", "torch.log10": "log10"}[cfg["norm_fn"]])
    assert config == mel_config(cfg["mode"]), f"{cfg['mode']}: our named config differs"
    converter = mel_converter(cfg["mode"])
    # Not loaded from the case: our own filterbank and window must equal the reference's.
    for name, tensor in converter.state_dict().items():
        assert_close(f"{case['case']}.{name}", tensor, case["state_dict"][name])
    waveform = case["inputs"]["waveform"]
    assert_outputs(case, {"mel": converter(waveform),
                          "mel_center_true": converter(waveform, center=True)})


def _vae(case: dict) -> None:
    vae = VAE(VAEConfig(**case["config"])).eval()
    load_state_dict_strict(vae, case["state_dict"], what=case["case"])
    vae.remove_weight_norm()
    z, mel = case["inputs"]["z"], case["inputs"]["mel"]
    with torch.no_grad():
        posterior = vae.encode(mel)
        produced = {
            "decode": vae.decode(z),
            "decode_no_unnormalize": vae.decode(z, unnormalize=False),
            "encode.moments": posterior.moments,
            "encode.mean": posterior.mean,
            "encode.logvar": posterior.logvar,
            "encode.std": posterior.std,
            "encode.mode": posterior.mode(),
            "forward_mode_decode": vae(mel, sample_posterior=False)[0],
            **_folded_weights(case, vae),
        }
    assert_outputs(case, produced)


def _vocoder(case: dict) -> None:
    vocoder = BigVGAN(BigVGANConfig.from_dict(case["config"])).eval()
    vocoder.load_weights(case["state_dict"], what=case["case"])
    mel = case["inputs"]["mel"]
    with torch.no_grad():
        produced = {"audio_weight_norm_parametrized": vocoder(mel)}
        vocoder.remove_weight_norm()
        produced["audio"] = vocoder(mel)
    produced.update(_folded_weights(case, vocoder))
    assert_outputs(case, produced)


HANDLERS: dict[str, Callable[[dict], None]] = {
    "saganet.ext.mel_converter.get_mel_converter('44k')": _mel,
    "saganet.ext.autoencoder.vae.VAE": _vae,
    "saganet.ext.bigvgan_v2.bigvgan.BigVGAN": _vocoder,
}


def _meta_shapes(build: Callable[[], torch.nn.Module]) -> Callable[[], dict]:
    def shapes() -> dict:
        with torch.device("meta"):
            return manifest_shapes(build())
    return shapes


_V2 = VOCODER_CONFIGS["bigvgan_v2_44khz_128band_512x"]

MANIFESTS: dict[str, Callable[[], dict]] = {
    "mel_converter_44k": _meta_shapes(lambda: MelConverter(mel_config("44k"))),
    "vae_44k": _meta_shapes(lambda: VAE(vae_config("44k"))),
    "bigvgan_v2_44khz_128band_512x_weight_norm": _meta_shapes(lambda: BigVGAN(_V2)),
    "bigvgan_v2_44khz_128band_512x": _meta_shapes(lambda: BigVGAN(_V2).remove_weight_norm()),
    "autoencoder_module_44k_sa_need_vae_encoder_True": _meta_shapes(
        lambda: AudioCodec.from_config(AudioCodecConfig.for_mode("44k_sa"), need_encoder=True)),
    "autoencoder_module_44k_sa_need_vae_encoder_False": _meta_shapes(
        lambda: AudioCodec.from_config(AudioCodecConfig.for_mode("44k_sa"), need_encoder=False)),
}
