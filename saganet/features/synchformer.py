"""Synchformer visual feature extractors: MMAudio's plain one and SAGANet's segmentation-aware one.

The segmentation-aware encoder runs the MotionFormer twice per segment. Pass 1 (no gradient)
encodes the full frames plus a mask patch embedding into context tokens. Pass 2 encodes the
focal crop (plus its mask embedding); after every block a gated cross-attention layer mixes in
the *final* pass-1 tokens (CLS included, before the final norm). The pooled pass-2 tokens are
the sync features.

Both wrappers take windows laid out ``(B', S, T, C, H, W)`` (T = 16 frames) and return
``(B', S, 8, D)``; :mod:`saganet.features.segments` cuts clips into such windows.
"""

from __future__ import annotations

import torch
from torch import nn

from saganet.features.config import SynchformerConfig
from saganet.features.cross_attention import GatedCrossAttentionLayer
from saganet.features.motionformer import MotionFormer, PatchEmbed3d

# Parameter-name prefixes of the SAGANet additions (trainable; absent from MMAudio's file).
CONTEXT_PARAMETER_PREFIXES = ("patch_embed_3d_mask.", "cross_attn_layers.")


class MotionFormerWithContext(MotionFormer):
    """MotionFormer with a mask stream and focal/context cross-attention.

    Args:
        config: sizes (defaults = official).
    """

    def __init__(self, config: SynchformerConfig) -> None:
        super().__init__(config)
        dim = config.embed_dim
        self.patch_embed_3d_mask = PatchEmbed3d(config.mask_chans, dim, config.patch_size,
                                                config.patch_size_temp)
        self.cross_attn_layers = nn.ModuleList(
            GatedCrossAttentionLayer(dim, config.cross_attn_heads, config.mlp_dim,
                                     config.layer_norm_eps)
            for _ in range(config.depth)
        )
        self._init_context_weights()
        self.set_context_trainable(True)

    def _init_context_weights(self) -> None:
        """Initialise the SAGANet additions as the published model was trained from."""
        self.patch_embed_3d_mask.proj.reset_parameters()
        # Zero mask-embedding weight (the bias keeps its default random init, as trained): the
        # mask stream starts without influence on the pre-trained backbone.
        nn.init.zeros_(self.patch_embed_3d_mask.proj.weight)
        for layer in self.cross_attn_layers:
            layer.reset_parameters()  # zero gates, see GatedCrossAttentionLayer

    def set_context_trainable(self, trainable: bool = True) -> None:
        """Set ``requires_grad=trainable`` on the mask embedding and cross-attention layers.

        Every other parameter (backbone, embeddings, aggregation) is frozen regardless. Called
        with ``True`` at construction, so only the SAGANet additions train by default.

        Args:
            trainable: whether the context parameters receive gradients.
        """
        for name, param in self.named_parameters():
            param.requires_grad_(trainable and name.startswith(CONTEXT_PARAMETER_PREFIXES))

    def embed_with_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frame + mask patch tokens, CLS and positions: -> ``(BS, 1 + F*N, D)``."""
        self.check_input(x, self.config.in_chans, "frames")
        self.check_input(mask, self.config.mask_chans, "mask")
        return self.embed(self.patch_embed_3d(x) + self.patch_embed_3d_mask(mask))

    def context_tokens(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pass 1: full frames and masks ``(BS, C, T, H, W)`` -> ``(BS, 1 + F*N, D)``.

        Returns the final block output, before the final norm. Runs without gradient (as
        trained): the cross-attention only ever learns from pass 2.
        """
        with torch.no_grad():
            y = self.embed_with_mask(x, mask)
            for block in self.blocks:
                y = block(y)
        return y

    def focal_tokens(self, detail_x: torch.Tensor, detail_mask: torch.Tensor,
                     context: torch.Tensor) -> torch.Tensor:
        """Pass 2: focal crop and its mask, attending to ``context`` after every block."""
        y = self.embed_with_mask(detail_x, detail_mask)
        for block, cross in zip(self.blocks, self.cross_attn_layers, strict=True):
            y = cross(block(y), context)
        return y

    def forward(self, x: torch.Tensor, mask: torch.Tensor,  # type: ignore[override]
                detail_x: torch.Tensor, detail_mask: torch.Tensor) -> torch.Tensor:
        """Segments ``(BS, C, T, H, W)`` (C = 3 for frames, 1 for masks) -> ``(BS, F, D)``."""
        context = self.context_tokens(x, mask)
        return self.head(self.focal_tokens(detail_x, detail_mask, context))


def _windows_to_segments(x: torch.Tensor, what: str) -> torch.Tensor:
    """``(B', S, T, C, H, W)`` -> ``(B'*S, C, T, H, W)``."""
    if x.dim() != 6:
        raise ValueError(f"{what}: expected (B, S, T, C, H, W), got {tuple(x.shape)}")
    return x.permute(0, 1, 3, 2, 4, 5).flatten(0, 1)


class Synchformer(nn.Module):
    """MMAudio's visual Synchformer: one pass over full frames, no masks.

    Args:
        config: sizes (defaults = official).
    """

    def __init__(self, config: SynchformerConfig | None = None) -> None:
        super().__init__()
        self.config = config or SynchformerConfig()
        self.vfeat_extractor = MotionFormer(self.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows ``(B', S, T, 3, H, W)`` in [-1, 1] -> features ``(B', S, F, D)``."""
        b, s = x.shape[:2]
        out = self.vfeat_extractor(_windows_to_segments(x, "frames"))  # (B'*S, F, D)
        return out.unflatten(0, (b, s))


class SynchformerWithContext(nn.Module):
    """SAGANet's segmentation-aware Synchformer.

    Only the mask embedding and the cross-attention layers are trainable after construction
    (see :meth:`MotionFormerWithContext.set_context_trainable`).

    Args:
        config: sizes (defaults = official).
    """

    def __init__(self, config: SynchformerConfig | None = None) -> None:
        super().__init__()
        self.config = config or SynchformerConfig()
        self.vfeat_extractor = MotionFormerWithContext(self.config)

    def set_context_trainable(self, trainable: bool = True) -> None:
        """See :meth:`MotionFormerWithContext.set_context_trainable`."""
        self.vfeat_extractor.set_context_trainable(trainable)

    def set_fast_inference(self, enabled: bool = True) -> SynchformerWithContext:
        """Patch embeddings as matrix products on the CPU (default) or as the reference's
        3-D convolutions (the baseline of ``benchmarks/pipeline.py``); the outputs agree up
        to float rounding.

        Args:
            enabled: use the matrix products.
        """
        for module in self.modules():
            if isinstance(module, PatchEmbed3d):
                module.as_matmul = enabled
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor, detail_x: torch.Tensor,
                detail_mask: torch.Tensor) -> torch.Tensor:
        """Encode windows of full frames, masks and their focal crops.

        Args:
            x: full frames ``(B', S, T, 3, H, W)`` in [-1, 1].
            mask: full masks ``(B', S, T, 1, H, W)`` in [0, 1].
            detail_x: focal-crop frames, same layout as ``x``.
            detail_mask: focal-crop masks, same layout as ``mask``.

        Returns:
            ``(B', S, F, D)`` sync features (F = 8, D = 768 at official size).
        """
        b, s = x.shape[:2]
        tensors = {"frames": x, "mask": mask, "detail frames": detail_x,
                   "detail mask": detail_mask}
        for what, t in tensors.items():
            if t.shape[:2] != (b, s):
                raise ValueError(f"{what}: leading dims {tuple(t.shape[:2])} != frames' {(b, s)}")
        segments = [_windows_to_segments(t, what) for what, t in tensors.items()]
        out = self.vfeat_extractor(*segments)  # (B'*S, F, D)
        return out.unflatten(0, (b, s))
