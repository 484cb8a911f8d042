"""BigVGAN vocoder: log-mel -> waveform (follows NVIDIA BigVGAN v2, generator only, torch path).

One class serves BigVGAN-v2 (44.1 kHz, 128 bands, 512x: bias-free ``conv_post`` and a final
clamp) and BigVGAN v1 (16 kHz: ``conv_post`` bias and a final tanh), selected by
``use_bias_at_final``/``use_tanh_at_final`` exactly as the hub ``config.json`` does.

Every convolution carries PyTorch weight normalisation (``parametrizations.weight.original0/1``
keys). :meth:`BigVGAN.load_weights` also accepts the legacy ``weight_g``/``weight_v`` names and
already-folded plain ``weight`` keys; :meth:`BigVGAN.remove_weight_norm` folds the
normalisation into plain weights for inference.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from saganet.codec.alias_free import AntiAliasedActivation, UpSample1d
from saganet.codec.snake import Snake, SnakeBeta
from saganet.state_dict import load_state_dict_strict

log = logging.getLogger(__name__)

# Standard deviation of the convolution weights at initialisation (HiFi-GAN convention).
_INIT_STD = 0.01
_WN_G = "parametrizations.weight.original0"
_WN_V = "parametrizations.weight.original1"


@dataclass(frozen=True)
class BigVGANConfig:
    """Generator hyper-parameters, named as in BigVGAN's ``config.json``.

    Only the generator's fields are kept; training-only fields of a ``config.json``
    (optimiser, discriminators, losses, data loading) are ignored by :meth:`from_dict`.

    Args:
        upsample_rates: stride of each transposed-convolution stage (product = hop size).
        upsample_kernel_sizes: kernel of each stage.
        upsample_initial_channel: width after ``conv_pre``; halved at every stage.
        resblock_kernel_sizes: kernels of the parallel AMP blocks of a stage.
        resblock_dilation_sizes: dilations of each AMP block.
        num_mels: mel bands of the input.
        resblock: "1" (AMPBlock1, two convs per dilation; all published models) or "2".
        activation: "snakebeta" or "snake".
        snake_logscale: activation parameters are stored as logarithms.
        use_tanh_at_final: tanh on the output (v1); otherwise clamp to [-1, 1] (v2).
        use_bias_at_final: ``conv_post`` has a bias (v1).
        sampling_rate: audio rate in Hz (descriptive; the generator does not use it).
        hop_size: mel hop in samples (descriptive).
        n_fft: FFT size of the mel it expects (descriptive).
        win_size: window of the mel it expects (descriptive).
        fmin: lowest mel frequency (descriptive).
        fmax: highest mel frequency, ``None`` for Nyquist (descriptive).
    """

    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    num_mels: int
    resblock: str = "1"
    activation: str = "snakebeta"
    snake_logscale: bool = True
    # BigVGAN treats a config.json without these two keys as v1 (tanh, bias).
    use_tanh_at_final: bool = True
    use_bias_at_final: bool = True
    sampling_rate: int | None = None
    hop_size: int | None = None
    n_fft: int | None = None
    win_size: int | None = None
    fmin: float | None = None
    fmax: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "upsample_rates", tuple(self.upsample_rates))
        object.__setattr__(self, "upsample_kernel_sizes", tuple(self.upsample_kernel_sizes))
        object.__setattr__(self, "resblock_kernel_sizes", tuple(self.resblock_kernel_sizes))
        object.__setattr__(self, "resblock_dilation_sizes",
                           tuple(tuple(d) for d in self.resblock_dilation_sizes))
        object.__setattr__(self, "resblock", str(self.resblock))
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if self.activation not in ("snake", "snakebeta"):
            raise ValueError(f"activation must be 'snake' or 'snakebeta', got {self.activation!r}")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError("upsample_initial_channel must halve evenly at every stage")

    @property
    def upsample_factor(self) -> int:
        """Waveform samples per mel frame."""
        return math.prod(self.upsample_rates)

    @classmethod
    def from_dict(cls, values: Mapping) -> BigVGANConfig:
        """Build from a ``config.json`` dict; unknown (training-only) fields are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(set(values) - known)
        if ignored:
            log.debug("BigVGAN config: ignoring fields %s", ", ".join(ignored))
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict:
        """Plain dict in ``config.json`` field names (for saving)."""
        return dataclasses.asdict(self)


VOCODER_CONFIGS: dict[str, BigVGANConfig] = {
    # config.json of nvidia/bigvgan_v2_44khz_128band_512x (generator fields).
    "bigvgan_v2_44khz_128band_512x": BigVGANConfig(
        upsample_rates=(8, 4, 2, 2, 2, 2), upsample_kernel_sizes=(16, 8, 4, 4, 4, 4),
        upsample_initial_channel=1536, resblock_kernel_sizes=(3, 7, 11),
        resblock_dilation_sizes=((1, 3, 5),) * 3, num_mels=128,
        use_tanh_at_final=False, use_bias_at_final=False,
        sampling_rate=44_100, hop_size=512, n_fft=2048, win_size=2048, fmin=0, fmax=None),
    # BigVGAN v1 of Make-An-Audio 2 (best_netG.pt), used by the 16 kHz models.
    "bigvgan_v1_16k": BigVGANConfig(
        upsample_rates=(4, 4, 2, 2, 2, 2), upsample_kernel_sizes=(8, 8, 4, 4, 4, 4),
        upsample_initial_channel=1536, resblock_kernel_sizes=(3, 7, 11),
        resblock_dilation_sizes=((1, 3, 5),) * 3, num_mels=80,
        use_tanh_at_final=True, use_bias_at_final=True,
        sampling_rate=16_000, hop_size=256, n_fft=1024, win_size=1024, fmin=0, fmax=8000),
    # Tiny v2-style vocoder for CPU tests: still 512x, so it pairs with the 44.1 kHz mel.
    "debug": BigVGANConfig(
        upsample_rates=(8, 8, 8), upsample_kernel_sizes=(16, 16, 16),
        upsample_initial_channel=32, resblock_kernel_sizes=(3, 7, 11),
        resblock_dilation_sizes=((1, 3, 5),) * 3, num_mels=128,
        use_tanh_at_final=False, use_bias_at_final=False,
        sampling_rate=44_100, hop_size=512, n_fft=2048, win_size=2048, fmin=0, fmax=None),
}

ActivationWrapper = Callable[[nn.Module], nn.Module]

# Longest input vocoded in one pass (about 5.9 s at 44.1 kHz, so a 5 s window is one pass);
# longer inputs go in overlapping chunks (BigVGAN.forward). None: always one pass.
DEFAULT_CHUNK_FRAMES: int | None = 512


def _padding(kernel_size: int, dilation: int) -> int:
    """'Same' padding of an odd kernel with dilation."""
    return (kernel_size * dilation - dilation) // 2


def _conv_radius(conv: nn.Conv1d) -> int:
    """Input samples on either side of a stride-1 convolution's output sample that it reads."""
    span = conv.dilation[0] * (conv.kernel_size[0] - 1)
    return max(conv.padding[0], span - conv.padding[0])


def _snake(config: BigVGANConfig, channels: int) -> nn.Module:
    cls = SnakeBeta if config.activation == "snakebeta" else Snake
    return cls(channels, logscale=config.snake_logscale)


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity block: per dilation, act -> dilated conv -> act -> conv.

    Args:
        config: generator hyper-parameters (activation type).
        channels: width.
        kernel_size: kernel of all convolutions.
        dilations: dilation of each ``convs1`` layer (``convs2`` are undilated).
        wrap: builds the anti-aliased activation around a Snake module.
    """

    def __init__(self, config: BigVGANConfig, channels: int, kernel_size: int,
                 dilations: tuple[int, ...], wrap: ActivationWrapper) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d,
                      padding=_padding(kernel_size, d)) for d in dilations)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_padding(kernel_size, 1))
            for _ in dilations)
        # activations[2n] precedes convs1[n], activations[2n + 1] precedes convs2[n].
        self.activations = nn.ModuleList(wrap(_snake(config, channels))
                                         for _ in range(2 * len(dilations)))

    @property
    def radius(self) -> int:
        """Input samples on either side that one output sample can depend on."""
        return sum(_conv_radius(conv) for conv in [*self.convs1, *self.convs2]) + sum(
            act.radius for act in self.activations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T)``."""
        for n, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            t = conv1(self.activations[2 * n](x))
            t = conv2(self.activations[2 * n + 1](t))
            x = x + t
        return x


class AMPBlock2(nn.Module):
    """Lighter AMP block: per dilation, act -> dilated conv (no published model uses it).

    Args:
        config: generator hyper-parameters (activation type).
        channels: width.
        kernel_size: kernel of all convolutions.
        dilations: dilation of each convolution.
        wrap: builds the anti-aliased activation around a Snake module.
    """

    def __init__(self, config: BigVGANConfig, channels: int, kernel_size: int,
                 dilations: tuple[int, ...], wrap: ActivationWrapper) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d,
                      padding=_padding(kernel_size, d)) for d in dilations)
        self.activations = nn.ModuleList(wrap(_snake(config, channels)) for _ in dilations)

    @property
    def radius(self) -> int:
        """Input samples on either side that one output sample can depend on."""
        return sum(_conv_radius(conv) + act.radius
                   for conv, act in zip(self.convs, self.activations, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T)``."""
        for conv, act in zip(self.convs, self.activations, strict=True):
            x = x + conv(act(x))
        return x


class BigVGAN(nn.Module):
    """BigVGAN generator: ``(B, num_mels, F)`` log-mel -> ``(B, 1, F * upsample_factor)``.

    Built weight-normalised (the layout of the published ``bigvgan_generator.pt``); call
    :meth:`remove_weight_norm` after loading for inference (same outputs, fewer ops).

    Args:
        config: generator hyper-parameters.
        activation_wrapper: wraps each Snake module into the anti-aliased activation; replace
            it with a fused kernel that keeps the same submodule names to speed up inference.
    """

    def __init__(self, config: BigVGANConfig,
                 activation_wrapper: ActivationWrapper = AntiAliasedActivation) -> None:
        super().__init__()
        self.config = config
        width = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.num_mels, width, 7, padding=3)
        self.ups = nn.ModuleList()
        for rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True):
            # A one-element list per stage: the checkpoint keys are ``ups.<i>.0.*``.
            self.ups.append(nn.ModuleList([nn.ConvTranspose1d(
                width, width // 2, kernel, rate, padding=(kernel - rate) // 2)]))
            width //= 2
        block_cls = AMPBlock1 if config.resblock == "1" else AMPBlock2
        self.resblocks = nn.ModuleList()
        for stage in range(len(self.ups)):
            channels = config.upsample_initial_channel // 2 ** (stage + 1)
            for kernel, dilations in zip(config.resblock_kernel_sizes,
                                         config.resblock_dilation_sizes, strict=True):
                self.resblocks.append(block_cls(config, channels, kernel, dilations,
                                                activation_wrapper))
        self.activation_post = activation_wrapper(_snake(config, width))
        self.conv_post = nn.Conv1d(width, 1, 7, padding=3, bias=config.use_bias_at_final)
        self._init_weights()
        for _, layer in self._named_weight_norm_layers():
            weight_norm(layer, name="weight", dim=0)
        self.chunk_frames = DEFAULT_CHUNK_FRAMES

    def _init_weights(self) -> None:
        """Random weights for tests and benchmarks; runs before weight norm is applied."""
        with torch.no_grad():
            for _, layer in self._named_weight_norm_layers():
                if layer is not self.conv_pre:  # conv_pre keeps PyTorch's default init
                    layer.weight.normal_(0.0, _INIT_STD)
            for module in self.modules():
                if isinstance(module, (Snake, SnakeBeta)):
                    module.reset_parameters()

    def weight_norm_layers(self) -> Iterator[nn.Module]:
        """The convolutions that carry weight norm in published checkpoints."""
        for _, module in self._named_weight_norm_layers():
            yield module

    def _named_weight_norm_layers(self) -> Iterator[tuple[str, nn.Module]]:
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                yield name, module

    @property
    def num_kernels(self) -> int:
        return len(self.config.resblock_kernel_sizes)

    @property
    def weight_norm_parametrized(self) -> bool:
        """Whether the convolutions still carry the weight-norm parametrisation."""
        return parametrize.is_parametrized(self.conv_pre, "weight")

    def set_fast_inference(self, enabled: bool = True) -> BigVGAN:
        """Run the anti-aliased activations fused and polyphase (default) or one op at a time
        as the reference does (the baseline of ``benchmarks/pipeline.py``); the outputs agree
        up to float rounding.

        Args:
            enabled: use the fused activations.
        """
        for module in self.modules():
            if isinstance(module, AntiAliasedActivation):
                module.fused = enabled
            elif isinstance(module, UpSample1d):
                module.polyphase = enabled
        return self

    def remove_weight_norm(self) -> BigVGAN:
        """Fold ``g * v / ||v||`` into plain ``weight`` parameters; later calls do nothing."""
        if self.weight_norm_parametrized:
            for _, layer in self._named_weight_norm_layers():
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        return self

    def load_weights(self, state_dict: Mapping[str, torch.Tensor],
                     what: str = "checkpoint") -> None:
        """Strictly load a generator state dict in any of the three weight-norm layouts.

        Parametrised (``parametrizations.weight.original0/1``), legacy (``weight_g/weight_v``)
        or folded (plain ``weight``) keys are all accepted, whatever this module's current
        state; a folded checkpoint folds this module first.

        Args:
            state_dict: the weights (the ``"generator"`` entry of ``bigvgan_generator.pt``).
            what: name of the source used in error messages (usually the file).
        """
        state_dict = rename_legacy_weight_norm_keys(state_dict)
        layers = [name for name, _ in self._named_weight_norm_layers()]
        folded = any(_key(name, "weight") in state_dict for name in layers)
        if folded:
            self.remove_weight_norm()
        elif not self.weight_norm_parametrized:
            state_dict = fold_weight_norm_state_dict(state_dict, layers)
        load_state_dict_strict(self, state_dict, what=what)

    @property
    def receptive_field(self) -> int:
        """Mel frames on either side of a frame that its output samples can depend on.

        Walks the layers backwards from the output. A transposed convolution (kernel ``K``,
        stride ``s``, padding ``p``) writes input ``m`` to outputs ``m * s - p .. m * s - p +
        K - 1``, so the ``s`` outputs of input ``a`` widened by ``R`` on each side read inputs
        ``a - (R + K - 1 - p) // s .. a + (R + s - 1 + p) // s``.
        """
        radius = _conv_radius(self.conv_post) + self.activation_post.radius
        k = self.num_kernels
        for stage in reversed(range(len(self.ups))):
            radius += max(block.radius for block in self.resblocks[stage * k:(stage + 1) * k])
            up = self.ups[stage][0]
            kernel, stride, pad = up.kernel_size[0], up.stride[0], up.padding[0]
            radius = max((radius + kernel - 1 - pad) // stride,
                         (radius + stride - 1 + pad) // stride)
        return radius + _conv_radius(self.conv_pre)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, 1, F * upsample_factor)`` in [-1, 1] from log-mel ``(B, num_mels, F)``.

        Inputs longer than :attr:`chunk_frames` (``None``: never) are vocoded in chunks of at
        most that many frames, each read with :attr:`receptive_field` frames of context on
        both sides, so every output sample sees the same input as in one pass and the audio
        equals the one-pass audio up to float rounding. This bounds the memory of long clips:
        in one pass the last stages' activations grow with the output length (hundreds of
        megabytes for tens of seconds at 44.1 kHz), and the heap kept between passes fragments.
        """
        frames = mel.shape[-1]
        if self.chunk_frames is None or frames <= self.chunk_frames:
            return self._forward_pass(mel)
        context, hop = self.receptive_field, self.config.upsample_factor
        count = -(-frames // self.chunk_frames)
        size = -(-frames // count)  # equal chunks: no short tail paying a full context
        audio = mel.new_empty(mel.shape[0], 1, frames * hop)
        for start in range(0, frames, size):
            stop = min(start + size, frames)
            first, last = max(0, start - context), min(frames, stop + context)
            chunk = self._forward_pass(mel[..., first:last])
            audio[..., start * hop:stop * hop] = chunk[..., (start - first) * hop:
                                                       (stop - first) * hop]
        return audio

    def _forward_pass(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)  # (B, C0, F)
        k = self.num_kernels
        for stage, (up,) in enumerate(self.ups):
            x = up(x)  # (B, C_i / 2, T * rate_i)
            blocks = self.resblocks[stage * k:(stage + 1) * k]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / k  # the parallel AMP blocks are averaged
        x = self.conv_post(self.activation_post(x))  # (B, 1, T)
        if self.config.use_tanh_at_final:
            return torch.tanh(x)
        return x.clamp(-1.0, 1.0)


def _key(layer: str, suffix: str) -> str:
    return f"{layer}.{suffix}" if layer else suffix


def rename_legacy_weight_norm_keys(state_dict: Mapping[str, torch.Tensor],
                                   ) -> dict[str, torch.Tensor]:
    """Rename ``<layer>.weight_g/_v`` (old ``torch.nn.utils.weight_norm``) to the current
    ``<layer>.parametrizations.weight.original0/1``; other keys pass unchanged.

    Args:
        state_dict: a state dict in either naming.
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(".weight_g"):
            key = key.removesuffix("weight_g") + _WN_G
        elif key.endswith(".weight_v"):
            key = key.removesuffix("weight_v") + _WN_V
        renamed[key] = value
    return renamed


def fold_weight_norm_state_dict(state_dict: Mapping[str, torch.Tensor],
                                layers: list[str]) -> dict[str, torch.Tensor]:
    """Replace each layer's ``g``/``v`` entries by the folded ``weight = g * v / ||v||``.

    Args:
        state_dict: weights with ``parametrizations.weight.original0/1`` keys.
        layers: names of the weight-normalised layers (norm over all dims but 0).
    """
    folded = dict(state_dict)
    for layer in layers:
        g_key, v_key = _key(layer, _WN_G), _key(layer, _WN_V)
        if g_key in folded and v_key in folded:
            g, v = folded.pop(g_key), folded.pop(v_key)
            # The kernel PyTorch's own parametrisation uses, so folding here is bit-identical
            # to remove_weight_norm() on a parametrised module.
            folded[_key(layer, "weight")] = torch._weight_norm(v, g, 0)
    return folded
