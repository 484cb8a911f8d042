"""Building blocks of the 1-D audio VAE: residual, attention and resampling blocks.

All of them are magnitude preserving (see ``mp_layers.py``) and operate on ``(B, C, T)``
sequences of mel frames or latents.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saganet.codec.mp_layers import MPConv1D, mp_silu, mp_sum, normalize

# Weight of the residual branch in every magnitude-preserving sum of the VAE.
RESIDUAL_BALANCE = 0.3


class ResnetBlock1D(nn.Module):
    """Pixel-normalised pre-activation residual block.

    Args:
        in_dim: input channels.
        out_dim: output channels; a 1x1 ``nin_shortcut`` projects the skip path when they differ.
        kernel_size: kernel of the two main convolutions.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = MPConv1D(in_dim, out_dim, kernel_size)
        self.conv2 = MPConv1D(out_dim, out_dim, kernel_size)
        if in_dim != out_dim:
            self.nin_shortcut = MPConv1D(in_dim, out_dim, 1)
        else:
            self.nin_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim, T) -> (B, out_dim, T)``."""
        # Pixel norm over channels; the skip path also uses the normalised input.
        x = normalize(x, dim=1)
        h = self.conv2(mp_silu(self.conv1(mp_silu(x))))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return mp_sum(x, h, RESIDUAL_BALANCE)


class AttnBlock1D(nn.Module):
    """Single-head self-attention over time with cosine-normalised q, k, v.

    Args:
        channels: width of the sequence; also the head dimension.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.qkv = MPConv1D(channels, 3 * channels, 1)
        self.proj_out = MPConv1D(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T)``."""
        b, c, t = x.shape
        # Output channel 3*i + j holds role j (q, k, v) of channel i: split the role innermost.
        qkv = self.qkv(x).reshape(b, 1, c, 3, t)  # (B, 1, C, 3, T)
        q, k, v = normalize(qkv, dim=2).unbind(3)  # each (B, 1, C, T)
        h = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )  # (B, 1, T, C)
        h = h.transpose(-1, -2).reshape(b, c, t)  # (B, C, T)
        return mp_sum(x, self.proj_out(h), RESIDUAL_BALANCE)


class Downsample1D(nn.Module):
    """Halve the time axis: 1x1 conv, average pool by 2, 1x1 conv.

    Args:
        channels: width (unchanged).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = MPConv1D(channels, channels, 1)
        self.conv2 = MPConv1D(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, T // 2)``."""
        return self.conv2(F.avg_pool1d(self.conv1(x), kernel_size=2, stride=2))


class Upsample1D(nn.Module):
    """Double the time axis: nearest-exact repeat, then a k=3 conv.

    Args:
        channels: width (unchanged).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = MPConv1D(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, 2T)``."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest-exact"))
