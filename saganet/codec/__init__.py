"""Audio codec: log-mel converter, mel VAE and BigVGAN vocoder, and the codec joining them.

Decode (inference): latents ``(B, N, 40)`` -> VAE decoder -> log-mel ``(B, 128, 2N)`` ->
BigVGAN-v2 -> waveform ``(B, 1, 1024 N)`` at 44.1 kHz. Encode (training data): waveform ->
log-mel -> VAE encoder -> Gaussian posterior over latents.
"""

from saganet.codec.audio_codec import AudioCodec, AudioCodecConfig, build_audio_codec
from saganet.codec.bigvgan import VOCODER_CONFIGS, BigVGAN, BigVGANConfig
from saganet.codec.distributions import DiagonalGaussianDistribution
from saganet.codec.loading import VOCODER_REPO_44K, load_vae, load_vocoder
from saganet.codec.mel import MEL_CONFIGS, MelConfig, MelConverter, mel_converter
from saganet.codec.vae import VAE, VAE_CONFIGS, VAEConfig

__all__ = [
    "MEL_CONFIGS",
    "VAE",
    "VAE_CONFIGS",
    "VOCODER_CONFIGS",
    "VOCODER_REPO_44K",
    "AudioCodec",
    "AudioCodecConfig",
    "BigVGAN",
    "BigVGANConfig",
    "DiagonalGaussianDistribution",
    "MelConfig",
    "MelConverter",
    "VAEConfig",
    "build_audio_codec",
    "load_vae",
    "load_vocoder",
    "mel_converter",
]
