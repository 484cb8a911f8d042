"""Gated cross-attention from the focal-crop stream to the full-frame context (SAGANet).

One layer follows every MotionFormer block in the focal pass. It is reproduced exactly as the
published weights were trained, which is not textbook cross-attention: the query projection of
the focal tokens and the key/value projection of the context tokens are concatenated and split
per head with an interleaved ``(head, dim, role)`` channel layout, so the first third of the
heads attend within the focal stream and the rest within the context stream; the two meet
position by position in the output projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saganet.features.motionformer import Mlp


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


class FocalContextAttention(nn.Module):
    """Attention over ``concat(q(focal), kv(context))`` split as ``(head, dim, q|k|v)``.

    Args:
        dim: token width of both streams.
        num_heads: heads; channel ``c`` of the concatenation goes to head ``c // (3 d)``,
            dim ``(c // 3) % d`` and role ``c % 3`` (query, key, value).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        # eps=None: PyTorch's default (machine epsilon of the compute dtype), as trained.
        self.q_norm = nn.RMSNorm(self.head_dim, eps=None)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=None)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, focal: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``focal``, ``context``: ``(B, L, D)`` with the same ``L`` -> ``(B, L, D)``."""
        if focal.shape[:2] != context.shape[:2]:
            raise ValueError(f"focal {tuple(focal.shape)} and context {tuple(context.shape)} "
                             "must have the same batch and length")
        z = torch.cat([self.q(focal), self.kv(context)], dim=-1)  # (B, L, 3D)
        z = z.unflatten(-1, (self.num_heads, self.head_dim, 3)).permute(4, 0, 2, 1, 3)
        q, k, v = z.unbind(0)  # 3 x (B, H, L, d)
        # The query is pre-scaled *before* its RMSNorm (which nearly undoes it) and the
        # attention kernel then applies its own 1/sqrt(d): both as in the trained model.
        q = self.q_norm(q * self.head_dim ** -0.5)
        k = self.k_norm(k)
        # v is a stride-3 view; the fused CPU kernel needs unit stride (else: slow math path).
        out = F.scaled_dot_product_attention(q, k, v.contiguous())  # (B, H, L, d)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class GatedCrossAttentionLayer(nn.Module):
    """``y + a * attn(LN(y), ctx)`` then ``+ m * mlp(LN(.))`` with learned scalar gates.

    The context is used as is (no norm on it). Gates start at zero so the layer starts as the
    identity.

    Args:
        dim: token width.
        num_heads: cross-attention heads.
        mlp_dim: MLP hidden width.
        layer_norm_eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, layer_norm_eps: float) -> None:
        super().__init__()
        # Registration order = checkpoint key order (gates first).
        self.attn_factor = nn.Parameter(torch.empty(()))
        self.mlp_factor = nn.Parameter(torch.empty(()))
        self.cross_attn = FocalContextAttention(dim, num_heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = Mlp(dim, mlp_dim, _gelu_tanh)
        self.layer_norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch default init for projections and norms; gates at zero."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        # Zero gates: a freshly added layer must not disturb the pre-trained backbone.
        nn.init.zeros_(self.attn_factor)
        nn.init.zeros_(self.mlp_factor)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x``: focal tokens ``(B, L, D)``; ``context``: pass-1 tokens ``(B, L, D)``."""
        x = x + self.attn_factor * self.cross_attn(self.layer_norm1(x), context)
        return x + self.mlp_factor * self.mlp(self.layer_norm2(x))
