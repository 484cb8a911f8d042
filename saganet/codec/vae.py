"""The 1-D mel-spectrogram VAE of MMAudio (44.1 kHz and 16 kHz sizes).

Encoder: log-mel ``(B, data_dim, F)`` -> posterior over latents ``(B, embed_dim, F / 2)``.
Decoder: latents -> log-mel. Both are magnitude preserving (``mp_layers.py``); data are
standardised with per-band statistics held as buffers that the checkpoint overwrites.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch
from torch import nn

from saganet.codec.distributions import DiagonalGaussianDistribution
from saganet.codec.mel import named_mode
from saganet.codec.mp_layers import MPConv1D, mp_silu
from saganet.codec.vae_blocks import AttnBlock1D, Downsample1D, ResnetBlock1D, Upsample1D

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of the audio VAE.

    Args:
        data_dim: mel bands in and out (128 at 44.1 kHz, 80 at 16 kHz).
        embed_dim: latent channels (40 / 20).
        hidden_dim: width of the first level (512 / 384); level ``i`` has
            ``hidden_dim * ch_mult[i]`` channels.
        ch_mult: width multiplier of each level.
        num_res_blocks: residual blocks per encoder level (the decoder has one more).
        down_layers: encoder levels followed by a 2x time downsampling (the decoder mirrors them
            with an upsampling).
        kernel_size: kernel of the residual convolutions and of ``conv_in``/``conv_out``.
        clip_act: activations are clamped to ``[-clip_act, clip_act]`` after each block.
    """

    data_dim: int
    embed_dim: int
    hidden_dim: int
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    down_layers: tuple[int, ...] = (0,)
    kernel_size: int = 3
    clip_act: float = 256.0

    def __post_init__(self) -> None:
        # Accept lists (from JSON or Hydra) but store tuples so the config stays hashable.
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
        object.__setattr__(self, "down_layers", tuple(self.down_layers))
        bad = [i for i in self.down_layers if not 0 <= i < len(self.ch_mult)]
        if bad:
            raise ValueError(f"down_layers {bad} are not levels of ch_mult {self.ch_mult}")

    @property
    def downsample_factor(self) -> int:
        """Mel frames per latent step (2 for the published models)."""
        return 2 ** len(self.down_layers)

    def to_dict(self) -> dict:
        """Plain dict for saving inside checkpoints."""
        return dataclasses.asdict(self)


VAE_CONFIGS: dict[str, VAEConfig] = {
    "44k": VAEConfig(data_dim=128, embed_dim=40, hidden_dim=512),
    "16k": VAEConfig(data_dim=80, embed_dim=20, hidden_dim=384),
    # Tiny width for CPU tests; same depth, data and latent layout as "44k" but 8 latent channels.
    "debug": VAEConfig(data_dim=128, embed_dim=8, hidden_dim=16),
}


def vae_config(mode: str) -> VAEConfig:
    """The named VAE size: "44k" (also "44k_sa"), "16k" or "debug"."""
    return named_mode(VAE_CONFIGS, mode, "VAE")


class Encoder1D(nn.Module):
    """Log-mel -> Gaussian moments ``(B, 2 * embed_dim, T / downsample_factor)``.

    Args:
        config: the VAE architecture.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.clip_act = config.clip_act
        # Registered first so the state-dict order matches the published checkpoints.
        self.learnable_gain = nn.Parameter(torch.empty(()))
        self.conv_in = MPConv1D(config.data_dim, config.hidden_dim, config.kernel_size)
        self.down = nn.ModuleList()
        width = config.hidden_dim
        for level, mult in enumerate(config.ch_mult):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                stage.block.append(ResnetBlock1D(width, config.hidden_dim * mult,
                                                 config.kernel_size))
                width = config.hidden_dim * mult
            if level in config.down_layers:
                stage.downsample = Downsample1D(width)
            self.down.append(stage)
        self.mid = _MidBlock(width, config.kernel_size)
        self.conv_out = MPConv1D(width, 2 * config.embed_dim, config.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, data_dim, T) -> (B, 2 * embed_dim, T / downsample_factor)``."""
        h = self.conv_in(x)  # (B, hidden_dim, T)
        for stage in self.down:
            for block in stage.block:
                h = block(h).clamp(-self.clip_act, self.clip_act)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)  # time / 2
        h = self.mid(h).clamp(-self.clip_act, self.clip_act)
        return self.conv_out(mp_silu(h), gain=self.learnable_gain + 1)


class Decoder1D(nn.Module):
    """Latents ``(B, embed_dim, T)`` -> standardised log-mel ``(B, data_dim, T * factor)``.

    Levels run from the widest (last) to the first but are stored by level index
    (``up.0`` is the output level), as in the published checkpoints.

    Args:
        config: the VAE architecture.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.clip_act = config.clip_act
        self.learnable_gain = nn.Parameter(torch.empty(()))
        width = config.hidden_dim * config.ch_mult[-1]
        self.conv_in = MPConv1D(config.embed_dim, width, config.kernel_size)
        self.mid = _MidBlock(width, config.kernel_size)
        # The encoder downsamples after level i, so the decoder upsamples after level i + 1.
        up_levels = {i + 1 for i in config.down_layers}
        stages: list[nn.Module] = []
        for level in reversed(range(len(config.ch_mult))):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                stage.block.append(ResnetBlock1D(width, config.hidden_dim * config.ch_mult[level],
                                                 config.kernel_size))
                width = config.hidden_dim * config.ch_mult[level]
            if level in up_levels:
                stage.upsample = Upsample1D(width)
            stages.append(stage)
        self.up = nn.ModuleList(reversed(stages))
        self.conv_out = MPConv1D(width, config.data_dim, config.kernel_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, embed_dim, T) -> (B, data_dim, T * downsample_factor)``."""
        h = self.conv_in(z)  # (B, hidden_dim * ch_mult[-1], T)
        h = self.mid(h).clamp(-self.clip_act, self.clip_act)
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h).clamp(-self.clip_act, self.clip_act)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)  # time * 2
        return self.conv_out(mp_silu(h), gain=self.learnable_gain + 1)


class _MidBlock(nn.Module):
    """Residual, attention, residual at the lowest resolution (keys ``block_1/attn_1/block_2``)."""

    def __init__(self, width: int, kernel_size: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock1D(width, width, kernel_size)
        self.attn_1 = AttnBlock1D(width)
        self.block_2 = ResnetBlock1D(width, width, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class VAE(nn.Module):
    """Mel-spectrogram VAE with data standardisation.

    After loading a checkpoint call :meth:`remove_weight_norm` once (``load_vae`` does); every
    convolution refuses to run before that.

    Args:
        config: the architecture (see :data:`VAE_CONFIGS`).
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        shape = (1, config.data_dim, 1)
        self.register_buffer("data_mean", torch.empty(shape))
        self.register_buffer("data_std", torch.empty(shape))
        self.encoder: Encoder1D | None = Encoder1D(config)
        self.decoder = Decoder1D(config)
        self.init_weights()

    def init_weights(self) -> None:
        """Random weights for tests and benchmarks (real weights come from ``v1-*.pth``)."""
        with torch.no_grad():
            # Identity standardisation; the checkpoints carry the real per-band statistics.
            self.data_mean.zero_()
            self.data_std.fill_(1.0)
            for module in self.modules():
                if isinstance(module, MPConv1D):
                    # Scale is irrelevant: remove_weight_norm() normalises every filter.
                    nn.init.normal_(module.weight)
                    module.weight_norm_removed = False
            for coder in (self.encoder, self.decoder):
                if coder is not None:
                    # Zero-init: the output convolutions start at unit gain, as in training.
                    coder.learnable_gain.zero_()

    @property
    def weight_norm_removed(self) -> bool:
        """Whether :meth:`remove_weight_norm` has run."""
        return all(m.weight_norm_removed for m in self.modules() if isinstance(m, MPConv1D))

    def remove_weight_norm(self) -> VAE:
        """Fold the weight normalisation into every convolution (fp32; once, after loading)."""
        for module in self.modules():
            if isinstance(module, MPConv1D):
                module.remove_weight_norm()
        return self

    def drop_encoder(self) -> VAE:
        """Delete the encoder (inference only decodes); its keys leave the state dict."""
        self.encoder = None
        return self

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        """Standardise a log-mel ``(B, data_dim, T)`` with the per-band statistics."""
        return (mel - self.data_mean) / self.data_std

    def unnormalize(self, mel: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`normalize`."""
        return mel * self.data_std + self.data_mean

    def encode(self, mel: torch.Tensor, normalize: bool = True) -> DiagonalGaussianDistribution:
        """Posterior over latents ``(B, embed_dim, T / 2)`` for a log-mel ``(B, data_dim, T)``.

        Args:
            mel: log-mel spectrogram (``MelConverter`` output).
            normalize: standardise ``mel`` first (always, in SAGANet).
        """
        if self.encoder is None:
            raise RuntimeError("this VAE was built without its encoder (need_encoder=False)")
        if normalize:
            mel = self.normalize(mel)
        return DiagonalGaussianDistribution(self.encoder(mel))

    def decode(self, z: torch.Tensor, unnormalize: bool = True) -> torch.Tensor:
        """Log-mel ``(B, data_dim, 2T)`` from latents ``(B, embed_dim, T)`` (channel-first).

        Args:
            z: latents in VAE space (the flow network has already undone its own latent
                normalisation).
            unnormalize: map back from standardised to log-mel values (always, in SAGANet).
        """
        mel = self.decoder(z)
        return self.unnormalize(mel) if unnormalize else mel

    def forward(self, mel: torch.Tensor, sample_posterior: bool = True,
                generator: torch.Generator | None = None,
                ) -> tuple[torch.Tensor, DiagonalGaussianDistribution]:
        """Reconstruct ``mel`` through a sampled (or the mean) latent.

        Args:
            mel: log-mel ``(B, data_dim, T)``.
            sample_posterior: sample the latent; use the mean when ``False``.
            generator: random source for the sample.
        """
        posterior = self.encode(mel)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior
