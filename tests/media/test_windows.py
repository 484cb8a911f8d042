"""``read_windows``: each window's frames, and the 8 fps slots that tell which frames windows
share."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from saganet.example import SyntheticScene
from saganet.media.video import (
    CLIP_FPS,
    CLIP_SIZE,
    SYNC_FPS,
    SYNC_SIZE,
    FrameRequest,
    clip_input,
    read_frame_sets,
    sync_input,
)
from saganet.media.windows import read_windows
from tests.videos import write_video


@pytest.mark.parametrize(("fps", "duration", "window", "starts"), [
    (25, 3.0, 1.2, (0.0, 0.84, 1.8)),
    (30, 2.3, 1.0, (0.0, 0.6, 1.0, 1.76)),  # the last window runs past the end
])
def test_windows_share_the_slots_of_one_grid(tmp_path: Path, fps: int, duration: float,
                                              window: float, starts: tuple[float, ...]) -> None:
    scene = SyntheticScene(width=64, height=48, fps=fps, duration=duration)
    video = write_video(tmp_path / "clip.mp4", (image for image, _ in scene.frames()),
                        fps=fps)
    # Every frame of the video on the 8 fps grid, read on its own.
    every, every_sync = read_frame_sets(video, [FrameRequest(CLIP_FPS, CLIP_SIZE),
                                                FrameRequest(SYNC_FPS, SYNC_SIZE)])
    last, last_sync = every.shape[0] - 1, every_sync.shape[0] - 1
    windows = list(read_windows(video, starts, window))
    assert [w.index for w in windows] == list(range(len(starts)))
    count = int(CLIP_FPS * window)
    seen: dict[int, torch.Tensor] = {}
    for frames, start in zip(windows, starts, strict=True):
        first = math.ceil(start * CLIP_FPS - 1e-9)
        assert frames.clip_slots == tuple(min(k, last) for k in range(first, first + count))
        assert frames.clip_frames.shape[0] == count
        for slot, image in zip(frames.clip_slots, frames.clip_frames, strict=True):
            assert torch.equal(image, clip_input(every[slot][None])[0]), (start, slot)
            if slot in seen:
                assert torch.equal(image, seen[slot])
            seen[slot] = image
        first = math.ceil(start * SYNC_FPS - 1e-9)
        count_sync = int(SYNC_FPS * window)
        assert frames.sync_slots == tuple(min(k, last_sync)
                                          for k in range(first, first + count_sync))
        assert torch.equal(frames.sync_frames, sync_input(every_sync[list(frames.sync_slots)]))
    # Overlapping windows did share slots, and the last window held the last frame.
    assert sum(len(w.clip_slots) for w in windows) > len(seen)
    assert windows[-1].clip_slots[-1] == last
    assert windows[-1].sync_slots[-1] == last_sync
