"""Self-attention of CLIP's image tower through ``scaled_dot_product_attention``.

open_clip's blocks call :class:`torch.nn.MultiheadAttention`. Without gradients PyTorch routes
that call through its fused "native" multi-head attention, which on the CPU multiplies out the
whole ``(L, L)`` score matrix of every head with batched products and a separate softmax. For
ViT-H/14 at 384 px (730 tokens, 16 heads of 80 channels) that is about 15 % of the image
tower's time; SDPA's flash kernel works through the scores in blocks and took a third of the
time for the attention itself (``benchmarks/clip_attention.py`` measures the whole tower). The
arithmetic is the same up to float rounding: the same projections, softmax of the scaled
scores, the same output projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SdpaSelfAttention(nn.MultiheadAttention):
    """:class:`~torch.nn.MultiheadAttention` whose plain self-attention calls run through SDPA.

    Same parameters and state-dict keys as the module it adopts. Only batch-first
    self-attention without masks, without returned weights and without dropout takes the SDPA
    path (what CLIP's image tower does); every other call, and every call while
    :attr:`use_sdpa` is False, runs :class:`~torch.nn.MultiheadAttention`'s own forward.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.use_sdpa = True

    @classmethod
    def adopt(cls, module: nn.MultiheadAttention) -> SdpaSelfAttention:
        """A module of this class holding ``module``'s parameters (shared, not copied).

        Raises:
            ValueError: if ``module`` has separate q/k/v projections, key/value biases or
                zero attention (not CLIP's layout).
        """
        if (not module._qkv_same_embed_dim or module.bias_k is not None
                or module.add_zero_attn):
            raise ValueError("only a fused q|k|v projection without key/value biases or zero "
                             "attention is supported")
        with torch.device("meta"):  # the parameters below replace these placeholders
            new = cls(module.embed_dim, module.num_heads, dropout=module.dropout,
                      bias=module.in_proj_bias is not None, batch_first=module.batch_first)
        new.in_proj_weight = module.in_proj_weight
        new.in_proj_bias = module.in_proj_bias
        new.out_proj = module.out_proj
        return new.train(module.training)

    def _takes_sdpa(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    key_padding_mask: torch.Tensor | None, need_weights: bool,
                    attn_mask: torch.Tensor | None, is_causal: bool) -> bool:
        return (self.use_sdpa and self.batch_first and query.dim() == 3
                and query is key and key is value and not need_weights
                and key_padding_mask is None and attn_mask is None and not is_causal
                and (self.dropout == 0.0 or not self.training))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As :meth:`torch.nn.MultiheadAttention.forward`."""
        if not self._takes_sdpa(query, key, value, key_padding_mask, need_weights, attn_mask,
                                is_causal):
            return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, attn_mask=attn_mask,
                                   average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        batch, length, width = query.shape
        # in_proj's rows are q | k | v, each split into contiguous per-head slices.
        q, k, v = (F.linear(query, self.in_proj_weight, self.in_proj_bias)
                   .view(batch, length, 3, self.num_heads, self.head_dim)
                   .permute(2, 0, 3, 1, 4))  # 3 x (B, H, L, d)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(d), as the module's
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width)), None


def use_sdpa_attention(blocks: nn.Module, enabled: bool = True) -> int:
    """Give every :class:`~torch.nn.MultiheadAttention` under ``blocks`` the SDPA path.

    Modules already adopted are switched with :attr:`SdpaSelfAttention.use_sdpa`.

    Args:
        blocks: e.g. open_clip's image transformer.
        enabled: False restores the module's own forward (the reference operations).

    Returns:
        How many attention modules were set.
    """
    count = 0
    for parent in list(blocks.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                if not isinstance(child, SdpaSelfAttention):
                    child = SdpaSelfAttention.adopt(child)
                    setattr(parent, name, child)
                child.use_sdpa = enabled
                count += 1
    return count
