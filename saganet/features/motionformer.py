"""MotionFormer video encoder as used by Synchformer (follows Patrick et al. 2021, "divided" ViT).

Owns the backbone that turns one segment of frames ``(BS, C, T, H, W)`` into ``T / 2`` tokens:
3-D patch embedding, CLS token, separate spatial/temporal position tables, divided space-time
blocks, final LayerNorm and the per-time-step spatial aggregation layer. Module and parameter
names follow the published checkpoints (``vfeat_extractor.*`` without the prefix).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from saganet.features.config import SynchformerConfig


class PatchEmbed2d(nn.Module):
    """Per-frame patch embedding. Never used in the forward pass.

    The official checkpoints carry it (the 3-D embedding was inflated from it), so it is kept
    for strict loading.

    Args:
        in_chans: input channels.
        embed_dim: output width.
        patch_size: square patch side.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)


class PatchEmbed3d(nn.Module):
    """Tubelet embedding: non-overlapping ``(pt, p, p)`` patches -> time-major token sequence.

    On the CPU the strided convolution runs as what it is, one matrix product of the
    flattened patches with the flattened kernel (oneDNN's 3-D convolution is several times
    slower on these shapes); the result equals the convolution up to float rounding. Set
    :attr:`as_matmul` to False for the convolution kernel itself.

    Args:
        in_chans: input channels (3 for frames, 1 for masks).
        embed_dim: output width.
        patch_size: square spatial patch side.
        patch_size_temp: frames per patch.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int,
                 patch_size_temp: int) -> None:
        super().__init__()
        kernel = (patch_size_temp, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)
        self.as_matmul = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(BS, C, T, H, W)`` -> ``(BS, t*h*w, D)``, token index ``ti*h*w + row*w + col``."""
        if not (self.as_matmul and x.device.type == "cpu"):
            return self.proj(x).flatten(2).transpose(1, 2)
        bs, channels, frames, height, width = x.shape
        kt, kh, kw = self.proj.kernel_size
        t, h, w = frames // kt, height // kh, width // kw
        # A stride-k convolution ignores the remainder of each axis.
        x = x[:, :, :t * kt, :h * kh, :w * kw]
        patches = x.reshape(bs, channels, t, kt, h, kh, w, kw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        patches = patches.reshape(bs, t * h * w, channels * kt * kh * kw)  # (BS, N, C*kt*kh*kw)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)  # (BS, N, D)


class Mlp(nn.Module):
    """Two-layer perceptron ``fc2(act(fc1(x)))`` (no dropout).

    Args:
        dim: input and output width.
        hidden_dim: hidden width.
        activation: elementwise non-linearity.
    """

    def __init__(self, dim: int, hidden_dim: int,
                 activation: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.activation = activation
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class DividedAttention(nn.Module):
    """Multi-head attention restricted to one axis of the (time, space) token grid.

    The CLS token (index 0) attends to every token. Each patch token attends to the patch
    tokens sharing its spatial position (``axis="time"``) or its frame (``axis="space"``), plus
    the CLS token, whose key/value is prepended to every group.

    Args:
        dim: token width.
        num_heads: heads; each takes a contiguous ``dim / num_heads`` slice of q, k and v.
        qkv_bias: bias on the fused q|k|v projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        # q | k | v are contiguous thirds of the output (unlike the flow network's layout).
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, axis: Literal["time", "space"],
                num_frames: int) -> torch.Tensor:
        """Attend along ``axis``.

        Args:
            x: ``(B, 1 + num_frames * N, D)``, CLS first, patch tokens time-major.
            axis: ``"time"`` groups tokens by spatial position, ``"space"`` by frame.
            num_frames: temporal token count ``F``.
        """
        b, length, dim = x.shape
        q, k, v = (t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))  # 3 x (B, H, L, d)
        # Scale q before the products, as the reference does (outside the attention kernel).
        q = q * self.head_dim ** -0.5

        # The CLS query attends to all 1 + F*N tokens (itself included): plain softmax.
        weights = (q[:, :, :1] @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, 1, L)
        cls_out = weights @ v  # (B, H, 1, d)
        cls_k, cls_v = k[:, :, :1], v[:, :, :1]
        q, k, v = q[:, :, 1:], k[:, :, 1:], v[:, :, 1:]

        num_patches = (length - 1) // num_frames
        q, k, v = (t.unflatten(2, (num_frames, num_patches)) for t in (q, k, v))  # (B,H,F,N,d)
        if axis == "time":
            q, k, v = (t.transpose(2, 3) for t in (q, k, v))  # (B, H, N, F, d)
        groups = q.shape[2]
        # Every group also sees the CLS key/value, prepended.
        k = torch.cat([cls_k.unsqueeze(2).expand(-1, -1, groups, -1, -1), k], dim=3)
        v = torch.cat([cls_v.unsqueeze(2).expand(-1, -1, groups, -1, -1), v], dim=3)
        out = F.scaled_dot_product_attention(
            q.flatten(1, 2), k.flatten(1, 2), v.flatten(1, 2), scale=1.0
        )  # (B, H*G, S, d)
        out = out.unflatten(1, (self.num_heads, groups))  # (B, H, G, S, d)
        if axis == "time":
            out = out.transpose(2, 3)  # (B, H, F, N, d)
        out = out.reshape(b, self.num_heads, num_frames * num_patches, self.head_dim)
        out = torch.cat([cls_out, out], dim=2).transpose(1, 2).reshape(b, length, dim)
        return self.proj(out)


class DividedSpaceTimeBlock(nn.Module):
    """Pre-norm block: time attention, then space attention, then MLP, each residual.

    Args:
        config: sizes.
    """

    def __init__(self, config: SynchformerConfig) -> None:
        super().__init__()
        dim, eps = config.embed_dim, config.layer_norm_eps
        # Registration order = checkpoint key order.
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = DividedAttention(dim, config.num_heads, config.qkv_bias)
        self.timeattn = DividedAttention(dim, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, config.mlp_dim, nn.GELU())
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.num_frames = config.temporal_resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + F*N, D)`` -> same shape."""
        x = x + self.timeattn(self.norm3(x), "time", self.num_frames)
        x = x + self.attn(self.norm1(x), "space", self.num_frames)
        return x + self.mlp(self.norm2(x))


class SpatialAggregation(nn.TransformerEncoderLayer):
    """One pre-norm PyTorch encoder layer with a learned CLS token, pooling each time step.

    Subclassing ``nn.TransformerEncoderLayer`` keeps the checkpoint names and lets PyTorch take
    the same fused inference fast path (and rounding) as the reference.

    Args:
        config: sizes.
    """

    def __init__(self, config: SynchformerConfig) -> None:
        super().__init__(
            d_model=config.embed_dim, nhead=config.num_heads, dim_feedforward=config.mlp_dim,
            dropout=0.0, activation=nn.GELU(), layer_norm_eps=config.layer_norm_eps,
            batch_first=True, norm_first=True,
        )
        self.cls_token = nn.Parameter(torch.empty(1, 1, config.embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Pool spatial tokens: ``(BS, t, N, D)`` -> ``(BS, t, D)`` (CLS output per step)."""
        bs, t, n, dim = tokens.shape
        x = tokens.reshape(bs * t, n, dim)
        x = torch.cat([self.cls_token.expand(bs * t, -1, -1), x], dim=1)  # (BS*t, 1+N, D)
        x = super().forward(x)
        return x[:, 0].reshape(bs, t, dim)


class MotionFormer(nn.Module):
    """MotionFormer feature extractor: one segment of frames -> ``temporal_resolution`` tokens.

    Args:
        config: sizes (defaults = official).
    """

    def __init__(self, config: SynchformerConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        # Direct parameters first: they come first in the checkpoint's key order.
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + config.patches_per_frame, dim))
        self.temp_embed = nn.Parameter(torch.empty(1, config.temporal_resolution, dim))
        self.patch_embed = PatchEmbed2d(config.in_chans, dim, config.patch_size)
        self.patch_embed_3d = PatchEmbed3d(config.in_chans, dim, config.patch_size,
                                           config.patch_size_temp)
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.spatial_attn_agg = SpatialAggregation(config)
        self._init_weights()

    def _init_weights(self) -> None:
        """Standard ViT initialisation of the backbone.

        The backbone is always loaded from a pre-trained checkpoint before real use, so this only
        has to give a well-conditioned random model for tests and the debug pipeline. (The
        reference leaves ``temp_embed`` and the 3-D patch weights at zero until ImageNet weights
        are inflated into them; we do not, so a random model still depends on its input.)
        """
        for param in (self.cls_token, self.pos_embed, self.temp_embed,
                      self.spatial_attn_agg.cls_token):
            nn.init.trunc_normal_(param, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        attn = self.spatial_attn_agg.self_attn
        # nn.MultiheadAttention keeps its fused in-projection outside an nn.Linear.
        nn.init.trunc_normal_(attn.in_proj_weight, std=0.02)
        nn.init.zeros_(attn.in_proj_bias)

    def check_input(self, x: torch.Tensor, channels: int, what: str) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(BS, channels, frames, img, img)``."""
        c = self.config
        expected = (channels, c.frames_per_segment, c.img_size, c.img_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{what}: expected (BS, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")

    def embed(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """Prepend CLS and add position tables: ``(BS, F*N, D)`` -> ``(BS, 1 + F*N, D)``.

        CLS gets ``pos_embed[0]``; patch token ``(t, n)`` gets ``pos_embed[1+n] + temp_embed[t]``.
        """
        frames = self.config.temporal_resolution
        patch_pos = (self.pos_embed[:, 1:].repeat(1, frames, 1)
                     + self.temp_embed.repeat_interleave(self.config.patches_per_frame, dim=1))
        pos = torch.cat([self.pos_embed[:, :1], patch_pos], dim=1)  # (1, 1 + F*N, D)
        cls = self.cls_token.expand(patch_tokens.shape[0], -1, -1)
        return torch.cat([cls, patch_tokens], dim=1) + pos

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone tokens before the final norm: ``(BS, C, T, H, W)`` -> ``(BS, 1 + F*N, D)``."""
        y = self.embed(self.patch_embed_3d(x))
        for block in self.blocks:
            y = block(y)
        return y

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Drop CLS, final norm, spatial pooling: ``(BS, 1 + F*N, D)`` -> ``(BS, F, D)``."""
        c = self.config
        x = self.norm(tokens[:, 1:])
        x = x.unflatten(1, (c.temporal_resolution, c.patches_per_frame))  # (BS, F, N, D)
        return self.spatial_attn_agg(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode segments: ``(BS, C, T, H, W)`` -> ``(BS, T / patch_size_temp, D)``."""
        self.check_input(x, self.config.in_chans, "frames")
        return self.head(self.forward_tokens(x))

