"""Focal crop (the paper's "focal prompt"): zoom every frame of a clip onto the masked object.

One crop window per clip is the union-like box of the per-frame mask boxes, at least
``min_size`` pixels on each side and shifted to stay inside the frame; every frame and mask is
cut to it and resized back to the frame size (bilinear, antialiased). This reproduces the
reference's offline/demo crop bit for bit, including its oddities: the width is
``x_max - x_min`` (no +1), and a frame whose mask is empty contributes the box ``(0, 0, 0, 0)``,
which pulls the window to the top-left corner.

One deliberate difference: when the mask is empty in *every* frame, the reference ends up with
an accidental top-left ``min_size`` square. Here the window is the whole frame instead, so the
detail frames equal the input frames and the detail masks are all zero (nothing is selected).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from saganet.resize import resize

log = logging.getLogger(__name__)

MIN_CROP_SIZE = 56


def _first_last(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last True index along the last axis (n and -1 where none)."""
    n = present.shape[-1]
    index = torch.arange(n, device=present.device)
    first = torch.where(present, index, n).amin(dim=-1)
    last = torch.where(present, index, -1).amax(dim=-1)
    return first, last


def focal_crop_boxes(masks: torch.Tensor, min_size: int = MIN_CROP_SIZE,
                     names: Sequence[str] | None = None) -> torch.Tensor:
    """Crop window of each clip from its per-frame mask boxes.

    Any non-zero mask value counts as foreground (also tiny positive values and soft edges).

    Args:
        masks: ``(B, T, C, H, W)`` masks of any dtype.
        min_size: smallest crop side in pixels (clamped to the frame size).
        names: one name per clip (its id), for the warning about empty masks; None names the
            clips by their position in the batch.

    Returns:
        ``(B, 4)`` int64 boxes ``(x0, y0, x1, y1)``, end-exclusive, in pixels. A clip whose mask
        is empty in every frame gets the whole frame ``(0, 0, W, H)``.
    """
    if masks.dim() != 5:
        raise ValueError(f"masks: expected (B, T, C, H, W), got {tuple(masks.shape)}")
    if names is not None and len(names) != masks.shape[0]:
        raise ValueError(f"{len(names)} name(s) for {masks.shape[0]} clip(s)")
    height, width = masks.shape[-2:]
    foreground = (masks != 0).any(dim=2)  # (B, T, H, W)
    cols, rows = foreground.any(dim=2), foreground.any(dim=3)  # (B, T, W), (B, T, H)
    present = cols.any(dim=-1)  # (B, T)

    def window(axis_present: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        first, last = _first_last(axis_present)
        # Empty frames contribute (0, 0), as in the reference.
        first = torch.where(present, first, 0)
        last = torch.where(present, last, 0)
        extent = (last - first).clamp(min=min(min_size, size)).amax(dim=1, keepdim=True)
        end = first + extent  # (B, T)
        shift = (end - size).clamp(min=0)  # move left/up to stay inside the frame
        return (first - shift).amin(dim=1), (end - shift).amax(dim=1)

    x0, x1 = window(cols, width)
    y0, y1 = window(rows, height)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)  # (B, 4)
    empty = ~present.any(dim=1)
    if empty.any():
        positions = empty.nonzero().flatten().tolist()
        # Batch positions mean nothing to a user who did not build the batch: ids when known.
        which = (", ".join(names[i] for i in positions) if names is not None
                 else f"{positions} of the batch")
        log.warning("mask is empty in every frame of clip(s) %s: focal crop uses the whole frame",
                    which)
        full = torch.tensor([0, 0, width, height], device=boxes.device)
        boxes = torch.where(empty[:, None], full, boxes)
    return boxes


def focal_crop(
    frames: torch.Tensor,
    masks: torch.Tensor,
    boxes: torch.Tensor | None = None,
    min_size: int = MIN_CROP_SIZE,
    names: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut every clip to its focal window and resize back to the frame size.

    Works for float (e.g. [-1, 1] frames, [0, 1] masks) and uint8 tensors; the outputs keep the
    input dtype. The resize is torchvision's antialiased bilinear resize of the (generally
    non-square) crop, so the aspect ratio is not preserved.

    Args:
        frames: ``(B, T, 3, H, W)``.
        masks: ``(B, T, 1, H, W)``, same ``B, T, H, W`` as ``frames``.
        boxes: optional precomputed ``(B, 4)`` windows from :func:`focal_crop_boxes` (pass them
            to log or reuse the window); computed from ``masks`` when omitted.
        min_size: smallest crop side when ``boxes`` is computed here.
        names: one name per clip for the empty-mask warning when ``boxes`` is computed here
            (see :func:`focal_crop_boxes`).

    Returns:
        ``(detail_frames, detail_masks)`` with the shapes and dtypes of the inputs.
    """
    if frames.dim() != 5 or masks.dim() != 5:
        raise ValueError(f"frames/masks must be (B, T, C, H, W), got {tuple(frames.shape)} and "
                         f"{tuple(masks.shape)}")
    if frames.shape[:2] != masks.shape[:2] or frames.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"frames {tuple(frames.shape)} and masks {tuple(masks.shape)} differ in "
                         "batch, length or frame size")
    if boxes is None:
        boxes = focal_crop_boxes(masks, min_size, names)
    size = list(frames.shape[-2:])
    detail_frames, detail_masks = torch.empty_like(frames), torch.empty_like(masks)
    for b, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        log.debug("focal crop of clip %d: x %d..%d, y %d..%d", b, x0, x1, y0, y1)
        for source, target in ((frames, detail_frames), (masks, detail_masks)):
            crop = source[b, :, :, y0:y1, x0:x1]  # (T, C, h, w)
            target[b] = resize(crop, size)
    return detail_frames, detail_masks
