"""Video and mask reading: frame choice against FFmpeg's own fps filter, sizes, orientation,
pixel formats, durations and every kind of bad input.

Test clips are written here with PyAV. Most frames are uniform grey whose level encodes the
frame index (``LEVEL0 + STEP * i``, losslessly encoded), so the source frame behind every
output frame can be read back from its mean.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

import saganet.media.video as video_module
from saganet.errors import UserInputError
from saganet.media.masks import MaskVideo
from saganet.media.video import (
    DIM_MASK_PEAK,
    FrameRequest,
    load_video_frames,
    load_video_inputs,
    probe_video,
    read_frame_sets,
    read_frames,
)
from tests.shared import DUET, VIOLIN, need
from tests.videos import write_video as encode_video

LEVEL0, STEP = 8, 4


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 25, *,
                codec: str = "libx264", options: dict[str, str] | None = None,
                **kwargs: Any) -> Path:
    """``tests.videos.write_video``, lossless by default for H.264 (``qp`` 0), so that frame
    levels read back exactly; ``options`` given (even ``{}``) replaces that default."""
    if options is None:
        options = {"qp": "0"} if codec == "libx264" else {}
    return encode_video(path, frames, fps, codec=codec, options=options, **kwargs)


def level_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    return [np.full((height, width, 3), LEVEL0 + STEP * i, np.uint8) for i in range(count)]


def frame_indices(frames: torch.Tensor) -> list[int]:
    """Source frame index of each output frame of a ``level_frames`` clip."""
    return [round((m - LEVEL0) / STEP) for m in frames.float().mean(dim=(1, 2, 3)).tolist()]


def ffmpeg_fps_filter(path: Path, fps: float) -> list[int]:
    """What FFmpeg's own ``fps`` filter (default options) outputs, as source frame indices."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        source, rate, sink = (graph.add_buffer(template=stream), graph.add("fps", str(fps)),
                              graph.add("buffersink"))
        source.link_to(rate)
        rate.link_to(sink)
        graph.configure()
        means: list[float] = []

        def drain() -> None:
            while True:
                try:
                    means.append(graph.vpull().to_ndarray(format="rgb24").mean())
                except (av.error.BlockingIOError, av.error.EOFError):
                    return

        for frame in container.decode(stream):
            graph.vpush(frame)
            drain()
        graph.vpush(None)
        drain()
    return [round((m - LEVEL0) / STEP) for m in means]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("clips")
    # Variable frame rate, starting at 0.1 s, with uneven gaps.
    vfr_ms = [100 + 40 * i + (13 if i % 3 == 0 else 0) - (9 if i % 7 == 0 else 0)
              for i in range(30)]
    return {
        "portrait30": write_video(tmp / "portrait30.mp4", level_frames(60, 320, 180), fps=30),
        "vfr": write_video(tmp / "vfr.mp4", level_frames(30, 32, 48), pts_ms=vfr_ms),
        "tiny": write_video(tmp / "tiny.mp4", level_frames(25, 32, 32), fps=25),
        "ntsc": write_video(tmp / "ntsc.mp4", level_frames(40, 36, 64), fps=30000 / 1001),
    }


@pytest.mark.parametrize("name", ["portrait30", "vfr", "tiny", "ntsc"])
@pytest.mark.parametrize("fps", [8, 25])
def test_frame_choice_matches_ffmpeg_fps_filter(clips: dict[str, Path], name: str,
                                                fps: int) -> None:
    frames = read_frames(clips[name], fps, 32)
    assert frames.dtype == torch.uint8 and frames.shape[1:] == (3, 32, 32)
    assert frame_indices(frames) == ffmpeg_fps_filter(clips[name], fps)


def test_stream_without_timestamps_follows_frame_durations(tmp_path: Path) -> None:
    frames = level_frames(30, 32, 32)
    raw = write_video(tmp_path / "raw.h264", frames, fps=30, container="h264")
    muxed = write_video(tmp_path / "muxed.mp4", frames, fps=30)
    assert probe_video(raw).fps == 30
    assert frame_indices(read_frames(raw, 8, 32)) == ffmpeg_fps_filter(muxed, 8)


def test_start_and_end_select_a_window_of_the_same_timeline(clips: dict[str, Path]) -> None:
    whole = read_frames(clips["portrait30"], 25, (64, 36))
    part = read_frames(clips["portrait30"], 25, (64, 36), start=0.4, end=1.2)
    assert part.shape[0] == 20  # slots 10 .. 29
    assert torch.equal(part, whole[10:30])


def test_one_decode_serves_several_requests(clips: dict[str, Path]) -> None:
    clip, gray = read_frame_sets(clips["portrait30"], [FrameRequest(8, 64),
                                                       FrameRequest(25, (40, 20), gray=True)])
    assert torch.equal(clip, read_frames(clips["portrait30"], 8, 64))
    assert gray.shape == (50, 1, 40, 20)


def test_portrait_30fps_2s_clip(clips: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    info = probe_video(clips["portrait30"])
    assert (info.width, info.height, info.rotation) == (180, 320, 0)
    assert abs(info.fps - 30) < 1e-6 and not info.has_audio
    with caplog.at_level(logging.WARNING):
        frames = load_video_frames(clips["portrait30"], duration=5.0)
    assert frames.duration == pytest.approx(2.0)
    assert any("2.000 s" in r.getMessage() for r in caplog.records)
    assert frames.clip_frames.shape == (16, 3, 384, 384)
    assert frames.sync_frames.shape == (50, 3, 224, 224)
    assert frames.clip_frames.dtype == frames.sync_frames.dtype == torch.float32
    # Uniform frames: the float conversions are exact images of the uint8 levels.
    clip_levels = frames.clip_frames.mean(dim=(1, 2, 3)) * 255
    sync_levels = (frames.sync_frames.mean(dim=(1, 2, 3)) + 1) / 2 * 255
    assert frame_indices(clip_levels[:, None, None, None]) == ffmpeg_fps_filter(
        clips["portrait30"], 8)
    assert frame_indices(sync_levels[:, None, None, None]) == ffmpeg_fps_filter(
        clips["portrait30"], 25)
    assert frames.sync_frames.min() >= -1 and frames.sync_frames.max() <= 1


def test_duration_between_frame_periods_is_kept(clips: dict[str, Path],
                                                caplog: pytest.LogCaptureFixture) -> None:
    # 1.2 s is not a whole number of 8 fps periods: int(8 * 1.2) = 9 CLIP frames cover it.
    with caplog.at_level(logging.WARNING):
        frames = load_video_frames(clips["portrait30"], duration=1.2)
    assert frames.duration == pytest.approx(1.2)
    assert not caplog.records
    assert frames.clip_frames.shape[0] == 9 and frames.sync_frames.shape[0] == 30


@pytest.mark.parametrize(("rotation", "band_side"),
                         [(90, "bottom"), (-90, "top"), (180, "right"), (0, "left")])
def test_frames_are_upright(tmp_path: Path, rotation: int, band_side: str) -> None:
    # Coded landscape 64x32 with a white band on its left edge; the display matrix turns it
    # counter-clockwise by `rotation` degrees (FFmpeg's convention).
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :12] = 255
    path = write_video(tmp_path / "rotated.mp4", [image] * 3, rotation=rotation)
    info = probe_video(path)
    portrait = rotation % 180 != 0
    assert (info.width, info.height) == ((32, 64) if portrait else (64, 32))
    frames = read_frames(path, 25, (info.height, info.width))
    assert frames.shape[2:] == (info.height, info.width)
    gray = frames[0].float().mean(dim=0)  # (H, W)
    sides = {"top": gray[:6].mean(), "bottom": gray[-6:].mean(), "left": gray[:, :6].mean(),
             "right": gray[:, -6:].mean()}
    assert sides[band_side] > 200
    assert all(v < 60 for k, v in sides.items() if k != band_side)


@pytest.mark.parametrize(("codec", "pix_fmt", "container"), [
    ("libx264", "yuv444p", "matroska"),
    ("mjpeg", "yuvj420p", "avi"),
    ("mpeg4", "yuv420p", "avi"),
    ("ffv1", "bgr0", "matroska"),
])
def test_pixel_formats_and_containers(tmp_path: Path, codec: str, pix_fmt: str,
                                      container: str) -> None:
    color = np.array([200, 60, 120], np.uint8)
    image = np.broadcast_to(color, (48, 64, 3))
    options = {"qscale": "2"} if codec in ("mjpeg", "mpeg4") else None
    path = write_video(tmp_path / f"clip.{container[:3]}", [image] * 10, codec=codec,
                       pix_fmt=pix_fmt, container=container, options=options)
    frames = read_frames(path, 25, 16)
    assert frames.shape == (10, 3, 16, 16)
    got = frames.float().mean(dim=(0, 2, 3))
    assert torch.allclose(got, torch.from_numpy(color).float(), atol=4), got
    gray = read_frames(path, 25, 16, gray=True)
    expected_gray = 0.299 * 200 + 0.587 * 60 + 0.114 * 120  # BT.601 luma, full range
    assert abs(gray.float().mean().item() - expected_gray) < 4


# -------------------------------------------------------------------------------------------
# Video + mask


def box_frames(count: int, height: int, width: int, box: tuple[float, float, float, float],
               ) -> list[np.ndarray]:
    """White box (top, left, bottom, right as fractions) on black."""
    image = np.zeros((height, width, 3), np.uint8)
    top, left, bottom, right = box
    image[int(top * height) : int(bottom * height), int(left * width) : int(right * width)] = 255
    return [image] * count


def test_mask_with_other_size_and_rate(tmp_path: Path) -> None:
    video = write_video(tmp_path / "video.mp4", level_frames(50, 36, 64), fps=25)
    mask = write_video(tmp_path / "mask.mp4", box_frames(60, 54, 96, (0.25, 0.5, 0.75, 1.0)),
                       fps=30)
    inputs = load_video_inputs(video, mask, duration=1.5)
    assert inputs.duration == pytest.approx(1.5)
    assert inputs.clip_frames.shape == (12, 3, 384, 384)
    assert inputs.sync_frames.shape == (37, 3, 224, 224)
    assert inputs.masks.shape == (37, 1, 224, 224) and inputs.masks.dtype == torch.float32
    assert inputs.masks.min() >= 0 and inputs.masks.max() <= 1
    # Squash resize keeps the box where it was, in relative coordinates.
    assert inputs.masks[0, 0, 112, 168] == 1 and inputs.masks[0, 0, 112, 56] == 0
    assert inputs.masks[0, 0, 20, 168] == 0
    assert torch.equal((inputs.clip_frames * 255).round().to(torch.uint8),
                       read_frames(video, 8, 384)[:12])
    assert torch.equal(((inputs.sync_frames + 1) / 2 * 255).round().to(torch.uint8),
                       read_frames(video, 25, 224)[:37])


def test_mask_with_other_aspect_ratio_is_refused(tmp_path: Path) -> None:
    video = write_video(tmp_path / "video.mp4", level_frames(25, 36, 64))
    mask = write_video(tmp_path / "square_mask.mp4", box_frames(25, 48, 48, (0, 0, 1, 1)))
    with pytest.raises(UserInputError, match="aspect") as err:
        load_video_inputs(video, mask)
    assert err.value.path == str(mask)


@pytest.mark.parametrize("rotation", [90, -90])
def test_mask_of_a_rotated_video_stored_sideways_is_refused_saying_so(tmp_path: Path,
                                                                      rotation: int) -> None:
    # A phone video: stored landscape, shown portrait. A mask made at the stored size (by a
    # tool that ignores rotation) was refused only as "the aspect ratios differ", though
    # file inspectors print the same size for both.
    height, width = 36, 64
    video = write_video(tmp_path / "phone.mp4", level_frames(25, height, width),
                        rotation=rotation)
    mask = write_video(tmp_path / "mask.mp4", box_frames(25, height, width, (0, 0, 1, 1)))
    with pytest.raises(UserInputError, match="upright") as err:
        load_video_inputs(video, mask)
    assert err.value.path == str(mask)
    # FFmpeg's rotation turns counter-clockwise (test_frames_are_upright).
    direction = "counter-clockwise" if rotation > 0 else "clockwise"
    assert f"turned 90 degrees {direction}" in str(err.value) and "\n" not in str(err.value)
    upright = write_video(tmp_path / "upright.mp4", box_frames(25, width, height, (0, 0, 1, 1)))
    assert load_video_inputs(video, upright).masks.min() > 0


@pytest.mark.parametrize("rotation", [0, 90])
def test_masks_of_anamorphic_video_at_stored_or_shown_size(tmp_path: Path, rotation: int,
                                                           ) -> None:
    # PAL widescreen: 720x576 stored, pixels 64/45 wide, shown at 1024x576 (here a tenth).
    pixel_aspect = Fraction(64, 45)
    height, width = 58, 72
    video = write_video(tmp_path / "video.mp4", level_frames(25, height, width),
                        pixel_aspect=pixel_aspect, rotation=rotation or None)
    info = probe_video(video)
    assert info.pixel_aspect == pytest.approx(float(pixel_aspect))
    shown_width = round(width * pixel_aspect)
    upright = {"stored": (height, width), "shown": (height, shown_width)}
    for name, (mask_height, mask_width) in upright.items():
        if rotation:
            mask_height, mask_width = mask_width, mask_height
        mask = write_video(tmp_path / f"{name}.mkv",
                           box_frames(25, mask_height, mask_width, (0, 0, 0.5, 0.5)),
                           codec="ffv1", pix_fmt="gray")
        inputs = load_video_inputs(video, mask, duration=1.0)
        assert inputs.masks.any()
    squeezed = (height, 2 * width) if not rotation else (2 * width, height)
    mask = write_video(tmp_path / "squeezed.mkv", box_frames(25, *squeezed, (0, 0, 1, 1)),
                       codec="ffv1", pix_fmt="gray")
    with pytest.raises(UserInputError, match="shown as"):
        load_video_inputs(video, mask, duration=1.0)


@pytest.mark.parametrize("parallel", [False, True])
def test_short_overlap_shortens_the_clip(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch, parallel: bool) -> None:
    # Both decoding schedules: one thread on small machines, video and mask in parallel else.
    monkeypatch.setattr(video_module, "_spare_cores", lambda: parallel)
    video = write_video(tmp_path / "video.mp4", box_frames(75, 32, 32, (0, 0, 1, 1)))  # 3 s
    mask = write_video(tmp_path / "mask.mp4", box_frames(60, 32, 32, (0, 0, 0.5, 0.5)),
                       fps=30)  # 2 s
    with caplog.at_level(logging.WARNING):
        inputs = load_video_inputs(video, mask, duration=5.0)
    assert inputs.duration == pytest.approx(2.0)
    assert (len(inputs.clip_frames), len(inputs.sync_frames), len(inputs.masks)) == (16, 50, 50)
    assert any("2.000 s" in r.getMessage() for r in caplog.records)


def test_counts_follow_the_used_duration(tmp_path: Path) -> None:
    # 58 frames at 25 fps: the video holds 2.32 s, and 25 * 2.32 is 57.99... in floats. Counts
    # are int(fps * duration) with plain floats, exactly as the sequence-length code computes.
    video = write_video(tmp_path / "video.mp4", level_frames(58, 32, 32), fps=25)
    frames = load_video_frames(video)
    assert frames.duration == pytest.approx(2.32)
    assert len(frames.clip_frames) == int(8 * frames.duration) == 18
    assert len(frames.sync_frames) == int(25 * frames.duration) == 57


def test_less_than_one_synchformer_window_is_an_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "short.mp4", level_frames(15, 32, 32), fps=25)  # 0.6 s
    with pytest.raises(UserInputError, match="too short"):
        load_video_frames(video)
    mask = write_video(tmp_path / "mask.mp4", box_frames(15, 32, 32, (0, 0, 1, 1)), fps=25)
    long_video = write_video(tmp_path / "long.mp4", level_frames(50, 32, 32), fps=25)
    with pytest.raises(UserInputError, match="too short"):
        load_video_inputs(long_video, mask)


def test_empty_mask_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    video = write_video(tmp_path / "video.mp4", level_frames(25, 32, 32))
    mask = write_video(tmp_path / "mask.mp4", [np.zeros((32, 32, 3), np.uint8)] * 25)
    with caplog.at_level(logging.WARNING):
        inputs = load_video_inputs(video, mask, duration=1.0)
    assert not inputs.masks.any()
    assert any("empty" in r.getMessage() for r in caplog.records)


def write_rgba_video(path: Path, image: np.ndarray, count: int, fps: int, codec: str,
                     pix_fmt: str) -> Path:
    """``count`` copies of an ``(H, W, 4)`` RGBA image, encoded with opacity."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt = pix_fmt
        for _ in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgba")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize(("codec", "pix_fmt", "suffix"),
                         [("png", "rgba", ".mov"), ("ffv1", "yuva420p", ".mkv")])
def test_mask_with_alpha_is_brightness_over_black(tmp_path: Path, codec: str, pix_fmt: str,
                                                  suffix: str) -> None:
    # White everywhere, opaque only on the object: the colour under the transparent background
    # was read as it is, and the whole frame was the object.
    height, width, fps = 32, 48, 25
    image = np.full((height, width, 4), 255, np.uint8)
    image[..., 3] = 0
    image[height // 4 : height // 2, width // 4 : width // 2, 3] = 255
    image[3 * height // 4 :, :, 3] = 128  # half opaque: half bright
    path = write_rgba_video(tmp_path / f"mask{suffix}", image, fps, fps, codec, pix_fmt)
    masks = read_frames(path, fps, (height, width), gray=True)
    assert len(masks) == fps
    expected = torch.from_numpy(image[..., 3].astype(np.int16))  # white times opacity
    assert (masks[:, 0].to(torch.int16) - expected).abs().max() <= 1


def test_empty_mask_of_an_alpha_video_says_so(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    height, width, fps = 32, 48, 25
    video = write_video(tmp_path / "video.mp4", level_frames(fps, height, width))
    # The object drawn in the alpha channel only, in black: masks are brightness over black.
    image = np.zeros((height, width, 4), np.uint8)
    image[height // 4: 3 * height // 4, width // 4: 3 * width // 4, 3] = 255
    mask_path = write_rgba_video(tmp_path / "mask.mkv", image, fps, fps, "ffv1", "yuva420p")
    with caplog.at_level(logging.WARNING):
        inputs = load_video_inputs(video, mask_path, duration=1.0)
    assert not inputs.masks.any()
    empty = [r.getMessage() for r in caplog.records if "empty" in r.getMessage()]
    assert len(empty) == 1 and "alpha channel" in empty[0]
    # An ordinary empty mask gets no such hint.
    caplog.clear()
    plain = write_video(tmp_path / "plain.mp4", [np.zeros((height, width, 3), np.uint8)] * fps)
    with caplog.at_level(logging.WARNING):
        load_video_inputs(video, plain, duration=1.0)
    assert not any("alpha channel" in r.getMessage() for r in caplog.records)


def object_frames(count: int, height: int, width: int, color: tuple[int, int, int],
                  ) -> list[np.ndarray]:
    """An object of ``color`` over the middle quarter of the frame, on black."""
    image = np.zeros((height, width, 3), np.uint8)
    image[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = color
    return [image] * count


def _dim_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "brightest mask pixel" in r.getMessage()]


@pytest.mark.parametrize(("color", "dim"), [((1, 1, 1), True), ((255, 0, 0), True),
                                            ((255, 255, 255), False)])
def test_dim_masks_warn_and_pass_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                           color: tuple[int, int, int], dim: bool) -> None:
    # A 0/1 mask (or a coloured one) counts as visible and sets the focal crop, but reaches the
    # model at its brightness, 1/255: the user is told; the values stay as read.
    video = write_video(tmp_path / "video.mp4", level_frames(25, 48, 64))
    mask = write_video(tmp_path / "mask.mkv", object_frames(25, 48, 64, color), codec="ffv1",
                       pix_fmt="bgr0")
    with caplog.at_level(logging.WARNING):
        inputs = load_video_inputs(video, mask, duration=1.0)
    read = read_frames(mask, 25, 224, gray=True)[: len(inputs.masks)]
    assert torch.equal(inputs.masks, read.float() / 255)
    assert inputs.masks.any()
    warnings = _dim_warnings(caplog)
    assert bool(warnings) == dim
    if dim:
        assert f"is {int(read.max())} of 255" in warnings[0]


def test_tiny_white_object_is_not_dim(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # One white pixel of a large mask is squashed below a model pixel: faint after the resize,
    # but a 0/255 mask all the same.
    height, width = 540, 960
    image = np.zeros((height, width), np.uint8)
    image[height // 2, width // 2] = 255
    video = write_video(tmp_path / "video.mp4", level_frames(25, height // 10, width // 10))
    mask = write_video(tmp_path / "mask.mkv", [image] * 25, codec="ffv1", pix_fmt="gray")
    with caplog.at_level(logging.WARNING):
        inputs = load_video_inputs(video, mask, duration=1.0)
    assert 0 < inputs.masks.max() < DIM_MASK_PEAK / 255
    assert not _dim_warnings(caplog)


def test_mask_video_warns_once_for_dim_masks(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    mask = write_video(tmp_path / "mask.mkv", object_frames(50, 32, 48, (1, 1, 1)),
                       codec="ffv1", pix_fmt="gray")
    source = MaskVideo(mask)
    with caplog.at_level(logging.WARNING):
        windows = [source.read(start, start + 0.8) for start in (0.0, 0.8, 1.2)]
    source.close()
    assert all(w.any() and int(w.max()) == 1 for w in windows)
    assert len(_dim_warnings(caplog)) == 1


def _colour_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "mask is in colour" in r.getMessage()]


@pytest.mark.parametrize(("color", "codec", "pix_fmt", "coloured"), [
    ((0, 255, 0), "libx264", "yuv420p", True),  # read at 59 %, taken without a word
    ((0, 255, 0), "ffv1", "bgr0", True),
    ((255, 255, 0), "libx264", "yuv420p", True),
    ((255, 255, 255), "libx264", "yuv420p", False),
    ((160, 160, 160), "libx264", "yuv420p", False),  # grey is a weaker object, not a colour
    ((255, 0, 0), "libx264", "yuv420p", False),  # dim: the dim-mask warning names colour
])
def test_coloured_masks_warn_once(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  color: tuple[int, int, int], codec: str, pix_fmt: str,
                                  coloured: bool) -> None:
    # Masks are read as brightness: a green object reads at 59 %, red at 30 %, blue at 11 %.
    # The object first shows after 0.4 s, as a mask's object often does.
    height, width = 48, 64
    frames = [np.zeros((height, width, 3), np.uint8)] * 10 + object_frames(40, height, width,
                                                                          color)
    video = write_video(tmp_path / "video.mp4", level_frames(50, height, width))
    mask = write_video(tmp_path / "mask.mkv", frames, codec=codec, pix_fmt=pix_fmt)
    with caplog.at_level(logging.WARNING):
        inputs = load_video_inputs(video, mask, duration=1.6)
        source = MaskVideo(mask)
        # Reading backwards decodes the file again: still one warning.
        for start in (0.0, 0.8, 0.4):
            source.read(start, start + 0.8)
        source.close()
    warnings = _colour_warnings(caplog)
    assert len(warnings) == int(coloured)
    if coloured:
        said = int(re.search(r"brightness (\d+) of 255", warnings[0]).group(1))
        read = inputs.masks[inputs.masks > 0.1] * 255  # the object as the model gets it
        assert abs(said - float(read.median())) <= 3


# -------------------------------------------------------------------------------------------
# Bad inputs


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 44100), np.float32), format="flt",
                                           layout="mono")
        frame.sample_rate = 44100
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad")
    empty = tmp / "empty.mp4"
    empty.touch()
    text = tmp / "text.mp4"
    text.write_text("this is not a video\n" * 50)
    # PyAV writes the index (moov) at the end: a cut file has no index.
    whole = write_video(tmp / "whole.mp4", level_frames(25, 32, 32))
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return {"missing": tmp / "missing.mp4", "empty": empty, "text": text,
            "audio_only": _audio_only(tmp / "audio_only.m4a"), "truncated": truncated,
            "folder": tmp}


@pytest.mark.parametrize("name", ["missing", "empty", "text", "audio_only", "truncated",
                                  "folder"])
def test_bad_inputs_are_user_errors(bad_inputs: dict[str, Path], clips: dict[str, Path],
                                    name: str) -> None:
    bad = bad_inputs[name]
    for call in (lambda: probe_video(bad), lambda: read_frames(bad, 25, 32),
                 lambda: load_video_frames(bad), lambda: load_video_inputs(bad, clips["tiny"]),
                 lambda: load_video_inputs(clips["tiny"], bad)):
        with pytest.raises(UserInputError) as err:
            call()
        assert err.value.path == str(bad)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("error", [av.error.PermissionError, PermissionError])
def test_unreadable_file_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          error: type[OSError]) -> None:
    # A file without read permission was "not a video, truncated or corrupt?". Tests run as
    # root, who reads any file: the open fails as FFmpeg's does then.
    video = write_video(tmp_path / "locked.mp4", level_frames(25, 32, 32))

    def refuse(*args: object, **kwargs: object) -> None:
        raise error(errno.EACCES, os.strerror(errno.EACCES), str(video))

    monkeypatch.setattr(video_module.av, "open", refuse)
    with pytest.raises(UserInputError) as err:
        probe_video(video)
    assert err.value.path == str(video)
    message = str(err.value)
    assert "permission" in message.lower() and "corrupt" not in message


def test_a_relative_name_with_a_colon_is_a_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # FFmpeg took "10" in "10:15.mp4" for a protocol: "Protocol not found".
    frames = level_frames(25, 32, 48)
    write_video(tmp_path / "10:15.mp4", frames)
    write_video(tmp_path / "mask:1.mp4", [f[..., 0] for f in frames])
    monkeypatch.chdir(tmp_path)
    seconds = len(frames) / 25
    inputs = load_video_inputs("10:15.mp4", "mask:1.mp4", duration=seconds)
    assert inputs.duration == pytest.approx(seconds)
    assert len(inputs.sync_frames) == len(inputs.masks) == len(frames)
    assert probe_video("10:15.mp4").duration == pytest.approx(seconds)


def test_partly_decodable_file_gives_what_it_holds(tmp_path: Path) -> None:
    # With the index at the front, a cut file still opens and decodes up to the cut.
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(50)]
    whole = write_video(tmp_path / "whole.mp4", noise, options={}, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    frames = read_frames(cut, 25, 32)
    assert 16 <= len(frames) < 50
    assert torch.equal(frames, read_frames(whole, 25, 32)[: len(frames)])


def test_a_damaged_packet_is_skipped_and_the_frames_after_it_decode(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fps = 25
    rng = np.random.default_rng(2)
    noise = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2 * fps)]
    # Every frame a keyframe, lossless: a frame after the damage decodes exactly.
    whole = write_video(tmp_path / "whole.mp4", noise, fps=fps, options={"qp": "0"},
                        gop_size=1, faststart=True)
    with av.open(str(whole)) as container:
        packets = [p.pos for p in container.demux(container.streams.video[0]) if p.size]
    damaged_index = len(packets) // 2
    data = bytearray(whole.read_bytes())
    # An impossible NAL unit length: the decoder refuses the packet.
    data[packets[damaged_index]:packets[damaged_index] + 4] = b"\xff" * 4
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    expected = read_frames(whole, fps, 32)
    with caplog.at_level(logging.WARNING):
        frames = read_frames(damaged, fps, 32)
    assert len(frames) == len(expected)
    differ = [i for i in range(len(frames)) if not torch.equal(frames[i], expected[i])]
    assert differ == [damaged_index]
    assert torch.equal(frames[damaged_index], expected[damaged_index - 1])
    (message,) = [r.getMessage() for r in caplog.records if str(damaged) in r.getMessage()]
    found = re.search(r"(\d+) damaged packet\(s\) did not decode, the first around "
                      r"([\d.]+) s", message)
    assert found and int(found[1]) == 1, message
    assert damaged_index / fps - 0.01 <= float(found[2]) < len(noise) / fps, message


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_file_cut_short_is_as_long_as_what_it_holds(tmp_path: Path, suffix: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The header of a cut file still states the whole length; the probe measures the packets
    instead, warns, and comes close to the frames that decode."""
    fps = 25
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4 * fps)]
    whole = write_video(tmp_path / f"whole{suffix}", noise, fps=fps, options={},
                        faststart=suffix == ".mp4")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.4)])
    stated = probe_video(whole).duration
    with caplog.at_level(logging.WARNING):
        held = probe_video(cut).duration
    decoded = len(read_frames(cut, fps, 32)) / fps
    assert held < stated - 1
    # Packets cut mid-way are counted but do not decode: a few frames' difference at most.
    assert decoded - 1 / fps <= held <= decoded + video_module.END_TOLERANCE_S
    assert any("cut short" in r.getMessage() and str(cut) in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    # A run probes its video at several stages: it is told once.
    with caplog.at_level(logging.WARNING):
        assert probe_video(cut).duration == held
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        assert probe_video(whole).duration == stated
    assert not caplog.records


def test_the_files_reported_once_are_the_most_recent_ones(tmp_path: Path, monkeypatch) -> None:
    """What was reported is remembered for the last REPORTS_KEPT files only (an app serving
    for weeks meets a new upload at every visit): a file reported again is the newest, and
    one pushed out by newer ones is reported again."""
    kept = 3
    monkeypatch.setattr(video_module, "REPORTS_KEPT", kept)
    monkeypatch.setattr(video_module, "_REPORTED", type(video_module._REPORTED)())
    files = []
    for k in range(kept + 2):
        files.append(tmp_path / f"f{k}")
        files[-1].write_bytes(bytes(k + 1))
    first = video_module._first_report
    assert [first(path) for path in files[:kept]] == [True] * kept
    assert not first(files[0])  # still known, and now the newest
    assert first(files[kept])  # pushes out files[1], the oldest
    assert len(video_module._REPORTED) == kept
    assert [first(files[0]), first(files[2]), first(files[1])] == [False, False, True]
    assert first(files[0], "colour")  # another report of the same file


# -------------------------------------------------------------------------------------------
# The shared duet example (1080p)


@pytest.mark.slow
def test_duet_example() -> None:
    need(DUET, VIOLIN)
    inputs = load_video_inputs(DUET, VIOLIN)
    assert inputs.duration == 5.0
    assert inputs.video_info.width == 1920 and inputs.video_info.height == 1080
    assert inputs.clip_frames.shape == (40, 3, 384, 384)
    assert inputs.sync_frames.shape == (125, 3, 224, 224)
    assert inputs.masks.shape == (125, 1, 224, 224)
    assert inputs.clip_frames.min() >= 0 and inputs.clip_frames.max() <= 1
    assert inputs.sync_frames.min() >= -1 and inputs.sync_frames.max() <= 1
    # The violinist sits on the right half of the frame.
    area = inputs.masks[:, 0] > 0.5
    assert area.any(dim=0)[:, 112:].sum() > 10 * area.any(dim=0)[:, :112].sum()


def test_duration_takes_any_real_number_and_refuses_the_rest(tmp_path: Path) -> None:
    video = write_video(tmp_path / "video.mp4", level_frames(40, 32, 32), fps=25)
    mask = write_video(tmp_path / "mask.mp4", box_frames(40, 32, 32, (0, 0, 1, 1)), fps=25)
    expected = load_video_inputs(video, mask, duration=1.0)
    for duration in (np.float32(1.0), np.int64(1), 1):
        inputs = load_video_inputs(video, mask, duration=duration)
        assert inputs.duration == expected.duration
        assert torch.equal(inputs.sync_frames, expected.sync_frames)
    assert load_video_frames(video, duration=np.float64(1.0)).duration == expected.duration
    for duration in (None, "full", True, 0, float("nan")):
        with pytest.raises(UserInputError, match="duration must be a positive number"):
            load_video_inputs(video, mask, duration=duration)
