"""Masks from a folder of per-frame mask images (``saganet.media.mask_frames``)."""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saganet.errors import UserInputError
from saganet.media.mask_frames import MaskFrames
from saganet.media.masks import MaskVideo, mask_source
from saganet.media.output import write_mask_video
from saganet.media.video import SYNC_FPS, SYNC_SIZE, resize_masks
from saganet.soundtrack import SoundObject
from tests.videos import write_video

# A VOS palette: index 0 black, then distinct colours (the colours do not matter, the indices do).
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12)


def boxes(count: int, height: int, width: int, ids: int = 1) -> np.ndarray:
    """``(count, H, W)`` uint8 label images: object ``i`` a box moving right at its own speed
    and height (later ids drawn over earlier ones)."""
    labels = np.zeros((count, height, width), np.uint8)
    side = max(2, height // 4)
    for frame in range(count):
        for obj in range(1, ids + 1):
            x = (frame * obj * 3) % (width - side)
            y = (obj - 1) * side % (height - side)
            labels[frame, y: y + side, x: x + side] = obj
    return labels


def write_frames(folder: Path, images: np.ndarray | list, numbers: list[int] | None = None,
                 mode: str = "P", name: str = "{:05d}.png") -> Path:
    """One image per frame, named by its frame number (``numbers``, default 0, 1, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    numbers = list(range(len(images))) if numbers is None else numbers
    for number, pixels in zip(numbers, images, strict=True):
        if mode == "P":
            image = Image.fromarray(np.asarray(pixels, np.uint8), mode="L").convert("P")
            # From L, the values stay the indices; the palette only colours them.
            image.putpalette(PALETTE)
        else:
            image = Image.fromarray(np.asarray(pixels))
        image.save(folder / name.format(number))
    return folder


@pytest.mark.parametrize("fps", [25, Fraction(30000, 1001), 12])
def test_a_folder_reads_as_the_lossless_mask_video_of_its_frames(tmp_path: Path,
                                                                 fps: Fraction) -> None:
    seconds, height, width = 2.0, 48, 80
    count = round(seconds * fps)
    masks = boxes(count, height, width) * 255
    video = write_mask_video(tmp_path / "mask.mp4", masks, fps=fps)
    folder = write_frames(tmp_path / "frames", masks, mode="L")
    frames, reference = MaskFrames(folder, float(fps)), MaskVideo(video)
    assert frames.duration == pytest.approx(reference.duration, abs=1 / SYNC_FPS)
    for start, end in [(0.0, None), (0.0, 0.64), (0.4, 1.32), (1.0, None), (0.5, 0.5)]:
        got = frames.read(start, end)
        assert got.dtype == torch.uint8 and got.shape[1:] == (1, SYNC_SIZE, SYNC_SIZE)
        assert torch.equal(got, reference.read(start, end)), (start, end)
    # Masks that move: a reader holding one frame throughout would fail the comparison.
    whole = frames.read()
    # Up to the slot the end of the last frame rounds to (half up), as FFmpeg's fps filter.
    assert len(whole) == math.floor(Fraction(count * SYNC_FPS) / Fraction(fps) + Fraction(1, 2))
    assert not torch.equal(whole[0], whole[-1])


def test_object_id_picks_one_object_of_the_label_images(tmp_path: Path) -> None:
    count, height, width = 30, 40, 72
    labels = boxes(count, height, width, ids=3)
    folder = write_frames(tmp_path / "labels", labels)
    with Image.open(folder / "00000.png") as image:
        assert image.mode == "P"
    for obj in range(1, 4):
        expected = resize_masks(labels == obj)
        assert torch.equal(MaskFrames(folder, 25, object_id=obj).read(), expected)
    # Without an id, every object together.
    assert torch.equal(MaskFrames(folder, 25).read(), resize_masks(labels != 0))


def test_several_ids_without_a_choice_warn_once(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    folder = write_frames(tmp_path / "labels", boxes(20, 32, 64, ids=2))
    masks = MaskFrames(folder, 25)
    with caplog.at_level(logging.WARNING):
        masks.read(0.0, 0.4)
        masks.read(0.4, None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1, 2" in warnings[0] and "--mask_id" in warnings[0]
    caplog.clear()
    single = MaskFrames(write_frames(tmp_path / "one", boxes(20, 32, 64)), 25)
    with caplog.at_level(logging.WARNING):
        single.read()
    assert not caplog.records


def test_a_soft_mask_is_named_as_such(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A grey mask (a probability map saved as 0-255) is no label image: every non-zero pixel
    is the object, and the warning says what the folder looks like."""
    ramp = np.tile(np.arange(256, dtype=np.uint8), (24, 1))
    folder = write_frames(tmp_path / "soft", [ramp, ramp], mode="L")
    with caplog.at_level(logging.WARNING):
        masks = MaskFrames(folder, 25).read()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "255 values" in warning and "soft" in warning
    assert torch.equal(masks, resize_masks(np.stack([ramp, ramp]) != 0))


def test_an_absent_id_is_named_in_the_empty_hint(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "labels", boxes(10, 32, 64, ids=2))
    masks = MaskFrames(folder, 25, object_id=3)
    assert int(masks.read().max()) == 0
    assert masks.empty_hint() == " (the mask images hold object ids 1, 2, not 3)"
    assert MaskFrames(folder, 25, object_id=1).empty_hint() == ""


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16", "1"])
def test_other_image_modes(tmp_path: Path, mode: str) -> None:
    labels = boxes(12, 32, 48, ids=2)
    if mode in ("RGB", "RGBA"):
        colours = np.array([[0, 0, 0, 0], [200, 0, 0, 255], [0, 0, 90, 255]], np.uint8)
        images = list(colours[labels][..., : len(mode)])
    elif mode == "1":
        images = [Image.fromarray(frame != 0) for frame in labels]
    else:
        images = [Image.fromarray(frame.astype(np.uint16) * 1000) for frame in labels]
    folder = tmp_path / mode.replace(";", "_")
    folder.mkdir()
    for k, image in enumerate(images):
        image = image if isinstance(image, Image.Image) else Image.fromarray(image)
        image.save(folder / f"{k:05d}.png")
    assert Image.open(folder / "00000.png").mode == mode
    assert torch.equal(MaskFrames(folder, 25).read(), resize_masks(labels != 0))
    if mode == "I;16":
        assert torch.equal(MaskFrames(folder, 25, object_id=2000).read(),
                           resize_masks(labels == 2))
    if mode.startswith("RGB"):
        with pytest.raises(UserInputError, match="colour"):
            MaskFrames(folder, 25, object_id=1).read()


def test_sparse_frames_hold_until_the_next_and_start_empty(tmp_path: Path) -> None:
    fps, step, first = 30, 5, 10
    numbers = list(range(first, 61, step))
    labels = boxes(len(numbers), 32, 64)
    folder = write_frames(tmp_path / "sparse", labels, numbers, name="frame_{:04d}.png")
    masks = MaskFrames(folder, fps)
    assert masks.duration == pytest.approx(round((numbers[-1] + 1) * SYNC_FPS / fps) / SYNC_FPS)
    got = masks.read()
    resized = resize_masks(labels != 0)
    for slot, mask in enumerate(got):
        time = Fraction(slot, SYNC_FPS)
        # The fps-filter rule: the last image whose frame rounds to this slot or before.
        shown = [k for k, n in enumerate(numbers)
                 if math.floor(Fraction(n * SYNC_FPS, fps) + Fraction(1, 2)) <= slot]
        if not shown:
            assert int(mask.max()) == 0, time
        else:
            assert torch.equal(mask, resized[shown[-1]]), time
    assert int(got[0].max()) == 0 and int(got[-1].max()) == 255


@pytest.mark.parametrize(("make", "problem", "names"), [
    (lambda d: None, "not found", "nothing"),
    (lambda d: (d.parent / "file.png").write_bytes(b"x"), "not a folder", "file.png"),
    (lambda d: (d / "00000.jpg").write_bytes(b"x"), "jpeg", "folder"),
    (lambda d: (d / "notes.txt").write_text("x") and (d / "sub.png").mkdir(), "no mask images",
     "folder"),
    (lambda d: write_frames(d, boxes(2, 16, 16), name="mask{}.png") and
     (d / "last.png").write_bytes((d / "mask0.png").read_bytes()), "frame number", "last.png"),
    (lambda d: write_frames(d, boxes(2, 16, 16)) and
     (d / "frame0001.png").write_bytes((d / "00001.png").read_bytes()), "frame 1", "0001.png"),
    (lambda d: write_frames(d, boxes(1, 16, 16)) and
     write_frames(d, boxes(1, 16, 24), [1]), "16x16", "00001.png"),
    (lambda d: write_frames(d, boxes(1, 16, 16)) and
     (d / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"), "cannot read", "00001.png"),
])
def test_bad_folders_fail_with_one_line_naming_the_file(tmp_path: Path, make, problem: str,
                                                        names: str) -> None:
    folder = tmp_path / ("nothing" if names == "nothing" else "folder")
    if names != "nothing":
        folder.mkdir()
    make(folder)
    path = tmp_path / "file.png" if names == "file.png" else folder
    with pytest.raises(UserInputError) as caught:
        MaskFrames(path, 25).read()
    message = str(caught.value)
    assert problem in message.lower() and names in message and "\n" not in message


@pytest.mark.parametrize(("fps", "object_id"), [(0, None), (math.nan, None), (25, 0),
                                                (25, -1), (25, 1.5), (25, True)])
def test_bad_rate_or_id(tmp_path: Path, fps: float, object_id: object) -> None:
    with pytest.raises(UserInputError):
        MaskFrames(tmp_path, fps, object_id)


def test_mask_source_opens_either_kind(tmp_path: Path) -> None:
    fps = Fraction(30000, 1001)
    video = write_video(tmp_path / "clip.mp4", np.zeros((8, 32, 48, 3), np.uint8), fps=fps)
    folder = write_frames(tmp_path / "frames", boxes(8, 32, 48))
    frames = mask_source(folder, video, object_id=1)
    assert isinstance(frames, MaskFrames)
    assert frames.fps == pytest.approx(float(fps)) and frames.object_id == 1
    mask_file = write_mask_video(tmp_path / "mask.mp4", boxes(8, 32, 48) * 255)
    assert isinstance(mask_source(mask_file, video), MaskVideo)
    with pytest.raises(UserInputError, match="mask_id"):
        mask_source(mask_file, video, object_id=1)
    # A path given to SoundObject must be a file: the folder's timing needs the video.
    with pytest.raises(UserInputError, match="MaskFrames"):
        SoundObject("box", folder)
    assert SoundObject("box", frames).masks is frames
