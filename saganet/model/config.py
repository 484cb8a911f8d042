"""The architecture hyper-parameters of the flow network, in one typed dataclass.

A :class:`NetworkConfig` fully describes a network: the checkpoints we write embed
``dataclasses.asdict(config)`` so that a file rebuilds its own model
(:meth:`NetworkConfig.from_dict`). Sequence lengths are part of it because they size the RoPE
tables and the shape checks, but they never change a parameter shape (see ``sequence.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from saganet.model.sequence import SYNC_TOKENS_PER_SEGMENT, SequenceConfig


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters of the MM-DiT flow network.

    Args:
        latent_dim: channels of the audio latent (40 at 44.1 kHz, 20 at 16 kHz).
        clip_dim: width of the CLIP image features.
        sync_dim: width of the Synchformer features.
        text_dim: width of the CLIP text features.
        hidden_dim: transformer width D.
        depth: total number of blocks (joint + fused).
        fused_depth: number of single-stream (latent only) blocks after the joint blocks.
        num_heads: attention heads; head width is ``hidden_dim // num_heads``.
        mlp_ratio: nominal SwiGLU hidden size as a multiple of D (before the 2/3 rule).
        v2: MMAudio's v2 input projections and timestep embedding (large_44k_v2 only).
        use_lora: add LoRA factors to the qkv projection of the latent stream.
        lora_rank: LoRA rank r.
        lora_alpha: LoRA alpha; the update is scaled by ``alpha / r``.
        latent_seq_len: audio latent tokens per clip.
        clip_seq_len: CLIP frame tokens per clip.
        sync_seq_len: Synchformer tokens per clip (a multiple of 8).
        text_seq_len: text tokens (the CLIP tokenizer context, 77); sizes ``empty_string_feat``.
    """

    latent_dim: int
    clip_dim: int
    sync_dim: int
    text_dim: int
    hidden_dim: int
    depth: int
    fused_depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    v2: bool = False
    use_lora: bool = False
    lora_rank: int = 16
    lora_alpha: float = 32.0
    latent_seq_len: int = 216
    clip_seq_len: int = 40
    sync_seq_len: int = 112
    text_seq_len: int = 77

    def __post_init__(self) -> None:
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by "
                             f"{self.num_heads} heads")
        if self.head_dim % 2:
            raise ValueError(f"head width {self.head_dim} must be even for rotary embeddings")
        if not 0 <= self.fused_depth < self.depth:
            raise ValueError(f"need at least one joint block: depth {self.depth}, "
                             f"fused_depth {self.fused_depth}")
        if self.sync_seq_len % SYNC_TOKENS_PER_SEGMENT:
            raise ValueError(f"sync_seq_len {self.sync_seq_len} is not a whole number of "
                             f"{SYNC_TOKENS_PER_SEGMENT}-token Synchformer segments")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_dim // self.num_heads

    @property
    def joint_depth(self) -> int:
        """Number of joint (latent + CLIP + text) blocks; the last one is pre-attention only."""
        return self.depth - self.fused_depth

    @property
    def lora_scaling(self) -> float:
        """Factor applied to the LoRA update ``B @ A``."""
        return self.lora_alpha / self.lora_rank

    def with_sequence(self, sequence: SequenceConfig) -> NetworkConfig:
        """The same architecture with the token counts of ``sequence``.

        Args:
            sequence: duration and rates of the clips the network will process.
        """
        return dataclasses.replace(self, latent_seq_len=sequence.latent_seq_len,
                                   clip_seq_len=sequence.clip_seq_len,
                                   sync_seq_len=sequence.sync_seq_len)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> NetworkConfig:
        """Rebuild a config saved with ``dataclasses.asdict``; unknown keys are an error.

        Args:
            values: the saved fields.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown NetworkConfig fields {unknown}")
        return cls(**values)
