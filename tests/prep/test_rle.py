"""COCO RLE mask decoding and mask videos (saganet.prep.rle)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from saganet.prep.rle import decode_rle, masks_to_video


def coco_encode(masks: np.ndarray) -> list[str]:
    """Compressed-RLE strings of ``(n, H, W)`` masks, by pycocotools' own encoder."""
    rles = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [rle["counts"].decode("ascii") for rle in rles]


def test_decode_inverts_pycocotools_encoder() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 5, 7)) > 0.6
    masks[1] = False  # an empty frame
    masks[2, 0, :] = True  # a full first row: distinguishes rows from columns
    decoded = decode_rle(coco_encode(masks), 5, 7)
    assert decoded.dtype == np.bool_
    assert decoded.shape == (3, 5, 7)
    np.testing.assert_array_equal(decoded, masks)


def test_decode_reads_runs_column_major() -> None:
    # A 2x3 mask with only pixel (row 0, col 1) set. In column-major order the pixels are
    # (0,0) (1,0) (0,1) (1,1) (0,2) (1,2), so the runs are 2 background, 1 foreground, 3
    # background.
    compressed = coco_mask.frPyObjects({"size": [2, 3], "counts": [2, 1, 3]}, 2, 3)
    decoded = decode_rle([compressed["counts"]], 2, 3)  # bytes are accepted as well
    expected = np.zeros((1, 2, 3), dtype=bool)
    expected[0, 0, 1] = True
    np.testing.assert_array_equal(decoded, expected)


def test_decode_nothing() -> None:
    assert decode_rle([], 4, 6).shape == (0, 4, 6)


@pytest.mark.parametrize("size", [(48, 64), (47, 63)])
def test_masks_to_video_round_trip(tmp_path: Path, size: tuple[int, int]) -> None:
    height, width = size
    masks = np.zeros((6, height, width), dtype=bool)
    for k in range(6):
        masks[k, 8 : 20 + k, 10 + 2 * k : 40] = True
    path = masks_to_video(masks, tmp_path / "sub" / "clip_mask.mp4", fps=25)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == 25
        frames = np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])
    assert frames.shape == (6, height, width)
    np.testing.assert_array_equal(frames > 127, masks)
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip_mask.mp4"]


def test_masks_to_video_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n, H, W"):
        masks_to_video(np.zeros((4, 4), dtype=bool), tmp_path / "m.mp4")


def test_frames_without_a_mask_are_background() -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((2, 6, 9)) > 0.5
    counts = coco_encode(masks)
    _, height, width = masks.shape
    decoded = decode_rle([counts[0], "", None, counts[1]], height, width)
    assert decoded.shape == (4, height, width)
    np.testing.assert_array_equal(decoded[[0, 3]], masks)
    assert not decoded[1:3].any()


@pytest.mark.parametrize("extra_rows", [1, -1])
def test_rle_of_another_size_is_refused(extra_rows: int) -> None:
    """pycocotools fills the pixels a too-short RLE does not cover with uninitialised memory."""
    rng = np.random.default_rng(2)
    masks = rng.random((2, 8, 5)) > 0.5
    _, height, width = masks.shape
    with pytest.raises(ValueError, match=f"frame 0 covers {height * width} pixels"):
        decode_rle(coco_encode(masks), height + extra_rows, width)


def test_malformed_rle_is_refused() -> None:
    masks = np.zeros((1, 7, 4), dtype=bool)
    masks[0, 2:5, 1:3] = True
    (counts,) = coco_encode(masks)
    # A last character with the "more groups follow" flag (0x20) leaves a number unfinished.
    unfinished = counts + chr(48 + 0x20)
    with pytest.raises(ValueError, match="not a COCO compressed RLE"):
        decode_rle([unfinished], *masks.shape[1:])
