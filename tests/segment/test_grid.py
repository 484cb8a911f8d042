"""The 25 fps grid: the frames handed out forwards, backwards and from mid-video are those the
video reader puts in each slot (FFmpeg fps-filter semantics), at any frame rate and with VFR."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from saganet.media.video import read_frames
from saganet.segment.grid import GRID_FPS, VideoGrid, frames_in, read_slots, slot_of_time
from tests.videos import write_video

# Distinct gray levels identify the source frame behind every slot.
_STEP = 5
_VFR_MS = [0, 30, 45, 100, 180, 190, 200, 260, 400, 410, 430, 500, 520, 600, 610, 700, 760,
           800, 900, 1000]


def _levels(count: int, height: int = 32, width: int = 48) -> list[np.ndarray]:
    return [np.full((height, width, 3), _STEP * i, np.uint8) for i in range(count)]


def _level(frame: np.ndarray) -> int:
    return round(float(np.median(frame)) / _STEP)


@pytest.fixture(params=["cfr30", "cfr12", "ntsc", "vfr", "raw"])
def video(request, tmp_path) -> Path:
    kind = request.param
    if kind == "vfr":
        return write_video(tmp_path / "vfr.mkv", _levels(len(_VFR_MS)), pts_ms=_VFR_MS)
    if kind == "raw":
        # A raw H.264 stream: no timestamps, frames are known by their decode order.
        return write_video(tmp_path / "raw.h264", _levels(30), fps=25, container="h264")
    fps = {"cfr30": 30, "cfr12": 12, "ntsc": 30000 / 1001}[kind]
    return write_video(tmp_path / f"{kind}.mp4", _levels(37), fps=fps, gop_size=10)


def test_slots_match_the_reader(video):
    grid = VideoGrid(video)
    index = grid.scan()
    reference = read_frames(video, GRID_FPS, (index.info.height, index.info.width))
    expected = [_level(frame.permute(1, 2, 0).numpy()) for frame in reference]
    assert index.num_slots == len(reference) > 0

    forward = [(slot, _level(f)) for slot, f in grid.forward(0, index.num_slots)]
    assert forward == list(enumerate(expected))
    backward = [(slot, _level(f)) for slot, f in grid.backward(0, index.num_slots, chunk=4)]
    assert backward == forward[::-1]
    middle = index.num_slots // 2
    assert [(s, _level(f)) for s, f in grid.forward(middle, index.num_slots)] == forward[middle:]
    picked = read_slots(grid, [middle, 1], convert=_level)
    assert picked == {1: expected[1], middle: expected[middle]}


def test_times_and_frames_map_to_slots(tmp_path):
    fps = 30
    video = write_video(tmp_path / "clip.mp4", _levels(45), fps=fps)
    index = VideoGrid(video).scan()
    assert index.duration == pytest.approx(45 / fps)
    assert index.num_frames == 45
    # Frame n is shown at n / fps: its slot is the nearest grid time (halves round up).
    assert list(index.frame_slots[:7]) == [math.floor(n / fps * GRID_FPS + 0.5)
                                           for n in range(7)]
    assert slot_of_time(index, 0.0) == 0
    assert slot_of_time(index, 0.5) == math.floor(0.5 * GRID_FPS + 0.5)
    assert slot_of_time(index, index.duration) == index.num_slots - 1
    assert slot_of_time(index, index.duration + 0.1) is None
    assert frames_in(0.5) == math.ceil(0.5 * GRID_FPS)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_frames_are_upright(tmp_path, rotation):
    height, width = 32, 48
    frames = []
    for i in range(10):
        image = np.full((height, width, 3), 40, np.uint8)
        image[:8, :8] = 250  # coded top-left corner
        frames.append(image + 0 * i)
    video = write_video(tmp_path / "rot.mp4", frames, fps=25, rotation=rotation)
    grid = VideoGrid(video)
    info = grid.scan().info
    expected = read_frames(video, GRID_FPS, (info.height, info.width))[0].permute(1, 2, 0)
    _, frame = next(grid.forward(0, 1))
    assert frame.shape == (info.height, info.width, 3)
    assert (info.width, info.height) == ((height, width) if rotation % 180 else (width, height))
    # The marker sits where the reader (which applies the display matrix) puts it.
    assert np.abs(frame.astype(int) - expected.numpy().astype(int)).max() <= 2
