"""Transformer blocks of the MM-DiT: self-attention projections, the adaLN single-stream
block, the joint (latent + CLIP + text) block and the final output layer."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from saganet.model.layers import MLP, ChannelLastConv1d, ConvMLP, attention, modulate
from saganet.model.lora import LoRALinear
from saganet.model.rope import apply_rope


class QKV(NamedTuple):
    """Queries, keys and values, each ``(B, H, L, d)``."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor


class SelfAttention(nn.Module):
    """qkv projection, per-head RMSNorm of q and k, and rotary embeddings.

    The attention itself is done by the caller, which may concatenate several streams first.

    Args:
        dim: width D.
        num_heads: number of heads H.
        lora_rank: LoRA rank for the qkv projection, or 0 for a plain linear.
        lora_alpha: LoRA alpha (ignored without LoRA).
    """

    def __init__(self, dim: int, num_heads: int, lora_rank: int = 0,
                 lora_alpha: float = 1.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        if lora_rank:
            self.qkv: nn.Linear = LoRALinear(dim, 3 * dim, lora_rank, lora_alpha)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        # eps=None: PyTorch's default (machine epsilon of the compute dtype), as trained.
        self.q_norm = nn.RMSNorm(head_dim, eps=None)
        self.k_norm = nn.RMSNorm(head_dim, eps=None)

    def pre_attention(self, x: torch.Tensor, rotations: torch.Tensor | None) -> QKV:
        """Project ``x`` ``(B, L, D)`` to normalised, rotated heads.

        Args:
            x: modulated tokens.
            rotations: RoPE table ``(1, L, d/2, 2, 2)`` or None (text tokens).
        """
        qkv = self.qkv(x)  # (B, L, 3D)
        # Channels are ordered (head, dim, q/k/v) with q/k/v innermost, as in the published weights.
        qkv = qkv.unflatten(-1, (self.num_heads, -1, 3)).permute(4, 0, 2, 1, 3)  # (3,B,H,L,d)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rotations is not None:
            q, k = apply_rope(q, rotations), apply_rope(k, rotations)
        return QKV(q, k, v)


class Modulation(NamedTuple):
    """adaLN shift/scale/gate vectors of one block, each broadcastable to ``(B, L, D)``."""

    shift_msa: torch.Tensor
    scale_msa: torch.Tensor
    gate_msa: torch.Tensor | None = None
    shift_mlp: torch.Tensor | None = None
    scale_mlp: torch.Tensor | None = None
    gate_mlp: torch.Tensor | None = None


class MMDitSingleBlock(nn.Module):
    """One stream's adaLN transformer block, split around the attention.

    Pre-only blocks (the CLIP/text streams of the last joint block) only produce q/k/v; their
    token outputs are never used.

    Args:
        dim: width D.
        num_heads: number of heads H.
        mlp_ratio: nominal SwiGLU hidden size over D.
        pre_only: only the pre-attention half (no output projection, no MLP).
        kernel_size: 1 for Linear/MLP, >1 for convolutions over tokens.
        padding: convolution padding (keeps the token count).
        lora_rank: LoRA rank on the qkv projection, 0 for none.
        lora_alpha: LoRA alpha.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, pre_only: bool = False,
                 kernel_size: int = 7, padding: int = 3, lora_rank: int = 0,
                 lora_alpha: float = 1.0) -> None:
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = SelfAttention(dim, num_heads, lora_rank, lora_alpha)
        nominal_hidden = int(dim * mlp_ratio)
        if not pre_only:
            if kernel_size == 1:
                self.linear1: nn.Module = nn.Linear(dim, dim)
                self.ffn: nn.Module = MLP(dim, nominal_hidden)
            else:
                self.linear1 = ChannelLastConv1d(dim, dim, kernel_size, padding=padding)
                self.ffn = ConvMLP(dim, nominal_hidden, kernel_size, padding)
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        chunks = 2 if pre_only else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, chunks * dim))

    def pre_attention(self, x: torch.Tensor, c: torch.Tensor, rotations: torch.Tensor | None,
                      c_index: torch.Tensor | None = None) -> tuple[QKV, Modulation]:
        """Modulate ``x`` ``(B, L, D)`` by ``c`` and project to heads.

        Args:
            x: tokens.
            c: conditioning ``(B, 1 or L, D)``, or ``(B, U, D)`` distinct rows with ``c_index``.
            rotations: RoPE table or None.
            c_index: ``(L,)`` row of ``c`` for each token: the modulation is computed once per
                distinct row and then gathered (same values as on the repeated rows).
        """
        shifts = self.adaLN_modulation(c)  # (B, 1 or L or U, chunks * D)
        if c_index is not None:
            shifts = shifts.index_select(1, c_index)  # (B, L, chunks * D)
        modulation = Modulation(*shifts.chunk(2 if self.pre_only else 6, dim=-1))
        x = modulate(self.norm1(x), modulation.shift_msa, modulation.scale_msa)
        return self.attn.pre_attention(x, rotations), modulation

    def post_attention(self, x: torch.Tensor, attn_out: torch.Tensor,
                       modulation: Modulation) -> torch.Tensor:
        """Gated residual attention output and MLP; pre-only blocks return ``x`` unchanged."""
        if self.pre_only:
            return x
        x = x + self.linear1(attn_out) * modulation.gate_msa
        hidden = modulate(self.norm2(x), modulation.shift_mlp, modulation.scale_mlp)
        return x + self.ffn(hidden) * modulation.gate_mlp

    def forward(self, x: torch.Tensor, c: torch.Tensor, rotations: torch.Tensor | None,
                c_index: torch.Tensor | None = None) -> torch.Tensor:
        """Stand-alone use (fused blocks): attention over this stream only (see
        :meth:`pre_attention` for the arguments)."""
        qkv, modulation = self.pre_attention(x, c, rotations, c_index)
        return self.post_attention(x, attention(*qkv), modulation)


class JointBlock(nn.Module):
    """Latent, CLIP and text streams with their own weights and one shared attention.

    Args:
        dim: width D.
        num_heads: number of heads H.
        mlp_ratio: nominal SwiGLU hidden size over D.
        pre_only: the last joint block, whose CLIP/text outputs are unused.
        lora_rank: LoRA rank on the LATENT stream's qkv (0 for none); CLIP/text never get LoRA.
        lora_alpha: LoRA alpha.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, pre_only: bool = False,
                 lora_rank: int = 0, lora_alpha: float = 1.0) -> None:
        super().__init__()
        self.latent_block = MMDitSingleBlock(dim, num_heads, mlp_ratio, pre_only=False,
                                             kernel_size=3, padding=1, lora_rank=lora_rank,
                                             lora_alpha=lora_alpha)
        self.clip_block = MMDitSingleBlock(dim, num_heads, mlp_ratio, pre_only=pre_only,
                                           kernel_size=3, padding=1)
        self.text_block = MMDitSingleBlock(dim, num_heads, mlp_ratio, pre_only=pre_only,
                                           kernel_size=1)

    def forward(self, latent: torch.Tensor, clip_f: torch.Tensor, text_f: torch.Tensor,
                global_c: torch.Tensor, extended_c: torch.Tensor, latent_rot: torch.Tensor,
                clip_rot: torch.Tensor, extended_index: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Update the three streams.

        Args:
            latent: ``(B, N, D)`` audio tokens, conditioned per token by ``extended_c``.
            clip_f: ``(B, Nc, D)`` CLIP tokens, conditioned by ``global_c``.
            text_f: ``(B, Nt, D)`` text tokens, conditioned by ``global_c``; no RoPE.
            global_c: ``(B, 1, D)`` global conditioning.
            extended_c: ``(B, N, D)`` global conditioning plus aligned Synchformer features
                (or its distinct rows, with ``extended_index``).
            latent_rot: RoPE table of the latent tokens.
            clip_rot: RoPE table of the CLIP tokens (positions scaled to the latent timeline).
            extended_index: ``(N,)`` row of ``extended_c`` for each latent token, or None.
        """
        latent_qkv, latent_mod = self.latent_block.pre_attention(latent, extended_c, latent_rot,
                                                                 extended_index)
        clip_qkv, clip_mod = self.clip_block.pre_attention(clip_f, global_c, clip_rot)
        text_qkv, text_mod = self.text_block.pre_attention(text_f, global_c, None)

        lengths = [latent.shape[1], clip_f.shape[1], text_f.shape[1]]
        # One attention over [latent | clip | text] tokens, in that order.
        joint = [torch.cat(parts, dim=2) for parts in zip(latent_qkv, clip_qkv, text_qkv,
                                                         strict=True)]
        latent_out, clip_out, text_out = attention(*joint).split(lengths, dim=1)

        latent = self.latent_block.post_attention(latent, latent_out, latent_mod)
        clip_f = self.clip_block.post_attention(clip_f, clip_out, clip_mod)
        text_f = self.text_block.post_attention(text_f, text_out, text_mod)
        return latent, clip_f, text_f


class FinalBlock(nn.Module):
    """adaLN-modulated LayerNorm and a k7 convolution down to the latent channels.

    Args:
        dim: width D.
        out_dim: latent channels.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.conv = ChannelLastConv1d(dim, out_dim, kernel_size=7, padding=3)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, N, D)`` and ``c`` ``(B, 1, D)`` -> ``(B, N, out_dim)``."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.conv(modulate(self.norm(x), shift, scale))
