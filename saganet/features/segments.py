"""Cut a 25 fps clip into overlapping Synchformer windows and encode them in chunks.

A clip of ``T`` frames gives ``S = (T - 16) // 8 + 1`` windows of 16 frames with stride 8
(frames past the last full window are unused); each window yields 8 tokens, so the sync
features are ``(B, 8 * S, D)`` with token index ``8 * s + t``. For a 5 s clip (125 frames),
S = 14 and the features are ``(B, 112, 768)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from saganet.errors import UserInputError
from saganet.features.synchformer import Synchformer, SynchformerWithContext

# Frames between the starts of consecutive windows (half a window).
SEGMENT_STRIDE = 8


def num_sync_windows(num_frames: int, window: int = 16) -> int:
    """Number of full ``window``-frame windows in a clip of ``num_frames`` (0 if too short)."""
    return max(0, (num_frames - window) // SEGMENT_STRIDE + 1)


def _windows(x: torch.Tensor, index: torch.Tensor, num_windows: int, window: int) -> torch.Tensor:
    """Gather flat window ``index`` (b * S + s) of ``x (B, T, ...)`` -> ``(n, 1, window, ...)``."""
    clip, start = index // num_windows, (index % num_windows) * SEGMENT_STRIDE
    frames = start[:, None] + torch.arange(window, device=index.device)  # (n, window)
    return x[clip[:, None], frames].unsqueeze(1)


def _encode(encode_chunk: Callable[..., torch.Tensor], tensors: list[torch.Tensor], window: int,
            chunk_size: int | None) -> torch.Tensor:
    frames = tensors[0]
    b, t = frames.shape[:2]
    for other in tensors[1:]:
        if other.shape[:2] != (b, t) or other.shape[-2:] != frames.shape[-2:]:
            raise ValueError(f"all inputs must share (B, T, ..., H, W): {tuple(frames.shape)} vs "
                             f"{tuple(other.shape)}")
    num_windows = num_sync_windows(t, window)
    if num_windows == 0:
        raise UserInputError(f"the clip has {t} frames but the Synchformer needs at least "
                             f"{window} (0.64 s at 25 fps)")
    total = b * num_windows
    chunk = total if chunk_size is None else chunk_size
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    outputs = []
    for begin in range(0, total, chunk):
        index = torch.arange(begin, min(begin + chunk, total), device=frames.device)
        outputs.append(encode_chunk(*(_windows(x, index, num_windows, window)
                                      for x in tensors)))  # (n, 1, F, D)
    features = torch.cat(outputs)  # (B*S, 1, F, D)
    return features.reshape(b, num_windows * features.shape[2], features.shape[3])


def encode_sync(
    model: SynchformerWithContext,
    frames: torch.Tensor,
    masks: torch.Tensor,
    detail_frames: torch.Tensor,
    detail_masks: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Segmentation-aware sync features of whole clips.

    Runs with the caller's grad mode (the context layers can be trained through it).

    Args:
        model: the segmentation-aware Synchformer.
        frames: ``(B, T, 3, H, W)`` 25 fps frames in [-1, 1].
        masks: ``(B, T, 1, H, W)`` masks in [0, 1].
        detail_frames: focal-crop frames, like ``frames`` (see :func:`focal_crop`).
        detail_masks: focal-crop masks, like ``masks``.
        chunk_size: windows per forward pass (bounds memory); ``None`` = all at once.

    Returns:
        ``(B, 8 * S, D)`` with ``S = (T - 16) // 8 + 1``.
    """
    cfg = model.config
    inputs = {"frames": frames, "masks": masks, "detail_frames": detail_frames,
              "detail_masks": detail_masks}
    for name, x in inputs.items():
        _check_frames(name, x, cfg.mask_chans if "masks" in name else cfg.in_chans, cfg.img_size)
    return _encode(model, list(inputs.values()), cfg.frames_per_segment, chunk_size)


def _check_frames(name: str, x: torch.Tensor, channels: int, size: int) -> None:
    # Checked here: frames of another size were refused only inside the patch embedding, under
    # the name of its internal window layout, and a missing batch axis as a shape mismatch.
    if x.dim() != 5 or tuple(x.shape[2:]) != (channels, size, size):
        raise ValueError(f"{name} must be (B, T, {channels}, {size}, {size}) (clips, frames, "
                         f"channels, height, width), got {tuple(x.shape)}")


def encode_sync_plain(model: Synchformer, frames: torch.Tensor,
                      chunk_size: int | None = None) -> torch.Tensor:
    """MMAudio's plain sync features of whole clips (frames only).

    Args:
        model: the plain Synchformer.
        frames: ``(B, T, 3, H, W)`` 25 fps frames in [-1, 1].
        chunk_size: windows per forward pass; ``None`` = all at once.

    Returns:
        ``(B, 8 * S, D)`` with ``S = (T - 16) // 8 + 1``.
    """
    return _encode(model, [frames], model.config.frames_per_segment, chunk_size)
