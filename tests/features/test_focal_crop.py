"""Focal crop windows (the reference's box arithmetic) and the all-empty-mask behaviour."""

from __future__ import annotations

import logging

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from saganet.features import focal_crop, focal_crop_boxes


def _masks(boxes: list[tuple[int, int, int, int] | None], size: int = 224) -> torch.Tensor:
    """One clip, one frame per box; ``None`` = empty frame. Boxes are end-exclusive."""
    masks = torch.zeros(1, len(boxes), 1, size, size)
    for t, box in enumerate(boxes):
        if box is not None:
            x0, y0, x1, y1 = box
            masks[0, t, 0, y0:y1, x0:x1] = 1.0
    return masks


def test_union_window_with_minimum_size() -> None:
    # Per-frame inclusive boxes (10, 20)-(29, 39) and (40, 30)-(59, 99): widths 19 / 19 -> 56,
    # heights 19 / 69 -> 69; x0 = min(10, 40), x1 = max(10 + 56, 40 + 56).
    boxes = focal_crop_boxes(_masks([(10, 20, 30, 40), (40, 30, 60, 100)]))
    assert boxes.tolist() == [[10, 20, 96, 30 + 69]]


def test_window_is_shifted_inside_the_frame() -> None:
    boxes = focal_crop_boxes(_masks([(200, 210, 224, 224)]))
    assert boxes.tolist() == [[224 - 56, 224 - 56, 224, 224]]


def test_empty_frame_pulls_the_window_to_the_corner() -> None:
    boxes = focal_crop_boxes(_masks([(100, 100, 120, 120), None]))
    assert boxes.tolist() == [[0, 0, 156, 156]]


def test_all_frames_empty_uses_the_whole_frame(caplog: pytest.LogCaptureFixture) -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 3, 224, 224, generator=g)
    masks = torch.cat([_masks([None] * 3), _masks([(50, 60, 70, 80)] * 3)])
    with caplog.at_level(logging.WARNING, logger="saganet.features.focal_crop"):
        detail_frames, detail_masks = focal_crop(frames, masks)
    assert "empty in every frame" in caplog.text and "[0]" in caplog.text
    assert focal_crop_boxes(masks)[0].tolist() == [0, 0, 224, 224]
    torch.testing.assert_close(detail_frames[0], frames[0])
    assert torch.count_nonzero(detail_masks[0]) == 0
    # The other clip is cropped normally (zoomed in: its mask covers more of the frame).
    assert detail_masks[1].mean() > masks[1].mean() * 4


def test_the_empty_mask_warning_names_the_clips_by_id(caplog: pytest.LogCaptureFixture) -> None:
    """With names the warning says which clips (ids, not batch positions) have no object."""
    names = ["solos/violin/a_0_1000", "solos/cello/b_0_1000", "music21/tuba/c_0_1000"]
    masks = torch.cat([_masks([(50, 60, 70, 80)] * 2), _masks([None] * 2), _masks([None] * 2)])
    frames = torch.zeros(len(names), 2, 3, 224, 224)
    with caplog.at_level(logging.WARNING, logger="saganet.features.focal_crop"):
        focal_crop(frames, masks, names=names)
    assert f"clip(s) {names[1]}, {names[2]}:" in caplog.text and "[1, 2]" not in caplog.text
    assert names[0] not in caplog.text
    with pytest.raises(ValueError, match="2 name"):
        focal_crop_boxes(masks, names=names[:2])


def test_uint8_and_float_agree() -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (1, 2, 3, 224, 224), dtype=torch.uint8, generator=g)
    masks = (_masks([(30, 40, 90, 100), (60, 50, 130, 120)]) * 255).to(torch.uint8)
    detail_u8, mask_u8 = focal_crop(frames, masks)
    assert detail_u8.dtype == torch.uint8 and mask_u8.dtype == torch.uint8
    detail_f, _ = focal_crop(frames.float(), masks.float())
    assert (detail_u8.float() - detail_f).abs().max() <= 1.0


def test_crop_is_antialiased_bilinear_resize_of_the_window() -> None:
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(1, 2, 3, 224, 224, generator=g)
    masks = _masks([(30, 40, 90, 100), (60, 50, 130, 120)])
    boxes = torch.tensor([[20, 10, 150, 200]])  # caller-provided window is used as given
    detail, _ = focal_crop(frames, masks, boxes=boxes)
    expected = TF.resize(frames[0, :, :, 10:200, 20:150], [224, 224], antialias=True)
    torch.testing.assert_close(detail[0], expected)


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="differ"):
        focal_crop(torch.zeros(1, 2, 3, 224, 224), torch.zeros(1, 3, 1, 224, 224))
