"""Architecture hyper-parameters of the (segmentation-aware) Synchformer video encoder.

One frozen dataclass holds every size knob; its defaults are the official MotionFormer
configuration used by MMAudio and SAGANet (16 frames of 224x224 -> 8 tokens of 768 dims), so a
checkpoint written with :meth:`SynchformerConfig.to_dict` rebuilds its own model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SynchformerConfig:
    """Sizes of the MotionFormer backbone and of the focal/context cross-attention.

    Args:
        img_size: frame height and width in pixels (frames are square).
        patch_size: spatial side of a patch (3-D and unused 2-D patch embedding).
        patch_size_temp: frames per 3-D patch (temporal stride of the patch embedding).
        temporal_resolution: tokens along time per segment, i.e. frames per segment divided by
            ``patch_size_temp``; also the number of sync tokens one segment yields.
        embed_dim: token width of the backbone, the cross-attention and the output features.
        depth: number of divided space-time blocks (and of gated cross-attention layers).
        num_heads: attention heads of the backbone blocks and of the spatial aggregation layer.
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim`` (backbone, aggregation and
            cross-attention MLPs).
        qkv_bias: whether the backbone's qkv projections have a bias.
        cross_attn_heads: heads of the focal/context cross-attention (12 even when the backbone
            is shrunk, so the head width is ``embed_dim // cross_attn_heads``).
        in_chans: channels of the video frames.
        mask_chans: channels of the segmentation masks.
        layer_norm_eps: epsilon of every LayerNorm.
    """

    img_size: int = 224
    patch_size: int = 16
    patch_size_temp: int = 2
    temporal_resolution: int = 8
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    cross_attn_heads: int = 12
    in_chans: int = 3
    mask_chans: int = 1
    layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size "
                             f"{self.patch_size}")
        for heads, what in ((self.num_heads, "num_heads"),
                            (self.cross_attn_heads, "cross_attn_heads")):
            if self.embed_dim % heads:
                raise ValueError(f"embed_dim {self.embed_dim} is not divisible by {what} {heads}")

    @classmethod
    def debug(cls) -> SynchformerConfig:
        """Tiny CPU size used by the ``debug`` pipeline (sync features of width 48).

        Three cross-attention heads (one focal, two context) keep the full-length
        cross-attention cheap on CPU.
        """
        return cls(embed_dim=48, depth=2, num_heads=2, cross_attn_heads=3)

    @property
    def frames_per_segment(self) -> int:
        """Video frames one forward pass of the encoder consumes per segment (16)."""
        return self.temporal_resolution * self.patch_size_temp

    @property
    def patches_per_frame(self) -> int:
        """Spatial tokens per temporal slice (14 x 14 = 196 at official size)."""
        return (self.img_size // self.patch_size) ** 2

    @property
    def mlp_dim(self) -> int:
        """Hidden width of every MLP (3072 at official size)."""
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for saving inside checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SynchformerConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SynchformerConfig keys: {unknown}")
        return cls(**values)


# Named sizes (the CLI/Hydra choices).
SYNCHFORMER_SIZES: dict[str, Callable[[], SynchformerConfig]] = {
    "official": SynchformerConfig,
    "debug": SynchformerConfig.debug,
}
