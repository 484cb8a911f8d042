"""The audio codec: waveform <-> VAE latents, through the log-mel domain.

``AudioCodec`` owns the frozen VAE and vocoder (state-dict prefixes ``vae.`` and ``vocoder.``,
the layout of the reference ``AutoEncoderModule``) plus a mel converter whose buffers stay out
of the state dict. It is the one decode path of inference and the one encode path of latent
extraction, and it works channel-last like the flow network: latents are ``(B, N, C)``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from saganet.codec.bigvgan import VOCODER_CONFIGS, BigVGAN, BigVGANConfig
from saganet.codec.distributions import DiagonalGaussianDistribution
from saganet.codec.loading import VOCODER_REPO_44K, freeze, load_vae, load_vocoder
from saganet.codec.mel import MelConfig, MelConverter, mel_config
from saganet.codec.vae import VAE, VAEConfig, vae_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioCodecConfig:
    """Mel settings, VAE and vocoder architectures of one codec; they must agree.

    Args:
        mel: STFT/filterbank of the VAE's training data.
        vae: VAE architecture.
        vocoder: BigVGAN generator hyper-parameters.
    """

    mel: MelConfig
    vae: VAEConfig
    vocoder: BigVGANConfig

    def __post_init__(self) -> None:
        if not self.mel.num_mels == self.vae.data_dim == self.vocoder.num_mels:
            raise ValueError(f"mel bands disagree: mel {self.mel.num_mels}, VAE "
                             f"{self.vae.data_dim}, vocoder {self.vocoder.num_mels}")
        if self.vocoder.upsample_factor != self.mel.hop_size:
            raise ValueError(f"vocoder upsamples {self.vocoder.upsample_factor}x but the mel hop "
                             f"is {self.mel.hop_size} samples")
        rate = self.vocoder.sampling_rate
        if rate is not None and rate != self.mel.sampling_rate:
            raise ValueError(f"vocoder is for {rate} Hz, the mel for {self.mel.sampling_rate} Hz")

    @classmethod
    def for_mode(cls, mode: str) -> AudioCodecConfig:
        """Published sizes: "44k" (also "44k_sa": BigVGAN-v2) or "16k" (BigVGAN v1)."""
        vocoder = "bigvgan_v1_16k" if mode == "16k" else "bigvgan_v2_44khz_128band_512x"
        return cls(mel=mel_config(mode), vae=vae_config(mode), vocoder=VOCODER_CONFIGS[vocoder])

    @classmethod
    def debug(cls) -> AudioCodecConfig:
        """Tiny widths, real 44.1 kHz rates and shapes (512 samples per mel frame)."""
        return cls(mel=mel_config("44k"), vae=vae_config("debug"),
                   vocoder=VOCODER_CONFIGS["debug"])

    @property
    def samples_per_latent(self) -> int:
        """Waveform samples per latent step (1024 at 44.1 kHz)."""
        return self.mel.hop_size * self.vae.downsample_factor

    def to_dict(self) -> dict:
        """Plain dict for saving inside checkpoints."""
        return dataclasses.asdict(self)


class AudioCodec(nn.Module):
    """Frozen VAE + vocoder: latents ``(B, N, C)`` <-> waveform ``(B, L)``, ``L = N * 1024``.

    Args:
        vae: a loaded VAE (its weight norm is folded here if not yet).
        vocoder: a loaded BigVGAN (likewise).
        mel: settings of the mel converter used by :meth:`encode`.
    """

    def __init__(self, vae: VAE, vocoder: BigVGAN, mel: MelConfig) -> None:
        super().__init__()
        self.config = AudioCodecConfig(mel=mel, vae=vae.config, vocoder=vocoder.config)
        self.vae = vae.remove_weight_norm()
        self.vocoder = vocoder.remove_weight_norm()
        # Recomputed from the config, never saved: keeps the reference checkpoint layout.
        self.mel_converter = MelConverter(mel, persistent=False)
        freeze(self)

    @classmethod
    def from_config(cls, config: AudioCodecConfig, need_encoder: bool = True) -> AudioCodec:
        """A codec with random weights (tests, benchmarks, layout checks).

        Args:
            config: the three architectures.
            need_encoder: keep the VAE encoder.
        """
        vae = VAE(config.vae)
        if not need_encoder:
            vae.drop_encoder()
        return cls(vae, BigVGAN(config.vocoder), config.mel)

    def train(self, mode: bool = True) -> AudioCodec:
        """Stay in eval mode: the codec is frozen even inside a module being trained."""
        return super().train(False)

    @property
    def sampling_rate(self) -> int:
        """Audio rate in Hz."""
        return self.config.mel.sampling_rate

    @property
    def hop_length(self) -> int:
        """Waveform samples per mel frame."""
        return self.config.mel.hop_size

    @property
    def latent_dim(self) -> int:
        """Channels of a latent (40 at 44.1 kHz)."""
        return self.config.vae.embed_dim

    @property
    def samples_per_latent(self) -> int:
        """Waveform samples per latent step (1024 at 44.1 kHz)."""
        return self.config.samples_per_latent

    @property
    def has_encoder(self) -> bool:
        return self.vae.encoder is not None

    def _dtype(self) -> torch.dtype:
        return self.vae.decoder.conv_in.weight.dtype

    @torch.no_grad()
    def decode_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, num_mels, 2N)`` from VAE-space latents ``(B, N, C)``.

        Args:
            latents: channel-last latents, already un-normalised by the flow network (which
                owns ``latent_mean/std``); cast to the codec's dtype.
        """
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim or not latents.shape[1]:
            raise ValueError(f"latents must be (B, N, {self.latent_dim}) with N >= 1, got "
                             f"{tuple(latents.shape)}")
        z = latents.transpose(1, 2).to(self._dtype())  # (B, C, N)
        return self.vae.decode(z)

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, 1, F * hop)`` in [-1, 1] from log-mel ``(B, num_mels, F)``."""
        return self.vocoder(mel.to(self.vocoder.conv_pre.weight.dtype))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, 1, N * samples_per_latent)`` in [-1, 1] from latents ``(B, N, C)``."""
        return self.vocode(self.decode_mel(latents))

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor) -> DiagonalGaussianDistribution:
        """Posterior over channel-last latents ``(B, L / samples_per_latent, C)``.

        Args:
            waveform: ``(B, L)`` audio at :attr:`sampling_rate`, ``L`` a multiple of
                :attr:`samples_per_latent` (5 s at 44.1 kHz: 221184 samples -> 216 latents).
        """
        if not self.has_encoder:
            raise RuntimeError("this AudioCodec was built with need_encoder=False")
        if waveform.ndim != 2 or waveform.shape[-1] % self.samples_per_latent \
                or not waveform.shape[-1]:
            raise ValueError(f"waveform must be (B, L) with L a positive multiple of "
                             f"{self.samples_per_latent}, got {tuple(waveform.shape)}")
        mel = self.mel_converter(waveform).to(self._dtype())  # (B, num_mels, L / hop)
        moments = self.vae.encode(mel).moments  # (B, 2C, N)
        return DiagonalGaussianDistribution(moments.transpose(1, 2), dim=-1)


def build_audio_codec(vae_path: str | os.PathLike[str],
                      vocoder_source: str | os.PathLike[str] = VOCODER_REPO_44K,
                      need_encoder: bool = False, *, mode: str = "44k",
                      local_files_only: bool | None = None,
                      cache_dir: str | os.PathLike[str] | None = None,
                      config: AudioCodecConfig | None = None) -> AudioCodec:
    """Load the published VAE and vocoder into a frozen :class:`AudioCodec`.

    Args:
        vae_path: ``v1-44.pth`` (or ``v1-16.pth`` for mode "16k").
        vocoder_source: hub repo id or local directory (44.1 kHz), or ``best_netG.pt`` (16 kHz).
        need_encoder: keep the VAE encoder (latent extraction for training).
        mode: "44k" (also "44k_sa") or "16k".
        local_files_only: never download the vocoder; ``None`` follows ``HF_HUB_OFFLINE``.
        cache_dir: Hugging Face cache directory.
        config: architectures overriding ``mode`` (tests use ``AudioCodecConfig.debug()``);
            the vocoder keeps the ``config.json`` of its source, which must fit the mel and VAE.
    """
    if config is None:
        config = AudioCodecConfig.for_mode(mode)
    vae = load_vae(vae_path, mode, need_encoder=need_encoder, config=config.vae)
    # 16 kHz: the v1 checkpoint ships without a config.json, so pass the named one.
    vocoder_config = config.vocoder if mode == "16k" else None
    vocoder = load_vocoder(vocoder_source, config=vocoder_config,
                           local_files_only=local_files_only, cache_dir=cache_dir)
    return AudioCodec(vae, vocoder, config.mel)
