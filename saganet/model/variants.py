"""Named network sizes (the CLI choices) and the builder that turns a name into a network.

SAGANet's published networks are MMAudio's small/medium 44.1 kHz networks with (``*_sa``) or
without (``*_sa_no_lora``) LoRA, run on 5 s clips. MMAudio's own sizes are listed too, since
SAGANet training starts from their weights. ``debug`` is a tiny LoRA network fed by the tiny
random CLIP/Synchformer/VAE models of the test pipeline.
"""

from __future__ import annotations

import dataclasses

from saganet.errors import UserInputError
from saganet.model.config import NetworkConfig
from saganet.model.network import FlowNetwork
from saganet.model.sequence import CONFIG_16K, CONFIG_44K, CONFIG_44K_SA, SequenceConfig

# Feature widths of the official encoders: CLIP ViT-H/14 (image and text) and Synchformer.
_OFFICIAL_FEATURES = {"clip_dim": 1024, "sync_dim": 768, "text_dim": 1024}
_SMALL = {"hidden_dim": 448, "num_heads": 7, "depth": 12, "fused_depth": 8}
_MEDIUM = {"hidden_dim": 896, "num_heads": 14, "depth": 12, "fused_depth": 8}
_LARGE = {"hidden_dim": 896, "num_heads": 14, "depth": 21, "fused_depth": 14}


def _variant(sequence: SequenceConfig, latent_dim: int = 40, **fields: object) -> NetworkConfig:
    base = NetworkConfig(latent_dim=latent_dim, **_OFFICIAL_FEATURES, **fields)
    return base.with_sequence(sequence)


VARIANTS: dict[str, NetworkConfig] = {
    # SAGANet (5 s at 44.1 kHz: 216 latents, 40 CLIP frames, 112 Synchformer tokens).
    "small_44k_sa": _variant(CONFIG_44K_SA, **_SMALL, use_lora=True),
    "small_44k_sa_no_lora": _variant(CONFIG_44K_SA, **_SMALL),
    "medium_44k_sa": _variant(CONFIG_44K_SA, **_MEDIUM, use_lora=True),
    "medium_44k_sa_no_lora": _variant(CONFIG_44K_SA, **_MEDIUM),
    # MMAudio (8 s clips); the starting points of SAGANet training.
    "small_16k": _variant(CONFIG_16K, latent_dim=20, **_SMALL),
    "small_44k": _variant(CONFIG_44K, **_SMALL),
    "medium_44k": _variant(CONFIG_44K, **_MEDIUM),
    "large_44k": _variant(CONFIG_44K, **_LARGE),
    "large_44k_v2": _variant(CONFIG_44K, **_LARGE, v2=True),
    # Tiny LoRA network for tests and the CPU debug experiment: one 64-wide head, one joint
    # and one fused block, fed by tiny random encoders (CLIP 64, Synchformer 48, VAE 8).
    "debug": NetworkConfig(latent_dim=8, clip_dim=64, sync_dim=48, text_dim=64, hidden_dim=64,
                           depth=2, fused_depth=1, num_heads=1,
                           use_lora=True).with_sequence(CONFIG_44K_SA),
}
# The debug size without LoRA, for the no-LoRA training recipe on CPU.
VARIANTS["debug_no_lora"] = dataclasses.replace(VARIANTS["debug"], use_lora=False)


def build_network(variant: str, sequence: SequenceConfig | None = None) -> FlowNetwork:
    """Build a randomly initialised network of a named size.

    Args:
        variant: a key of :data:`VARIANTS`.
        sequence: clip duration and rates; defaults to the variant's own (5 s at 44.1 kHz for
            SAGANet, 8 s for MMAudio's sizes). Only the RoPE tables and shape checks depend on it.

    Raises:
        UserInputError: ``variant`` is not a known name (the message lists the valid ones).
    """
    return FlowNetwork(network_config(variant, sequence))


def network_config(variant: str, sequence: SequenceConfig | None = None) -> NetworkConfig:
    """The configuration :func:`build_network` builds (arguments and errors as there), to
    change before building: a size derived from a named one is built once."""
    if variant not in VARIANTS:
        raise UserInputError(f"unknown network variant {variant!r}; choose one of "
                             + ", ".join(VARIANTS))
    config = VARIANTS[variant]
    if sequence is not None:
        config = config.with_sequence(sequence)
    return config
