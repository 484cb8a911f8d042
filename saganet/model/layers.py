"""Small building blocks of the flow network: channel-last convolution, SwiGLU MLPs,
adaLN modulation and the attention primitive."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLastConv1d(nn.Conv1d):
    """A 1-D convolution over the token axis of a ``(B, L, C)`` tensor.

    Same arguments and parameters as :class:`torch.nn.Conv1d`; only the layout differs. On
    the CPU a plain convolution (stride 1, no dilation or groups, zero padding) runs as one
    matrix product over the ``k`` shifted copies of the input (im2col): the channel-last input
    needs no transpose, and MKL's GEMM beats oneDNN's convolution on these short sequences
    (``benchmarks/pipeline.py``). The result equals the convolution up to float rounding (the
    ``k * C`` products are summed in another order); set :attr:`as_matmul` to False for the
    convolution kernel itself.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.as_matmul = True
        self._matmul_shape_ok = (self.stride == (1,) and self.dilation == (1,)
                                 and self.groups == 1 and self.padding_mode == "zeros"
                                 and isinstance(self.padding, tuple))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.as_matmul and self._matmul_shape_ok and x.device.type == "cpu":
            pad = self.padding[0]
            cols = F.pad(x, (0, 0, pad, pad)).unfold(1, self.kernel_size[0], 1)  # (B,L,C,k)
            # The (C_out, C, k) weight flattens to the (C, k) order of the columns.
            return F.linear(cols.flatten(2), self.weight.flatten(1), self.bias)  # (B, L, C_out)
        # (B, L, C) -> (B, C, L) -> conv -> (B, L, C_out)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def swiglu_hidden(nominal: int) -> int:
    """Hidden width of a SwiGLU MLP: 2/3 of ``nominal``, rounded up to a multiple of 256.

    Args:
        nominal: the hidden size a plain MLP would use (``mlp_ratio * D``).
    """
    return 256 * math.ceil(int(2 * nominal / 3) / 256)


class MLP(nn.Module):
    """Gated SwiGLU MLP ``w2(silu(w1 x) * w3 x)`` with bias-free linear maps.

    Args:
        dim: input and output width.
        nominal_hidden: nominal hidden width; the effective one is :func:`swiglu_hidden`.
    """

    def __init__(self, dim: int, nominal_hidden: int) -> None:
        super().__init__()
        hidden = swiglu_hidden(nominal_hidden)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ConvMLP(nn.Module):
    """SwiGLU MLP whose three maps are channel-last convolutions over the token axis.

    Args:
        dim: input and output width.
        nominal_hidden: nominal hidden width; the effective one is :func:`swiglu_hidden`.
        kernel_size: convolution kernel size (3 or 7 here).
        padding: zero padding on each side (keeps the token count).
    """

    def __init__(self, dim: int, nominal_hidden: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        hidden = swiglu_hidden(nominal_hidden)
        self.w1 = ChannelLastConv1d(dim, hidden, kernel_size, padding=padding, bias=False)
        self.w2 = ChannelLastConv1d(hidden, dim, kernel_size, padding=padding, bias=False)
        self.w3 = ChannelLastConv1d(dim, hidden, kernel_size, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift`` (shift/scale broadcast over tokens)."""
    return x * (1 + scale) + shift


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full (unmasked) scaled dot-product attention over ``(B, H, L, d)`` heads.

    Returns:
        ``(B, L, H * d)`` with head-major channels.
    """
    out = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
    batch, heads, length, width = out.shape
    return out.transpose(1, 2).reshape(batch, length, heads * width)  # (B, L, H*d)
