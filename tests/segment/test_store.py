"""Tracked masks in memory equal the same masks written losslessly and read back; spans; the
preview video."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from saganet.errors import UserInputError
from saganet.media.masks import MaskSource, MaskVideo
from saganet.media.video import SYNC_FPS, SYNC_SIZE, probe_video
from saganet.segment.grid import VideoGrid
from saganet.segment.store import TrackedMasks
from saganet.segment.writers import PALETTE, write_mask_video, write_preview
from tests.videos import write_video


def _blob_masks(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Moving ellipses with ragged edges, absent in some frames."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    masks = np.zeros((count, height, width), bool)
    for t in range(count):
        if t % 5 == 3:
            continue  # the object is lost here
        cx, cy = width * (0.2 + 0.6 * t / count), height / 2
        inside = ((xx - cx) / (width / 5)) ** 2 + ((yy - cy) / (height / 4)) ** 2 < 1
        masks[t] = inside ^ (rng.random((height, width)) < 0.02)
    return masks


def _store(masks: np.ndarray, name: str = "thing") -> TrackedMasks:
    store = TrackedMasks(name, masks.shape[1], masks.shape[2])
    for slot, mask in enumerate(masks):
        store.set(slot, torch.from_numpy(mask) if slot % 2 else mask)
    return store


@pytest.mark.parametrize(("height", "width", "count"), [(1080, 1920, 6), (91, 161, 23)])
def test_mask_video_round_trip_equals_memory(tmp_path, height, width, count):
    masks = _blob_masks(count, height, width)
    store = _store(masks)
    assert isinstance(store, MaskSource)
    assert np.array_equal(store.masks(), masks)
    path = write_mask_video(store, tmp_path / "m.mp4")
    info = probe_video(path)
    assert (info.width, info.height) == (width, height)
    video = MaskVideo(path)
    whole = store.read()
    assert whole.shape == (count, 1, SYNC_SIZE, SYNC_SIZE) and whole.dtype == torch.uint8
    assert torch.equal(video.read(), whole)
    for start, end in [(0.0, 0.12), (0.08, None), (1 / SYNC_FPS, 3 / SYNC_FPS), (5.0, 6.0)]:
        assert torch.equal(video.read(start, end), store.read(start, end)), (start, end)


def test_visible_slots_and_spans():
    masks = _blob_masks(12, 20, 30)
    store = _store(masks)
    visible = masks.any(axis=(1, 2))
    assert np.array_equal(store.visible, visible)
    covered = np.zeros(len(masks), bool)
    for span in store.spans():
        first, stop = round(span.start * SYNC_FPS), round(span.end * SYNC_FPS)
        assert visible[first:stop].all()
        covered[first:stop] = True
    assert np.array_equal(covered, visible)


def test_store_is_small_and_pads_with_empty_masks():
    height, width = 1080, 1920
    store = TrackedMasks("thing", height, width)
    store.set(4, _blob_masks(1, height, width)[0])
    store.extend_to(9)
    assert len(store) == 9
    assert store.visible.tolist() == [False] * 4 + [True] + [False] * 4
    # Run lengths: kilobytes per slot at 1080p, not the 2 MB of a raw mask.
    assert store.stored_bytes() < 9 * height * width / 100
    with pytest.raises(ValueError, match="expected"):
        store.set(0, np.zeros((height, width + 1), bool))


def test_writers_refuse_to_overwrite(tmp_path):
    store = _store(_blob_masks(3, 10, 16))
    path = write_mask_video(store, tmp_path / "m.mp4")
    with pytest.raises(UserInputError, match="exists"):
        write_mask_video(store, path)
    assert write_mask_video(store, path, overwrite=True) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mp4"]


def test_preview_tints_each_object(tmp_path):
    height, width, count = 48, 64, 10
    video = write_video(tmp_path / "v.mp4", [np.full((height, width, 3), 128, np.uint8)] * count,
                        fps=25)
    grid = VideoGrid(video)
    left, right = np.zeros((count, height, width), bool), np.zeros((count, height, width), bool)
    left[:, :, :16], right[:, :, -16:] = True, True
    path = write_preview(grid, [_store(left, "a"), _store(right, "b")], tmp_path / "p.mp4",
                         first=2)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == count - 2
    for frame in frames:
        for color, cols in zip(PALETTE[:2], (slice(2, 12), slice(-12, -2)), strict=True):
            seen = frame[8:-8, cols].reshape(-1, 3).mean(axis=0)
            expected = 0.5 * 128 + 0.5 * np.asarray(color)
            assert np.abs(seen - expected).max() < 12
        assert np.abs(frame[8:-8, 28:36].astype(float) - 128).max() < 12


@pytest.mark.parametrize(("height", "width"), [(1, 24), (24, 1), (17, 23)])
def test_preview_of_any_size(tmp_path, height, width):
    # yuv420p takes even sizes of at least 2: a 1-pixel side became 0, which the encoder
    # refused (after all the tracking).
    count = 4
    frames = [np.full((height, width, 3), 40 * k, np.uint8) for k in range(count)]
    video = write_video(tmp_path / "thin.mov", frames, fps=25, codec="png", pix_fmt="rgb24")
    grid = VideoGrid(video)
    masks = np.zeros((grid.index.num_slots, height, width), bool)
    masks[:, : max(1, height // 2)] = True
    path = write_preview(grid, [_store(masks)], tmp_path / "p.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        written = (stream.height, stream.width)
        decoded = sum(1 for _ in container.decode(video=0))
    for size, stored in zip(written, (height, width), strict=True):
        assert size % 2 == 0 and size == max(2, stored - stored % 2)
    assert decoded == grid.index.num_slots
