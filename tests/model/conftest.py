"""Tiny flow networks with every parameter randomised, and matching inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from saganet.model import VARIANTS, FlowNetwork, NetworkConfig, SequenceConfig

# 1 s at 16 kHz: 32 latents, 8 CLIP frames, 16 Synchformer tokens (two windows).
TINY_SEQUENCE = SequenceConfig(duration=1.0, sampling_rate=16000, hop=256)
TINY_CONFIG = dataclasses.replace(VARIANTS["debug"].with_sequence(TINY_SEQUENCE), text_seq_len=5)
BATCH = 2


@torch.no_grad()
def randomize(net: FlowNetwork, seed: int = 0) -> FlowNetwork:
    """Give every parameter (zero-initialised ones and LoRA B included) a random value."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in net.named_parameters():
        if name == "latent_std":
            param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
        else:
            # Unit-variance activations: weights ~ N(0, 1/fan_in), vectors ~ N(0, 0.1^2).
            fan_in = param[0].numel() if param.dim() > 1 else 100
            param.copy_(torch.randn(param.shape, generator=generator) / fan_in ** 0.5)
    return net


@pytest.fixture
def make_network() -> Callable[..., FlowNetwork]:
    """``make_network(seed=0, **config_changes)``: a randomised tiny network."""

    def make(seed: int = 0, **changes: object) -> FlowNetwork:
        return randomize(FlowNetwork(dataclasses.replace(TINY_CONFIG, **changes)), seed)

    return make


def _make_inputs(config: NetworkConfig, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random latents, features and times for ``config``."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return {
        "latent": randn(BATCH, config.latent_seq_len, config.latent_dim),
        "clip_f": randn(BATCH, config.clip_seq_len, config.clip_dim),
        "sync_f": randn(BATCH, config.sync_seq_len, config.sync_dim),
        "text_f": randn(BATCH, config.text_seq_len, config.text_dim),
        "t": torch.rand(BATCH, generator=generator),
    }


@pytest.fixture
def tiny_config() -> NetworkConfig:
    """The tiny network's config (the ``debug`` variant on 1 s clips, 5 text tokens)."""
    return TINY_CONFIG


@pytest.fixture
def make_inputs() -> Callable[..., dict[str, torch.Tensor]]:
    """``make_inputs(config, seed=1)``: random network inputs for ``config``."""
    return _make_inputs


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    return _make_inputs(TINY_CONFIG)
