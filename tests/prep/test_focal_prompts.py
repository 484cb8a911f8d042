"""Focal-prompt extraction (training/extract_focal_prompts.py) on a synthetic mini-SMS.

The mini-SMS (also used by test_latents.py) is laid out as ``training/load_sms.py`` leaves it:
``<root>/<label>/<clip>.mp4`` (H.264 + AAC sine, 5.2 s, 64x48), the mask video
``<root>/<label>/<clip>/<clip>_mask.mp4`` and ``metadata.csv`` in the published column format.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from saganet.data.sms_dataset import sms_paths
from saganet.errors import UserInputError
from saganet.features.focal_crop import focal_crop
from saganet.leftovers import owner_of
from saganet.media.video import read_frames
from saganet.prep.focal_prompts import (
    list_split_clips,
    make_focal_prompt,
    make_focal_prompts,
    write_h264,
)
from tests.videos import sine, write_video
from training.extract_focal_prompts import build_parser, main

REPO = Path(__file__).resolve().parents[2]
FPS = 25
SOURCE_RATE = 48000  # not 44.1 kHz, so the extraction has to resample
SIZE = (64, 48)  # width, height
SMS_HEADER = ["", "subset", "YTID", "filename", "redefined_label", "start_msec", "end_msec",
              "split"]


@dataclass(frozen=True)
class MiniClip:
    """One metadata row and, when ``seconds`` is set, the clip written for it."""

    subset: str
    ytid: str
    label: str
    start_ms: int
    split: str
    seconds: float | None  # None: the row's clip was never assembled
    tone_hz: float = 440.0

    @property
    def stem(self) -> str:
        end = self.start_ms + round(1000 * (self.seconds or 5.2))
        return f"{self.ytid}_{self.start_ms}_{end}"

    @property
    def id(self) -> str:
        return f"{self.label}/{self.stem}"


# Metadata order is not id order, so tests see that outputs are sorted by id.
MINI_CLIPS = (
    MiniClip("solos", "vidA", "violin", 0, "train", 5.2, 440.0),
    MiniClip("music21", "vidB", "cello", 1000, "train", 5.2, 220.0),
    MiniClip("avs-semantic", "vidC", "flute", 500, "train", 5.2, 880.0),
    MiniClip("solos", "vidD", "violin", 0, "train", 1.0),  # too short for 5 s
    MiniClip("music21", "vidE", "cello", 0, "train", None),  # never assembled
    MiniClip("solos", "vidF", "violin", 0, "val", 5.2),
)
GOOD_IDS = sorted(c.id for c in MINI_CLIPS[:3])


@dataclass(frozen=True)
class MiniSMS:
    root: Path
    metadata: Path


def write_clip(path: Path, seconds: float, seed: int, tone_hz: float | None,
               audio_seconds: float | None = None) -> None:
    """Moving-texture H.264 video with a stereo AAC sine (``tone_hz`` None: no audio) of
    ``audio_seconds`` (default: as long as the video)."""
    width, height = SIZE
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height, 2 * width, 3), dtype=np.uint8)
    frames = (texture[:, k % width : k % width + width] for k in range(round(seconds * FPS)))
    audio = None
    if tone_hz is not None:
        wave = sine(tone_hz, audio_seconds or seconds, SOURCE_RATE)
        audio = np.stack([wave, 0.5 * wave])
    write_video(path, frames, FPS, audio=audio, audio_rate=SOURCE_RATE)


def write_mask(path: Path, seconds: float) -> None:
    """A white box drifting right on black, as an ordinary yuv420p H.264 video."""
    width, height = SIZE

    def frames() -> Iterator[np.ndarray]:
        for k in range(round(seconds * FPS)):
            image = np.zeros((height, width, 3), np.uint8)
            x0 = 10 + k // 20
            image[12:30, x0 : x0 + 16] = 255
            yield image

    write_video(path, frames(), FPS)


def make_mini_sms(base: Path) -> MiniSMS:
    """Write the mini-SMS under ``base`` (clips, masks, metadata)."""
    root = base / "sms" / "data"
    root.mkdir(parents=True)
    rows = []
    for n, clip in enumerate(MINI_CLIPS):
        end = clip.stem.rsplit("_", 1)[1]
        rows.append([str(n), clip.subset, clip.ytid, clip.stem, clip.label,
                     str(clip.start_ms), end, clip.split])
        if clip.seconds is None:
            continue
        write_clip(root / f"{clip.id}.mp4", clip.seconds, seed=n, tone_hz=clip.tone_hz)
        write_mask(sms_paths(root, clip.id).mask, clip.seconds)
    metadata = base / "sms" / "metadata.csv"
    with metadata.open("w", newline="") as handle:
        csv.writer(handle).writerows([SMS_HEADER, *rows])
    return MiniSMS(root, metadata)


@pytest.fixture(scope="module")
def mini_sms(tmp_path_factory: pytest.TempPathFactory) -> MiniSMS:
    return make_mini_sms(tmp_path_factory.mktemp("mini_sms"))


def _frame_count_and_formats(path: Path) -> tuple[int, int, int, list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    planes = [frames[0].to_ndarray()]  # planar YUV 4:2:0 as (H * 3 / 2, W)
    return len(frames), frames[0].width, frames[0].height, planes


def test_listing_resolves_clips_by_metadata(mini_sms: MiniSMS) -> None:
    listing = list_split_clips(mini_sms.metadata, mini_sms.root, "train")
    assert [c.id for c in listing.clips] == [c.id for c in MINI_CLIPS[:4]]  # metadata order
    assert [c.label for c in listing.clips] == ["violin", "cello", "flute", "violin"]
    # Named like the listed clips (label folder and stem), though no such file exists.
    assert [name for name, _ in listing.missing] == [MINI_CLIPS[4].id]
    assert "load_sms" in listing.missing[0][1]
    assert [c.id for c in list_split_clips(mini_sms.metadata, mini_sms.root, "val").clips] == [
        MINI_CLIPS[5].id]
    with pytest.raises(UserInputError, match=r"no row of split 'test'.*train, val"):
        list_split_clips(mini_sms.metadata, mini_sms.root, "test")


def test_extraction_writes_skips_and_reports(mini_sms: MiniSMS, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    failed_list = tmp_path / "failed.tsv"
    args = ["--root", str(mini_sms.root), "--metadata", str(mini_sms.metadata),
            "--split", "train", "--failed_list", str(failed_list)]
    assert main(args) == 0
    report = capsys.readouterr().out
    assert report.startswith("done 3, skipped (already written) 0, failed 1, no clip video 1")
    assert f"failed: {MINI_CLIPS[3].id}: clip video too short: 25 frames" in report
    rows = [line.split("\t") for line in failed_list.read_text().splitlines()]
    assert rows[0] == ["id", "status", "reason"]
    assert [(r[0], r[1]) for r in rows[1:]] == [(MINI_CLIPS[3].id, "failed"),
                                                (MINI_CLIPS[4].id, "missing")]

    stamps = {}
    for clip_id in GOOD_IDS:
        paths = sms_paths(mini_sms.root, clip_id)
        count, width, height, _ = _frame_count_and_formats(paths.detail)
        assert 125 <= count <= 130 and (width, height) == (224, 224)
        count, width, height, planes = _frame_count_and_formats(paths.mask_detail)
        assert 125 <= count <= 130 and (width, height) == (224, 224)
        chroma = planes[0][224:]
        assert (chroma == 128).all(), "the mask detail must be a single gray plane"
        # Decoded as training decodes them, the files hold the focal crop of the sources.
        frames = read_frames(paths.video, 25, 224, end=5.0)
        masks = read_frames(paths.mask, 25, 224, gray=True, end=5.0)
        want_frames, want_masks = focal_crop(frames[None], masks[None])
        got_frames = read_frames(paths.detail, 25, 224, end=5.0)
        got_masks = read_frames(paths.mask_detail, 25, 224, gray=True, end=5.0)
        assert got_frames.shape == (125, 3, 224, 224) and got_masks.shape == (125, 1, 224, 224)
        assert (got_frames.float() - want_frames[0].float()).abs().mean() < 8
        assert (got_masks.float() - want_masks[0].float()).abs().mean() < 2
        # The box is not the whole frame: the crop really zooms in on the object.
        assert not torch.equal(want_masks[0], masks)
        stamps[clip_id] = (paths.detail.stat().st_mtime_ns, paths.mask_detail.stat().st_mtime_ns)
    assert not [path for path in mini_sms.root.rglob(".*") if owner_of(path.name) is not None], \
        "temporary files left behind"

    assert main(args) == 0
    assert capsys.readouterr().out.startswith("done 0, skipped (already written) 3, failed 1")
    for clip_id in GOOD_IDS:
        paths = sms_paths(mini_sms.root, clip_id)
        assert stamps[clip_id] == (paths.detail.stat().st_mtime_ns,
                                   paths.mask_detail.stat().st_mtime_ns)


@pytest.mark.slow
def test_worker_processes_give_the_same_outcome(mini_sms: MiniSMS, tmp_path: Path) -> None:
    # Spawning workers costs seconds of imports each, hence slow.
    clip_ids = [c.id for c in MINI_CLIPS[1:4]]
    serial = make_focal_prompts(mini_sms.root, clip_ids, overwrite=True, progress=False)
    pooled = make_focal_prompts(mini_sms.root, clip_ids, workers=2, overwrite=True,
                                progress=False)
    assert [(r.clip_id, r.status) for r in pooled] == [(r.clip_id, r.status) for r in serial]
    assert [r.status for r in pooled] == ["done", "done", "failed"]


def test_missing_mask_fails_with_reason(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_clip(root / "violin" / "x_0_5200.mp4", 5.2, seed=0, tone_hz=None)
    result = make_focal_prompt(root, "violin/x_0_5200")
    assert result.status == "failed" and "no mask video" in result.reason


def test_a_clip_whose_mask_is_empty_is_named_by_its_id(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    root, clip_id = tmp_path / "data", "violin/x_0_5200"
    write_clip(root / f"{clip_id}.mp4", 5.2, seed=0, tone_hz=None)
    write_video(sms_paths(root, clip_id).mask,
                (np.zeros((SIZE[1], SIZE[0], 3), np.uint8) for _ in range(round(5.2 * FPS))), FPS)
    with caplog.at_level(logging.WARNING, logger="saganet.features.focal_crop"):
        assert make_focal_prompt(root, clip_id).status == "done"
    assert f"clip(s) {clip_id}:" in caplog.text and "[0]" not in caplog.text


def test_gray_files_round_trip_exactly(tmp_path: Path) -> None:
    # A full-range gray plane: soft mask values come back as written (no range stretch).
    masks = torch.zeros(30, 1, 64, 64, dtype=torch.uint8)
    masks[:, :, 16:48, 16:48] = 128
    masks[:, :, 24:40, 24:40] = 255
    path = write_h264(tmp_path / "m.mp4", masks, fps=FPS)
    decoded = read_frames(path, FPS, 64, gray=True)
    assert decoded.shape == masks.shape
    assert (decoded.float() - masks.float()).abs().max() <= 3


def test_user_errors_exit_2(mini_sms: MiniSMS, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path / "nowhere"), "--metadata", str(mini_sms.metadata),
                 "--split", "train"]) == 2
    assert main(["--root", str(mini_sms.root), "--metadata", str(mini_sms.metadata),
                 "--split", "nope"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("extract_focal_prompts.py: ") for line in err)
    # A folder as the list: refused before any clip is processed.
    folder = tmp_path / "lists"
    folder.mkdir()
    assert main(["--root", str(mini_sms.root), "--metadata", str(mini_sms.metadata),
                 "--split", "train", "--failed_list", str(folder)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "is a folder" in err[0]
    assert list(folder.iterdir()) == []


def test_script_explains_every_option() -> None:
    for action in build_parser()._actions:
        assert action.help, f"{action.dest} has no help"
    result = subprocess.run(
        [sys.executable, str(REPO / "training" / "extract_focal_prompts.py"), "--help"],
        capture_output=True, text=True, check=False, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    for option in ("--root", "--metadata", "--split", "--duration", "--workers", "--overwrite",
                   "--failed_list"):
        assert option in result.stdout


def test_write_h264_timestamps(tmp_path: Path) -> None:
    frames = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    path = write_h264(tmp_path / "v.mp4", frames, fps=FPS)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [f.time for f in container.decode(stream)]
        assert stream.average_rate == Fraction(FPS)
    assert times == pytest.approx([k / FPS for k in range(10)])
