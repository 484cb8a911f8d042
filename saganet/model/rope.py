"""Rotary position embeddings: rotation tables and their application to q/k heads.

Adjacent channel pairs ``(2i, 2i+1)`` of a head are rotated by ``pos * freq_i``; tables and
the rotation are computed in fp32 whatever the model dtype, and cast back afterwards.
"""

from __future__ import annotations

import torch


def compute_rope_rotations(
    length: int,
    dim: int,
    theta: float = 10000.0,
    *,
    freq_scaling: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """2x2 rotation matrices for positions ``0..length-1``.

    Args:
        length: number of positions.
        dim: head width (even); one frequency per channel pair.
        theta: frequency base.
        freq_scaling: multiplies every frequency; CLIP tokens use
            ``latent_len / clip_len`` so that CLIP token i sits at latent position
            ``i * latent_len / clip_len``.
        device: where to build the table.

    Returns:
        ``(1, length, dim // 2, 2, 2)`` fp32 table of ``[[cos, -sin], [sin, cos]]``.
    """
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim
    freqs = 1.0 / (theta ** exponents) * freq_scaling  # (dim/2,)
    positions = torch.arange(length, dtype=torch.float32, device=device)
    angles = positions[:, None] * freqs[None, :]  # (L, dim/2)
    cos, sin = torch.cos(angles), torch.sin(angles)
    table = torch.stack([cos, -sin, sin, cos], dim=-1)  # (L, dim/2, 4)
    return table.view(1, length, dim // 2, 2, 2)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` by the table ``rotations``.

    Args:
        x: ``(B, H, L, d)`` queries or keys, any float dtype.
        rotations: ``(1, L, d // 2, 2, 2)`` table from :func:`compute_rope_rotations`.

    Returns:
        The rotated tensor, same shape and dtype as ``x`` (the arithmetic is fp32).
    """
    pairs = x.float().unflatten(-1, (-1, 1, 2))  # (B, H, L, d/2, 1, 2)
    rotations = rotations.float()
    rotated = rotations[..., 0] * pairs[..., 0] + rotations[..., 1] * pairs[..., 1]
    return rotated.flatten(-2).type_as(x)  # (B, H, L, d)
