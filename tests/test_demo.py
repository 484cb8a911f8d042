"""End to end: ``demo.py`` with random tiny ``debug`` weights on the shared duet example."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

import demo
from saganet.debug_weights import write_debug_weights
from tests.conftest import EXAMPLES
from tests.videos import write_video

REPO = Path(__file__).resolve().parents[1]
VIDEO = EXAMPLES / "Vid_09_Jesus_tpt_vn_159092_164092.mp4"
VIOLIN = EXAMPLES / "Masks_02_vn_09_Jesus_159092_164092.mp4"
TRUMPET = EXAMPLES / "Masks_01_tpt_09_Jesus_159092_164092.mp4"
FAST = ["--variant", "debug", "--num_steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("debug_weights")
    write_debug_weights(directory)
    return directory


def run_demo(weights_dir: Path, out: Path, *args: str) -> int:
    return demo.main([*FAST, "--weights_dir", str(weights_dir), "--output", str(out), *args])


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray() for f in container.decode(stream)]
        return np.concatenate(chunks, axis=1), stream.rate


def stream_seconds(path: Path) -> dict[str, float]:
    """Duration of each stream, from the last packet's end (robust to missing headers)."""
    ends: dict[str, float] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.duration is None:
                continue
            end = float((packet.pts + packet.duration) * packet.time_base)
            kind = packet.stream.type
            ends[kind] = max(ends.get(kind, 0.0), end)
    return ends


def make_video(path: Path, seconds: float, fps: int, width: int, height: int,
               gray_box: bool = False) -> Path:
    """A moving gradient (or a white box on black, as a mask) encoded with H.264."""
    def frames() -> Iterator[np.ndarray]:
        for i in range(round(seconds * fps)):
            image = np.zeros((height, width, 3), np.uint8)
            if gray_box:
                image[height // 4: height // 2, width // 4: width // 2] = 255
            else:
                image[..., 0] = (np.arange(width) * 255 // width)[None]
                image[..., 1] = (i * 7) % 256
            yield image

    return write_video(path, frames(), fps)


def test_two_masks_give_two_soundtracks(weights_dir: Path, tmp_path: Path) -> None:
    audio = {}
    for name, mask in (("violin", VIOLIN), ("trumpet", TRUMPET)):
        out = tmp_path / name
        assert run_demo(weights_dir, out, "--video", str(VIDEO), "--mask_video", str(mask),
                        "--prompt", name) == 0
        flac, mp4 = out / f"{VIDEO.stem}.flac", out / f"{VIDEO.stem}.mp4"
        samples, rate = read_audio(flac)
        assert rate == 44100 and samples.shape[0] == 1
        assert abs(samples.shape[1] / rate - 5.0) < 0.05
        seconds = stream_seconds(mp4)
        assert abs(seconds["video"] - 5.0) < 0.25 and abs(seconds["audio"] - 5.0) < 0.25
        audio[name] = samples
    assert np.abs(audio["violin"] - audio["trumpet"]).max() > 1e-6


def test_portrait_30fps_and_short_clip(weights_dir: Path, tmp_path: Path) -> None:
    video = make_video(tmp_path / "portrait.mp4", 2.0, 30, 96, 160)
    mask = make_video(tmp_path / "portrait_mask.mp4", 2.0, 30, 48, 80, gray_box=True)
    assert run_demo(weights_dir, tmp_path / "out", "--video", str(video), "--mask_video",
                    str(mask), "--skip_video_composite") == 0
    samples, rate = read_audio(tmp_path / "out" / "portrait.flac")
    assert abs(samples.shape[1] / rate - 2.0) < 0.05
    assert not (tmp_path / "out" / "portrait.mp4").exists()


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str, str]]:
    empty = tmp / "empty.mp4"
    empty.touch()
    text = tmp / "text.mp4"
    text.write_text("not a video\n" * 100)
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(VIDEO.read_bytes()[:2000])
    audio_only = tmp / "audio_only.m4a"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 44100), np.float32), format="fltp",
                                           layout="mono")
        frame.rate = 44100
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    wide_mask = make_video(tmp / "wide_mask.mp4", 1.0, 25, 160, 48, gray_box=True)
    short = make_video(tmp / "short.mp4", 0.4, 25, 64, 48)
    short_mask = make_video(tmp / "short_mask.mp4", 0.4, 25, 64, 48, gray_box=True)
    # A regular file where a folder is needed: unwritable even for root (CI runs as root).
    blocker = tmp / "blocker"
    blocker.write_text("")
    video, mask = ["--video", str(VIDEO)], ["--mask_video", str(VIOLIN)]
    return {
        "missing": (["--video", str(tmp / "nope.mp4"), *mask], "nope.mp4", "not found"),
        "empty": (["--video", str(empty), *mask], "empty.mp4", "empty"),
        "not a video": (["--video", str(text), *mask], "text.mp4", ""),
        "truncated": (["--video", str(truncated), *mask], "truncated.mp4", ""),
        "no video stream": (["--video", str(audio_only), *mask], "audio_only.m4a", "video"),
        "aspect": ([*video, "--mask_video", str(wide_mask)], "wide_mask.mp4", "aspect"),
        "too short": (["--video", str(short), "--mask_video", str(short_mask)], "", "short"),
        "unwritable": ([*video, *mask, "--output", str(blocker / "sub")], "blocker", "output"),
        "variant": ([*video, *mask, "--variant", "huge"], "", "unknown variant"),
        "empty prompt": ([*video, *mask, "--prompt", "  "], "", "prompt"),
    }


def test_bad_inputs_fail_with_one_line(weights_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for name, (args, names, problem) in _bad_inputs(tmp_path).items():
        status = run_demo(weights_dir, out, *args)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2, name
        message = err[-1]
        assert message.startswith("demo.py: error: "), (name, err)
        assert names in message and problem in message.lower(), (name, message)
        assert "Traceback" not in "\n".join(err), name
        assert not out.exists() or not any(out.iterdir()), name


def test_existing_output_needs_overwrite(weights_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{VIDEO.stem}.flac").write_bytes(b"keep me")
    args = ["--video", str(VIDEO), "--mask_video", str(VIOLIN), "--skip_video_composite"]
    assert run_demo(weights_dir, out, *args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / f"{VIDEO.stem}.flac").read_bytes() == b"keep me"


def test_overlong_prompt_warns_and_runs(weights_dir: Path, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    prompt = " ".join(["violin"] * 120)
    args = ["--video", str(VIDEO), "--mask_video", str(VIOLIN), "--prompt", prompt,
            "--duration", "1", "--skip_video_composite"]
    assert run_demo(weights_dir, tmp_path / "out", *args) == 0
    assert any("tokens" in r.message and r.levelname == "WARNING" for r in caplog.records)


def test_cli_user_error_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "demo.py", "--variant", "debug", "--video", str(tmp_path / "x.mp4"),
         "--mask_video", str(VIOLIN), "--output", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("demo.py: error: ")


def test_mask_overlay_tints_the_object(weights_dir: Path, tmp_path: Path) -> None:
    args = ["--video", str(VIDEO), "--mask_video", str(VIOLIN), "--duration", "1"]
    assert run_demo(weights_dir, tmp_path / "plain", *args) == 0
    assert run_demo(weights_dir, tmp_path / "tint", *args, "--mask_overlay") == 0

    def first_frame(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            return next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)

    plain = first_frame(tmp_path / "plain" / f"{VIDEO.stem}.mp4")
    tint = first_frame(tmp_path / "tint" / f"{VIDEO.stem}.mp4")
    assert plain.shape == tint.shape
    # The tint is red: the red channel rises where the mask is, nowhere near everywhere.
    redder = (tint[..., 0] - plain[..., 0]) > 20
    assert 0.001 < redder.mean() < 0.5
    assert abs(stream_seconds(tmp_path / "tint" / f"{VIDEO.stem}.mp4")["video"] - 1.0) < 0.2
