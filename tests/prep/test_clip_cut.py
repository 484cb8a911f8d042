"""Cutting, copying and tallying dataset clips (saganet.prep.clip_cut) on tiny generated videos."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from saganet.media.video import read_frames
from saganet.prep.clip_cut import (
    ClipCutError,
    ClipJob,
    ClipResult,
    copy_clip,
    cut_clip,
    execute_job,
    run_jobs,
    summary_table,
    tally,
    write_missing,
)
from tests.videos import sine, write_video

FPS = 25
SAMPLE_RATE = 44100


def frame_value(index: int) -> int:
    """Brightness of generated frame ``index``: tells which source frame an output shows."""
    return (index * 8) % 200 + 20


def write_test_video(
    path: Path, seconds: float = 2.0, fps: int = FPS, audio: bool = True, size=(64, 48)
) -> Path:
    """A small H.264 + AAC (440 Hz sine, stereo) video whose frame k has brightness
    ``frame_value(k)``."""
    width, height = size
    frames = (np.full((height, width, 3), frame_value(k), np.uint8)
              for k in range(round(seconds * fps)))
    wave = sine(440, seconds, SAMPLE_RATE)
    # Short GOP, so that seeking lands on a keyframe well before the cut.
    return write_video(path, frames, fps, gop_size=10,
                       audio=np.stack([wave, wave]) if audio else None, audio_rate=SAMPLE_RATE)


def probe(path: Path) -> dict:
    """Stream facts and decoded content of a written clip."""
    with av.open(str(path)) as container:
        facts = {"n_video": len(container.streams.video), "n_audio": len(container.streams.audio)}
        v = container.streams.video[0]
        facts["fps"] = float(v.average_rate)
        facts["codec"] = v.codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    facts["frames"] = len(frames)
    facts["first_value"] = float(frames[0].mean())
    facts["last_value"] = float(frames[-1].mean())
    if facts["n_audio"]:
        with av.open(str(path)) as container:
            a = container.streams.audio[0]
            facts["sample_rate"] = a.codec_context.sample_rate
            facts["layout"] = a.codec_context.layout.name
            samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
        facts["audio_seconds"] = samples.shape[1] / facts["sample_rate"]
        facts["audio_rms"] = float(np.sqrt(np.mean(samples**2)))
    return facts


@pytest.fixture(scope="module")
def raw_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_video(tmp_path_factory.mktemp("raw") / "raw.mp4", seconds=3.0)


def test_cut_is_exact_and_keeps_both_streams(raw_video: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "clip.mp4"
    written = cut_clip(raw_video, dest, 1000, 2600)
    assert written == pytest.approx(1.6)
    facts = probe(dest)
    assert facts["n_video"] == 1 and facts["n_audio"] == 1
    assert facts["codec"] == "h264"
    assert facts["fps"] == FPS
    assert facts["frames"] == 40
    # The clip starts at source frame 25 (1.0 s) and ends at frame 64, not at a keyframe.
    assert facts["first_value"] == pytest.approx(frame_value(25), abs=3)
    assert facts["last_value"] == pytest.approx(frame_value(64), abs=3)
    assert facts["sample_rate"] == SAMPLE_RATE and facts["layout"] == "stereo"
    # AAC adds at most a couple of 1024-sample frames of padding.
    assert facts["audio_seconds"] == pytest.approx(1.6, abs=0.05)
    assert facts["audio_rms"] == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["clip.mp4"]


def test_cut_past_the_end_is_reported_short(raw_video: Path, tmp_path: Path) -> None:
    job = ClipJob("solos", "train", "x", "cut", dest=tmp_path / "x.mp4", src=raw_video,
                  start_ms=2000, end_ms=5000)
    result = execute_job(job)
    assert result.status == "cut"
    assert "ends early" in result.reason
    assert probe(tmp_path / "x.mp4")["frames"] == 25


def test_cut_without_audio_fails_cleanly(tmp_path: Path) -> None:
    silent = write_test_video(tmp_path / "silent.mp4", seconds=1.0, audio=False)
    with pytest.raises(ClipCutError, match="no audio"):
        cut_clip(silent, tmp_path / "out" / "c.mp4", 0, 500)
    assert not list((tmp_path / "out").iterdir())


def test_undecodable_source_becomes_failed_result(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 10)
    job = ClipJob("solos", "val", "b", "cut", dest=tmp_path / "out" / "b.mp4", src=broken,
                  start_ms=0, end_ms=1000)
    result = execute_job(job)
    assert result.status == "failed"
    assert str(broken) in result.reason
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_range_after_the_end_fails(raw_video: Path, tmp_path: Path) -> None:
    with pytest.raises(ClipCutError, match="no video frames"):
        cut_clip(raw_video, tmp_path / "out" / "c.mp4", 4000, 5000)
    assert not list((tmp_path / "out").iterdir())


def test_empty_range_is_rejected(raw_video: Path, tmp_path: Path) -> None:
    with pytest.raises(ClipCutError, match="empty time range"):
        cut_clip(raw_video, tmp_path / "c.mp4", 1000, 1000)


@pytest.mark.parametrize("move", [False, True])
def test_copy_and_move(tmp_path: Path, move: bool) -> None:
    src = tmp_path / "src.mp4"
    src.write_bytes(b"clip bytes")
    dest = tmp_path / "a" / "b" / "dest.mp4"
    copy_clip(src, dest, move=move)
    assert dest.read_bytes() == b"clip bytes"
    assert src.exists() is not move
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dest.mp4"]


def test_run_jobs_in_worker_processes(raw_video: Path, tmp_path: Path) -> None:
    already = tmp_path / "already.mp4"
    already.write_bytes(b"x")
    jobs = [
        ClipJob("solos", "train", "c1", "cut", dest=tmp_path / "c1.mp4", src=raw_video,
                start_ms=0, end_ms=1000),
        ClipJob("urmp", "test", "m", "missing", reason="nothing there"),
        ClipJob("solos", "train", "c2", "cut", dest=tmp_path / "c2.mp4", src=raw_video,
                start_ms=1000, end_ms=2000),
        ClipJob("solos", "train", "e", "existing", dest=already),
        ClipJob("music21", "val", "cp", "copy", dest=tmp_path / "cp.mp4", src=already),
    ]
    results = run_jobs(jobs, workers=2, progress=False)
    assert [r.job for r in results] == jobs
    assert [r.status for r in results] == ["cut", "missing", "cut", "existing", "copied"]
    assert probe(tmp_path / "c2.mp4")["first_value"] == pytest.approx(frame_value(25), abs=3)
    assert already.exists()


def test_tally_table_and_missing_file(tmp_path: Path) -> None:
    def result(source: str, split: str, status: str, reason: str = "") -> ClipResult:
        return ClipResult(ClipJob(source, split, f"{source}-{status}", "missing"), status, reason)

    results = [
        result("solos", "train", "cut"),
        result("solos", "train", "failed", "ClipCutError: no audio stream"),
        result("solos", "val", "missing", "no raw root given for solos"),
        result("urmp", "test", "copied"),
        result("urmp", "test", "existing"),
    ]
    counts = tally(results)
    assert counts[("solos", "train")]["found"] == 2
    assert counts[("solos", "train")]["failed"] == 1
    assert counts[("solos", "val")]["missing"] == 1
    assert counts[("urmp", "test")]["rows"] == 2
    table = summary_table(results).splitlines()
    assert table[0].split() == ["source", "split", "rows", "found", "cut", "copied", "existing",
                                "missing", "failed"]
    assert table[2].split() == ["solos", "train", "2", "2", "1", "0", "0", "0", "1"]
    assert table[-1].split() == ["total", "5", "4", "1", "1", "1", "1", "1"]

    path = tmp_path / "missing.tsv"
    assert write_missing(results, path) == 2
    lines = path.read_text().splitlines()
    assert lines[0] == "source\tsplit\tid\tstatus\treason"
    assert lines[1:] == [
        "solos\ttrain\tsolos-failed\tfailed\tClipCutError: no audio stream",
        "solos\tval\tsolos-missing\tmissing\tno raw root given for solos",
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_move_keeps_a_clip_until_its_last_job(raw_video: Path, tmp_path: Path,
                                              workers: int) -> None:
    """Duplicate rows, or one clip under several labels, all get it; a cut's source stays."""
    shared = tmp_path / "raw" / "shared.mp4"
    shared.parent.mkdir()
    shared.write_bytes(b"clip bytes")
    labels = ["cello", "cello", "viola"]
    jobs = [ClipJob("music21", "train", f"c{k}", "copy", dest=tmp_path / "out" / lab / "c.mp4",
                    src=shared) for k, lab in enumerate(labels)]
    jobs += [
        ClipJob("solos", "train", "cut", "cut", dest=tmp_path / "out" / "cut.mp4", src=raw_video,
                start_ms=0, end_ms=500),
        ClipJob("solos", "train", "raw", "copy", dest=tmp_path / "out" / "raw.mp4",
                src=raw_video),
    ]
    results = run_jobs(jobs, workers=workers, move=True, progress=False)
    assert [r.status for r in results] == ["copied"] * len(labels) + ["cut", "copied"]
    for lab in set(labels):
        assert (tmp_path / "out" / lab / "c.mp4").read_bytes() == b"clip bytes"
    assert not shared.exists()  # moved by the last job that needed it
    assert raw_video.exists()  # a cut reads it: copied, never moved


@pytest.mark.parametrize("rotation", [90, -90])
def test_cut_keeps_the_display_rotation(tmp_path: Path, rotation: int) -> None:
    """A phone video's rotation tag goes with the clip, so it is read upright like its source."""
    width, height, seconds = 64, 48, 1.0
    image = np.full((height, width, 3), 20, np.uint8)
    image[:, : width // 2] = 230  # left half bright: tells a turned picture from an upright one
    wave = sine(440, seconds, SAMPLE_RATE)
    src = write_video(tmp_path / "phone.mp4", [image] * round(seconds * FPS), FPS,
                      rotation=rotation, audio=np.stack([wave, wave]), audio_rate=SAMPLE_RATE)
    clip = tmp_path / "clip.mp4"
    cut_clip(src, clip, 0, round(seconds * 500))
    size = (height, width)
    got = read_frames(clip, FPS, size)
    upright = read_frames(src, FPS, size)[: got.shape[0]]
    assert got.shape == upright.shape
    assert (got.float() - upright.float()).abs().mean() < 8


def write_late_video(path: Path, offset: float, seconds: float) -> Path:
    """A test video whose video and audio timestamps both start at ``offset`` seconds."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.gop_size = 10
        sound = out.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "stereo"
        for k in range(round(seconds * FPS)):
            image = np.full((48, 64, 3), frame_value(k), np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = k + round(offset * FPS), Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        wave = sine(440, seconds, SAMPLE_RATE)
        samples = np.stack([wave, wave]).astype(np.float32)
        for first in range(0, samples.shape[1], 1024):
            chunk = np.ascontiguousarray(samples[:, first : first + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = first + round(offset * SAMPLE_RATE)
            frame.time_base = Fraction(1, SAMPLE_RATE)
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path


def test_cut_counts_from_the_first_timestamp(tmp_path: Path) -> None:
    """Times are relative to the file's start (as FFmpeg's -ss), not to timestamp 0."""
    offset, seconds, clip_ms = 2.0, 2.0, 1000
    src = write_late_video(tmp_path / "late.mp4", offset, seconds)
    with av.open(str(src)) as container:
        assert container.start_time / av.time_base > offset / 2  # the file really starts late
    written = cut_clip(src, tmp_path / "clip.mp4", 0, clip_ms)
    assert written == pytest.approx(clip_ms / 1000)
    facts = probe(tmp_path / "clip.mp4")
    assert facts["frames"] == round(clip_ms / 1000 * FPS)
    assert facts["first_value"] == pytest.approx(frame_value(0), abs=3)
    assert facts["audio_seconds"] == pytest.approx(clip_ms / 1000, abs=0.05)
    assert facts["audio_rms"] == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
