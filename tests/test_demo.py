"""End to end: ``demo.py`` with random tiny ``debug`` weights.

Most tests run on synthetic clips; the duet example from ``../shared`` is used where its real
masks matter (skipped without it, except under CI).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import demo
from saganet.debug_weights import write_debug_weights
from saganet.example import SyntheticScene, synthetic_example
from saganet.media.video import probe_video
from saganet.segment.models import DEBUG_MODEL
from saganet.soundtrack.settings import read_settings
from tests.shared import DUET, TRUMPET, VIOLIN, need
from tests.videos import read_audio, stream_ends, write_video

REPO = Path(__file__).resolve().parents[1]
FAST = ["--variant", "debug", "--num_steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("debug_weights")
    write_debug_weights(directory)
    return directory


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory):
    """A 3 s synthetic clip with two objects (lossless mask videos)."""
    return synthetic_example(tmp_path_factory.mktemp("clip"), SyntheticScene(duration=3.0))


def run_demo(weights_dir: Path, out: Path, *args: str) -> int:
    return demo.main([*FAST, "--weights_dir", str(weights_dir), "--output", str(out), *args])


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


def test_debug_demo_needs_no_argument_and_no_download(tmp_path: Path) -> None:
    """A fresh clone, no network, no ../shared: `python demo.py --variant debug` works."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    env = {**os.environ, "SAGANET_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "SAGANET_OFFLINE": "1", "HOME": str(tmp_path / "home")}
    old_umask = os.umask(0o022)
    try:
        result = subprocess.run(
            [sys.executable, "demo.py", "--variant", "debug", "--num_steps", "2", "--output",
             str(out)], cwd=REPO, env=env, capture_output=True, timeout=600)
    finally:
        os.umask(old_umask)
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr[-2000:]
    # stderr is a pipe, as in a log: no progress bar redrawn in place (bytes, since text mode
    # would turn carriage returns into newlines).
    assert "\r" not in stderr, stderr[-2000:]
    # One timing line per stage, each named for what it times: "clip" alone read as the video.
    stages = [line.split("saganet.soundtrack.render: ", 1)[1].rsplit(None, 2)[0]
              for line in stderr.splitlines()
              if "saganet.soundtrack.render: " in line and line.endswith(" s")]
    assert stages == ["load CLIP", "run CLIP", "load model", "generate", "write"], stderr[-2000:]
    printed = [Path(line) for line in stdout.split()]
    example = synthetic_example(cache / "example" / "synthetic")
    assert {p.name for p in printed} == (
        {f"{example.video.stem}.flac", f"{example.video.stem}.mp4"}
        | {f"{example.video.stem}_{name}.flac" for name in example.default_objects})
    assert all(p.is_file() and p.stat().st_size > 0 for p in printed)
    # Written as any user file (the umask decides), nothing hidden left behind.
    for folder in (out, cache):
        for path in folder.rglob("*"):
            assert not path.name.startswith("."), path
            if path.is_file():
                assert path.stat().st_mode & 0o777 == 0o644, path


def test_duet_masks_reach_the_audio(weights_dir: Path, tmp_path: Path) -> None:
    """The debug weights make the mask audible: the violin and trumpet masks give audio whose
    difference is at least 1 % of the signal (RMS)."""
    need(DUET, VIOLIN, TRUMPET)
    audio = {}
    for name, mask in (("violin", VIOLIN), ("trumpet", TRUMPET)):
        out = tmp_path / name
        assert run_demo(weights_dir, out, "--video", str(DUET), "--mask_video", str(mask),
                        "--prompt", "instrument", "--num_steps", "8") == 0
        samples, rate = read_audio(out / f"{DUET.stem}.flac")
        assert rate == 44100 and samples.shape[0] == 1
        assert samples.shape[1] == round(5.0 * rate)
        seconds = stream_ends(out / f"{DUET.stem}.mp4")
        assert abs(seconds["video"][0] - 5.0) < 0.1 and abs(seconds["audio"][0] - 5.0) < 0.05
        audio[name] = samples[0]
    rms = np.sqrt(np.mean(audio["violin"] ** 2))
    difference = np.sqrt(np.mean((audio["violin"] - audio["trumpet"]) ** 2))
    assert rms > 1e-3 and difference >= 0.01 * rms, (difference, rms)


def test_portrait_30fps_and_short_clip(weights_dir: Path, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    seconds = 2.0
    video = make_video(tmp_path / "portrait.mp4", seconds, 30, 96, 160)
    mask = make_video(tmp_path / "portrait_mask.mp4", seconds, 30, 48, 80, gray_box=True)
    with caplog.at_level(logging.WARNING):
        assert run_demo(weights_dir, tmp_path / "out", "--video", str(video), "--mask_video",
                        str(mask), "--skip_video_composite") == 0
    # Shorter than the default duration: said once (the segment was resolved twice).
    assert [r.levelname for r in caplog.records if "holds only" in r.getMessage()] == [
        "WARNING"]
    samples, rate = read_audio(tmp_path / "out" / "portrait.flac")
    assert samples.shape[1] == round(seconds * rate)
    assert not (tmp_path / "out" / "portrait.mp4").exists()


def test_objects_give_stems_a_mix_and_titled_tracks(weights_dir: Path, tmp_path: Path,
                                                    clip) -> None:
    args = ["--video", str(clip.video)]
    for name, mask in clip.masks.items():
        args += ["--object", name, "--mask_video", str(mask), "--prompt", clip.prompts[name]]
    out = tmp_path / "out"
    assert run_demo(weights_dir, out, *args) == 0
    stem = clip.video.stem
    stems = {name: read_audio(out / f"{stem}_{name}.flac")[0][0] for name in clip.masks}
    mix = read_audio(out / f"{stem}.flac")[0][0]
    assert all(len(s) == len(mix) for s in stems.values())
    first, second = stems.values()
    assert np.abs(first - second).max() > 1e-3
    with av.open(str(out / f"{stem}.mp4")) as container:
        titles = [s.metadata.get("handler_name") for s in container.streams.audio]
    assert titles == ["mix", *clip.masks]


def _bad_inputs(tmp: Path, clip) -> dict[str, tuple[list[str], str, str]]:
    video_file = clip.video
    empty = tmp / "empty.mp4"
    empty.touch()
    text = tmp / "text.mp4"
    text.write_text("not a video\n" * 100)
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(video_file.read_bytes()[:2000])
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
    shorter_mask = make_video(tmp / "shorter_mask.mp4", 1.0, 25, 64, 36, gray_box=True)
    not_weights = tmp / "notes.pth"
    not_weights.write_text("these are not weights\n")
    other_layout = tmp / "state_dict.pth"
    torch.save({"blocks.0.weight": torch.zeros(2)}, other_layout)
    trained_debug = tmp / "debug_last.pth"
    torch.save({"network": {}, "synchformer": {}, "config": {"variant": "debug"}}, trained_debug)
    # A regular file where a folder is needed: unwritable even for root (CI runs as root).
    blocker = tmp / "blocker"
    blocker.write_text("")
    mask_file = next(iter(clip.masks.values()))
    video, mask = ["--video", str(video_file)], ["--mask_video", str(mask_file)]
    missing = ["--video", str(tmp / "nope.mp4"), *mask]
    return {
        "missing": (missing, "nope.mp4", "not found"),
        "empty": (["--video", str(empty), *mask], "empty.mp4", "empty"),
        "not a video": (["--video", str(text), *mask], "text.mp4", ""),
        "truncated": (["--video", str(truncated), *mask], "truncated.mp4", ""),
        "no video stream": (["--video", str(audio_only), *mask], "audio_only.m4a", "video"),
        "aspect": ([*video, "--mask_video", str(wide_mask)], "wide_mask.mp4", "aspect"),
        "mask shorter": ([*video, "--mask_video", str(shorter_mask), "--duration", "full"],
                         "shorter_mask.mp4", "last"),
        "too short": (["--video", str(short), "--mask_video", str(short_mask)], short.name,
                      "short"),
        "unwritable": ([*video, *mask, "--output", str(blocker / "sub")], "blocker", "output"),
        "variant": ([*video, *mask, "--variant", "huge"], "", "unknown variant"),
        "empty prompt": ([*video, *mask, "--prompt", "  "], "", "prompt"),
        "no mask": ([*video], "", "mask_video"),
        # Checked before any video is opened: the video path does not even exist.
        "unknown device": ([*missing, "--device", "gpu"], "gpu", "device"),
        "no cuda": ([*missing, "--device", "cuda"], "cuda", "use --device cpu"),
        "no mps": ([*missing, "--device", "mps"], "mps", "use --device cpu"),
        "checkpoint": ([*missing, "--checkpoint", str(not_weights)], "notes.pth", "weights"),
        "checkpoint layout": ([*missing, "--checkpoint", str(other_layout)], "state_dict.pth",
                              "not a saganet weights file"),
        "checkpoint variant": ([*missing, "--checkpoint", str(trained_debug), "--variant",
                                "saganet_small"], "debug_last.pth", "pass --variant debug"),
        "seed": ([*video, *mask, "--object", "b", *mask, "--seed", str(2**63 - 1)], "",
                 "--seed must be"),
        "duplicate names": ([*video, "--object", "a", *mask, "--object", "a", *mask], "",
                            "different name"),
        "mask_id of a mask video": ([*video, *mask, "--mask_id", "2"], mask_file.name,
                                    "object id"),
        "mask_id of a click": ([*video, "--click", "10,10", "--mask_id", "1"], "",
                               "--mask_id"),
        "mask folder without images": ([*video, "--mask_video", str(tmp)], tmp.name,
                                       "no mask images"),
    }


def test_bad_inputs_fail_with_one_line(weights_dir: Path, tmp_path: Path, clip,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for name, (args, names, problem) in _bad_inputs(tmp_path, clip).items():
        status = run_demo(weights_dir, out, *args)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2, name
        message = err[-1]
        assert message.startswith("demo.py: error: "), (name, err)
        assert names in message and problem in message.lower(), (name, message)
        assert "Traceback" not in "\n".join(err), name
        assert "weights_only" not in message, name
        # Nothing left behind: not even an empty output folder.
        assert not out.exists(), name


def test_offline_lists_every_missing_file_first(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from saganet.pipeline import required_files
    from saganet.weights import group_members
    from saganet.weights.registry import HubRepo, lookup

    empty = tmp_path / "empty_cache"
    status = demo.main(["--variant", "saganet_small", "--offline", "--device", "cpu",
                        "--weights_dir", str(empty), "--output", str(tmp_path / "out")])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and message.startswith("demo.py: error: offline")
    expected = required_files("saganet_small") + list(group_members("example"))
    # A Hugging Face repository counts each of its files.
    files = sum(len(e.files) if isinstance(e, HubRepo) else 1 for e in map(lookup, expected))
    assert f"{files} file(s)" in message
    for name in expected:
        assert name.split("/")[-1] in message, name
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(weights_dir: Path, tmp_path: Path, clip,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{clip.video.stem}.flac").write_bytes(b"keep me")
    mask = next(iter(clip.masks.values()))
    args = ["--video", str(clip.video), "--mask_video", str(mask), "--skip_video_composite"]
    assert run_demo(weights_dir, out, *args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / f"{clip.video.stem}.flac").read_bytes() == b"keep me"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_folder_that_cannot_be_made_fails_before_the_work(
        weights_dir: Path, clip, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """/proc is a folder root may write to, yet no folder can be made there: only trying
    tells, and that happens before the models load."""
    from saganet import pipeline

    def load_models(*args, **kwargs):
        raise AssertionError("the models load before the output folder is checked")

    monkeypatch.setattr(pipeline, "load_models", load_models)
    out = Path("/proc/saganet_out")
    mask = next(iter(clip.masks.values()))
    status = run_demo(weights_dir, out / "a", "--video", str(clip.video), "--mask_video",
                      str(mask))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == [f"demo.py: error: {out / 'a'}: cannot create the output "
                                   "folder: No such file or directory"]
    assert not out.exists()


def test_output_into_the_inputs_folder_never_replaces_the_video(
        weights_dir: Path, tmp_path: Path, clip, capsys: pytest.CaptureFixture[str]) -> None:
    mask = next(iter(clip.masks.values()))
    video = tmp_path / clip.video.name
    video.write_bytes(clip.video.read_bytes())
    before = sorted(tmp_path.iterdir())
    # --overwrite replaces earlier outputs, never the video the outputs are made from.
    status = run_demo(weights_dir, tmp_path, "--video", str(video), "--mask_video", str(mask),
                      "--overwrite")
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith("demo.py: error: ") and "input" in err[-1]
    assert str(video) in err[-1] and "Traceback" not in "\n".join(err)
    assert video.read_bytes() == clip.video.read_bytes()
    assert sorted(tmp_path.iterdir()) == before


def test_clip_is_released_before_the_other_models_load(weights_dir: Path, tmp_path: Path,
                                                       clip, monkeypatch: pytest.MonkeyPatch,
                                                       ) -> None:
    from saganet import pipeline

    encoders: list[weakref.ref] = []
    alive_at_load = []
    load_clip, load_models = pipeline.load_clip, pipeline.load_models

    def recording_clip(*args, **kwargs):
        encoder = load_clip(*args, **kwargs)
        encoders.append(weakref.ref(encoder))
        return encoder

    def recording_models(*args, **kwargs):
        gc.collect()
        alive_at_load.append([ref() is not None for ref in encoders])
        models = load_models(*args, **kwargs)
        alive_at_load.append(models.clip_encoder)
        return models

    monkeypatch.setattr(pipeline, "load_clip", recording_clip)
    monkeypatch.setattr(pipeline, "load_models", recording_models)
    args = ["--video", str(clip.video), "--duration", "1", "--skip_video_composite"]
    for name, mask in clip.masks.items():
        args += ["--object", name, "--mask_video", str(mask), "--prompt", clip.prompts[name]]
    assert run_demo(weights_dir, tmp_path / "out", *args) == 0
    assert alive_at_load == [[False], None]


def test_overlong_prompt_warns_and_runs(weights_dir: Path, tmp_path: Path, clip,
                                        caplog: pytest.LogCaptureFixture) -> None:
    prompt = " ".join(["violin"] * 120)
    mask = next(iter(clip.masks.values()))
    args = ["--video", str(clip.video), "--mask_video", str(mask), "--prompt", prompt,
            "--duration", "1", "--skip_video_composite"]
    assert run_demo(weights_dir, tmp_path / "out", *args) == 0
    assert any("tokens" in r.message and r.levelname == "WARNING" for r in caplog.records)


def test_object_silent_throughout_warns(weights_dir: Path, tmp_path: Path, clip,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """An all-black mask gives a silent stem: a warning for that object, nothing for one
    that is visible."""
    info = probe_video(clip.video)
    black = write_video(tmp_path / "black.mp4",
                        (np.zeros((info.height, info.width, 3), np.uint8)
                         for _ in range(math.ceil(info.duration * info.fps))), info.fps)
    visible, mask = next(iter(clip.masks.items()))
    args = ["--video", str(clip.video), "--object", visible, "--mask_video", str(mask),
            "--object", "hidden", "--mask_video", str(black), "--skip_video_composite"]
    with caplog.at_level(logging.INFO):
        assert run_demo(weights_dir, tmp_path / "out", *args) == 0
    empty = [r for r in caplog.records if "mask empty" in r.getMessage()]
    assert [(r.getMessage().split(":")[0], r.levelname) for r in empty] == [
        ("hidden", "WARNING")]


@pytest.mark.parametrize("flag", ["--mask_overlay", "--original_sound"])
def test_mp4_flags_without_a_video_are_usage_errors(tmp_path: Path, clip, flag: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--video", str(clip.video), flag, "--skip_video_composite",
                   "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert flag in last and "--skip_video_composite" in last
    assert not (tmp_path / "out").exists()


def test_cli_user_error_has_no_traceback(tmp_path: Path, clip) -> None:
    mask = next(iter(clip.masks.values()))
    result = subprocess.run(
        [sys.executable, "demo.py", "--variant", "debug", "--video", str(tmp_path / "x.mp4"),
         "--mask_video", str(mask), "--output", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("demo.py: error: ")


@pytest.mark.parametrize(("option", "value"), [
    ("--num_steps", "0"), ("--num_steps", "-3"), ("--num_steps", "2.5"),
    ("--cfg_strength", "nan"), ("--cfg_strength", "inf"),
    # Finite, but the guided velocity overflows and the audio came out NaN after all the work.
    ("--cfg_strength", "1e308"), ("--cfg_strength", "-2000")])
def test_bad_sampling_options_fail_with_one_line(weights_dir: Path, tmp_path: Path, clip,
                                                 capsys: pytest.CaptureFixture[str],
                                                 option: str, value: str) -> None:
    mask = next(iter(clip.masks.values()))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        run_demo(weights_dir, out, "--video", str(clip.video), "--mask_video", str(mask),
                 option, value)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1].startswith("demo.py: error: ")
    assert option in err[-1] and value in err[-1]
    assert not out.exists()


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_stopped_run_leaves_nothing_behind(weights_dir: Path, tmp_path: Path, clip,
                                           stop: str) -> None:
    """``kill`` (SIGTERM) and Ctrl-C (SIGINT) clean up: no work folder, no output folder, one
    line for Ctrl-C and no traceback."""
    import signal
    import time

    signum = getattr(signal, stop)
    out = tmp_path / "out"
    mask = next(iter(clip.masks.values()))
    process = subprocess.Popen(
        [sys.executable, "demo.py", *FAST, "--num_steps", "50", "--weights_dir",
         str(weights_dir), "--output", str(out), "--video", str(clip.video), "--mask_video",
         str(mask)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not (
            out.is_dir() and any(out.iterdir())):
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before its work folder could be seen"
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err
    if signum == signal.SIGINT:
        assert err.strip().splitlines()[-1] == "demo.py: interrupted"
    assert not out.exists()


def test_mask_overlay_tints_the_objects(weights_dir: Path, tmp_path: Path, clip) -> None:
    # The square: it is drawn blue, so the red tint of a first object shows on it.
    name = "square"
    mask = clip.masks[name]
    args = ["--video", str(clip.video), "--mask_video", str(mask), "--duration", "1"]
    assert run_demo(weights_dir, tmp_path / "plain", *args) == 0
    assert run_demo(weights_dir, tmp_path / "tint", *args, "--mask_overlay") == 0

    def first_frame(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            return next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)

    plain = first_frame(tmp_path / "plain" / f"{clip.video.stem}.mp4")
    tint = first_frame(tmp_path / "tint" / f"{clip.video.stem}.mp4")
    assert plain.shape == tint.shape
    # The tint changes the pixels inside the object's mask only.
    changed = np.abs(tint - plain).sum(axis=-1) > 30
    scene = SyntheticScene()
    inside = next(scene.frames())[1][name]
    assert changed[inside].mean() > 0.5 and changed[~inside].mean() < 0.05
    assert abs(stream_ends(tmp_path / "tint" / f"{clip.video.stem}.mp4")["video"][0] - 1.0) \
        < 0.2


def test_clicked_object_is_tracked_and_its_mask_saved(weights_dir: Path, tmp_path: Path,
                                                      clip,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """`--click` instead of a mask video: the tracked masks go to the model in memory, and
    the saved mask video gives exactly the same audio when used as --mask_video. Where the
    object is visible is said once, not once by the tracker and again by the demo."""
    scene = SyntheticScene(duration=3.0)
    _, shapes = next(scene.frames())
    rows, cols = np.nonzero(shapes["square"])
    click = f"{int(cols.mean())},{int(rows.mean())}"
    common = ["--video", str(clip.video), "--prompt", "violin", "--duration", "2",
              "--skip_video_composite"]
    tracked = tmp_path / "tracked"
    with caplog.at_level(logging.INFO):
        assert run_demo(weights_dir, tracked, *common, "--click", click) == 0
    assert len([r for r in caplog.records if "violin: visible" in r.getMessage()]) == 1
    stem = clip.video.stem
    mask = tracked / f"{stem}_mask.mp4"
    assert mask.is_file()
    with av.open(str(mask)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 2 * 25
    again = tmp_path / "again"
    assert run_demo(weights_dir, again, *common, "--mask_video", str(mask)) == 0
    first, second = read_audio(tracked / f"{stem}.flac")[0], read_audio(again / f"{stem}.flac")[0]
    assert np.array_equal(first, second)
    # Each file records where its masks came from: the click and the model, or the file.
    [tracked_object] = read_settings(tracked / f"{stem}.flac")["objects"]
    assert tracked_object["masks"] == {"tracked": {"click": [f"{click}@0"],
                                                   "segment_model": DEBUG_MODEL}}
    [again_object] = read_settings(again / f"{stem}.flac")["objects"]
    assert again_object["masks"] == {"video": mask.name}


def test_bad_tracking_inputs_fail_with_one_line(weights_dir: Path, tmp_path: Path, clip,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    scene = SyntheticScene(duration=3.0)
    width, height = scene.width, scene.height
    video = ["--video", str(clip.video)]
    cases = {
        "outside": ([*video, "--click", f"{width + 5},{height // 2}"], "outside"),
        "past the end": ([*video, "--click", f"{width // 2},{height // 2}@9.5"], "end"),
        "zero area": ([*video, "--box", f"10,10,10,{height // 2}"], "zero area"),
        "malformed": ([*video, "--click", "12;13"], "click"),
        "text without SAM 3": ([*video, "--segment_text", "violin"], "sam 3"),
        "mask and click": ([*video, "--mask_video", str(clip.masks["square"]), "--click",
                            "10,10"], "one of the two"),
    }
    out = tmp_path / "out"
    for name, (args, problem) in cases.items():
        status = run_demo(weights_dir, out, *args)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2, name
        assert err[-1].startswith("demo.py: error: ") and problem in err[-1].lower(), (name, err)
        assert "Traceback" not in "\n".join(err), name
        assert not out.exists(), name


def test_bad_windows_fail_before_tracking_and_loading(weights_dir: Path, tmp_path: Path,
                                                     clip, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import saganet.segment
    from saganet import pipeline

    def too_late(*args: object, **kwargs: object) -> None:
        raise AssertionError("the arguments should have failed before this")

    monkeypatch.setattr(saganet.segment, "track_objects", too_late)
    monkeypatch.setattr(pipeline, "load_clip", too_late)
    scene = SyntheticScene(duration=3.0)
    click = ["--click", f"{scene.width // 2},{scene.height // 2}"]
    half_window = pipeline.window_layout("debug")[0].duration / 2
    cases = {"overlap": ["--overlap", str(half_window), "--duration", "full"],
             "too short": ["--duration", "0.3"]}
    out = tmp_path / "out"
    for problem, args in cases.items():
        status = run_demo(weights_dir, out, "--video", str(clip.video), *click, *args)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and err[-1].startswith("demo.py: error: "), (problem, err)
        assert problem in err[-1], (problem, err[-1])
        assert not out.exists()


def test_help_and_mask_video_runs_do_not_import_transformers(tmp_path: Path, clip) -> None:
    """transformers (seconds to import) is only for tracking."""
    script = ("import sys\nfrom saganet.commands.demo import main\ntry:\n"
              "    status = main(sys.argv[1:])\nexcept SystemExit as stop:\n"
              "    status = stop.code\nprint('transformers' in sys.modules, status)\n")
    for args in (["--help"],
                 ["--variant", "debug", "--num_steps", "1", "--duration", "1", "--device",
                  "cpu", "--video", str(clip.video), "--mask_video", str(clip.masks["square"]),
                  "--skip_video_composite", "--output", str(tmp_path / "out")]):
        result = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO,
                                capture_output=True, text=True, timeout=600,
                                env={**os.environ, "SAGANET_CACHE": str(tmp_path / "cache")})
        assert result.stdout.split()[-2:] == ["False", "0"], (args[:1], result.stderr[-2000:])


def _track(path: Path, index: int) -> np.ndarray:
    """Mono samples of an MP4's audio track ``index``."""
    with av.open(str(path)) as container:
        frames = container.decode(container.streams.audio[index])
        return np.concatenate([f.to_ndarray()[0] for f in frames])


@pytest.mark.parametrize("out_rate", [None, 22050])
def test_original_sound_is_the_last_track(weights_dir: Path, tmp_path: Path,
                                          out_rate: int | None) -> None:
    """`--original_sound`: the MP4's last track is the video's own sound from `--start`, in
    time with the picture; the generated tracks come first, as without the flag. With
    `--sample_rate`, every track is at that rate."""
    seconds, fps, width, height, rate = 3.0, 25, 64, 48, 48000
    start, duration, on, off = 0.6, 1.6, 1.2, 1.5
    t = np.arange(round(seconds * rate)) / rate
    sound = np.where((t >= on) & (t < off), 0.5 * np.sin(2 * np.pi * 440 * t), 0)
    image = np.zeros((height, width, 3), np.uint8)
    video = write_video(tmp_path / "with_sound.mp4", [image] * round(seconds * fps), fps,
                        audio=sound.astype(np.float32), audio_rate=rate)
    mask = make_video(tmp_path / "mask.mp4", seconds, fps, width, height, gray_box=True)
    args = ["--video", str(video), "--mask_video", str(mask), "--prompt", "bell", "--start",
            str(start), "--duration", str(duration)]
    if out_rate is not None:
        args += ["--sample_rate", str(out_rate)]
    assert run_demo(weights_dir, tmp_path / "plain", *args) == 0
    assert run_demo(weights_dir, tmp_path / "both", *args, "--original_sound") == 0
    plain, both = (tmp_path / name / f"{video.stem}.mp4" for name in ("plain", "both"))
    with av.open(str(plain)) as container:
        titles = [s.metadata.get("handler_name") for s in container.streams.audio]
    with av.open(str(both)) as container:
        assert [s.metadata.get("handler_name") for s in container.streams.audio] == [
            *titles, "original sound"]
        assert {s.rate for s in container.streams.audio} == {out_rate or 44100}
    generated = _track(both, 0)
    np.testing.assert_array_equal(generated, _track(plain, 0))
    original = _track(both, len(titles))
    assert abs(len(original) - len(generated)) <= 2048  # AAC frames: 1024 samples each
    loud = np.flatnonzero(np.abs(original) > 0.25) / (out_rate or 44100)
    assert abs(loud[0] - (on - start)) < 0.03 and abs(loud[-1] - (off - start)) < 0.03


def test_original_sound_of_a_silent_video_is_a_warning(weights_dir: Path, tmp_path: Path,
                                                       clip,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    mask = next(iter(clip.masks.values()))
    with caplog.at_level(logging.WARNING):
        assert run_demo(weights_dir, tmp_path / "out", "--video", str(clip.video),
                        "--mask_video", str(mask), "--duration", "1", "--original_sound") == 0
    assert [r.levelname for r in caplog.records if "no sound of its own" in r.getMessage()] == [
        "WARNING"]
    with av.open(str(tmp_path / "out" / f"{clip.video.stem}.mp4")) as container:
        assert "original sound" not in [s.metadata.get("handler_name")
                                        for s in container.streams.audio]


def test_pan_places_each_object_where_its_mask_is(weights_dir: Path, tmp_path: Path) -> None:
    """`--pan`: the mix (FLAC and the MP4's first track) is stereo, each stem in it with the
    equal-power gains of its mask's horizontal centre; the stems stay mono."""
    seconds, fps, width, height = 1.2, 25, 80, 48
    boxes = {"left": (4, 20), "right": (50, 76)}  # columns of each object's box
    video = make_video(tmp_path / "two.mp4", seconds, fps, width, height)
    args = ["--video", str(video), "--duration", str(seconds), "--pan"]
    for name, (lo, hi) in boxes.items():
        mask = np.zeros((height, width, 3), np.uint8)
        mask[height // 4 : height // 2, lo:hi] = 255
        path = write_video(tmp_path / f"{name}_mask.mp4", [mask] * round(seconds * fps), fps,
                           options={"qp": "0"})
        args += ["--object", name, "--mask_video", str(path), "--prompt", name]
    out = tmp_path / "out"
    assert run_demo(weights_dir, out, *args) == 0
    mix, _ = read_audio(out / f"{video.stem}.flac")
    stems = {name: read_audio(out / f"{video.stem}_{name}.flac")[0] for name in boxes}
    assert mix.shape[0] == 2 and all(s.shape == (1, mix.shape[1]) for s in stems.values())
    # Each channel is a sum of the stems: solve for every stem's left and right gains.
    basis = np.stack([s[0] for s in stems.values()], axis=1).astype(np.float64)
    (left, right) = (np.linalg.lstsq(basis, channel, rcond=None)[0] for channel in mix)
    for k, (lo, hi) in enumerate(boxes.values()):
        position = math.atan2(right[k], left[k]) / (math.pi / 2)
        assert abs(position - (lo + hi) / 2 / width) < 0.02, (position, lo, hi)
    with av.open(str(out / f"{video.stem}.mp4")) as container:
        assert [s.channels for s in container.streams.audio] == [2] + [1] * len(boxes)


def _decoded_masks(path: Path) -> np.ndarray:
    """Every frame of a lossless mask video, ``(T, H, W)`` uint8."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def test_a_folder_of_label_images_sounds_as_the_mask_videos(weights_dir: Path, tmp_path: Path,
                                                            clip) -> None:
    """The masks as a VOS tracker writes them (one palette PNG per frame, object k drawn with
    index k) with `--mask_id`: the same samples as the objects' lossless mask videos, and the
    settings remake the folder and the ids."""
    from PIL import Image

    from saganet.commands.settings import remake_arguments

    masks = {name: _decoded_masks(path) for name, path in clip.masks.items()}
    labels = np.zeros(next(iter(masks.values())).shape, np.uint8)
    for index, mask in enumerate(masks.values(), start=1):
        labels[mask > 0] = index
    folder = tmp_path / "Annotations"
    folder.mkdir()
    for number, frame in enumerate(labels):
        image = Image.fromarray(frame, mode="L").convert("P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
        image.save(folder / f"{number:05d}.png")
    common = ["--video", str(clip.video), "--duration", "1", "--skip_video_composite"]
    from_videos, from_folder = list(common), list(common)
    for index, (name, path) in enumerate(clip.masks.items(), start=1):
        from_videos += ["--object", name, "--mask_video", str(path)]
        from_folder += ["--object", name, "--mask_video", str(folder), "--mask_id", str(index)]
    assert run_demo(weights_dir, tmp_path / "videos", *from_videos) == 0
    assert run_demo(weights_dir, tmp_path / "folder", *from_folder) == 0
    files = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "folder").iterdir())
    assert len(files) == len(clip.masks) + 1
    for name in files:
        expected, _ = read_audio(tmp_path / "videos" / name)
        got, _ = read_audio(tmp_path / "folder" / name)
        np.testing.assert_array_equal(got, expected)
    record = read_settings(tmp_path / "folder" / f"{clip.video.stem}.flac")
    arguments = remake_arguments(record, inputs=tmp_path)
    for index, name in enumerate(clip.masks, start=1):
        at = arguments.index(name)
        assert arguments[at + 1: at + 5] == ["--mask_video", str(folder), "--mask_id",
                                             str(index)]


def test_wav_writes_the_same_sound_as_flac(weights_dir: Path, tmp_path: Path, clip) -> None:
    """`--wav`: every sound file is a 24-bit WAV holding the samples of the FLAC run, a
    Broadcast WAV placed at `--start` on the video's timeline."""
    start = 0.52
    args = ["--video", str(clip.video), "--duration", "1", "--skip_video_composite",
            "--start", str(start)]
    for name, mask in clip.masks.items():
        args += ["--object", name, "--mask_video", str(mask)]
    assert run_demo(weights_dir, tmp_path / "flac", *args) == 0
    # --no_settings too: the files then carry no settings, and the samples are the same.
    assert run_demo(weights_dir, tmp_path / "wav", *args, "--wav", "--no_settings") == 0
    flac = sorted(p.name for p in (tmp_path / "flac").iterdir())
    wav = sorted(p.name for p in (tmp_path / "wav").iterdir())
    assert len(flac) == len(clip.masks) + 1
    assert wav == sorted(name.replace(".flac", ".wav") for name in flac)
    for name in flac:
        expected, rate = read_audio(tmp_path / "flac" / name)
        got, wav_rate = read_audio(tmp_path / "wav" / name.replace(".flac", ".wav"))
        assert wav_rate == rate
        np.testing.assert_array_equal(got, expected)
        recorded = read_settings(tmp_path / "flac" / name)
        assert [o["name"] for o in recorded["objects"]] == list(clip.masks)
        assert read_settings(tmp_path / "wav" / name.replace(".flac", ".wav")) is None
        with av.open(str(tmp_path / "wav" / name.replace(".flac", ".wav"))) as container:
            assert int(container.metadata["time_reference"]) == round(start * rate)


def test_takes_are_runs_with_successive_seeds(weights_dir: Path, tmp_path: Path, clip,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`--takes N`: take t is the run with `--seed` + (t - 1) x objects, under the stem
    `<stem>_take<t>`, and the Synchformer runs for the first take only."""
    from saganet import inference

    encode_sync, seen = inference.encode_sync, [0]

    def counting(model, frames, *args, **kwargs):
        seen[0] += frames.shape[0]
        return encode_sync(model, frames, *args, **kwargs)

    monkeypatch.setattr(inference, "encode_sync", counting)
    args = ["--video", str(clip.video), "--duration", "1", "--skip_video_composite"]
    for name, mask in clip.masks.items():
        args += ["--object", name, "--mask_video", str(mask)]
    takes, seed, objects = 3, 5, len(clip.masks)
    assert run_demo(weights_dir, tmp_path / "takes", *args, "--takes", str(takes), "--seed",
                    str(seed)) == 0
    with_takes, seen[0] = seen[0], 0
    stem = clip.video.stem
    names = sorted(p.name for p in (tmp_path / "takes").iterdir())
    assert names == sorted(f"{stem}_take{t}{part}.flac" for t in range(1, takes + 1)
                           for part in ["", *(f"_{n}" for n in clip.masks)])
    for t in range(1, takes + 1):
        single = tmp_path / f"single{t}"
        assert run_demo(weights_dir, single, *args, "--seed",
                        str(seed + (t - 1) * objects)) == 0
        for name in ["", *(f"_{n}" for n in clip.masks)]:
            np.testing.assert_array_equal(
                read_audio(tmp_path / "takes" / f"{stem}_take{t}{name}.flac")[0],
                read_audio(single / f"{stem}{name}.flac")[0])
        # Each take records the seeds that make it again.
        recorded = read_settings(tmp_path / "takes" / f"{stem}_take{t}.flac")
        assert [o["seed"] for o in recorded["objects"]] == [
            seed + (t - 1) * objects + k for k in range(objects)]
    assert with_takes == seen[0] / takes > 0


@pytest.mark.parametrize("rate", [48000, 16000])
def test_sample_rate_resamples_every_file(weights_dir: Path, tmp_path: Path, clip,
                                          rate: int) -> None:
    """`--sample_rate`: each stem and the (panned, levelled) mix is the model's sound
    resampled, the MP4's tracks too, and the files record the rate."""
    from saganet.media.resample import resample_into, resampled_length

    args = ["--video", str(clip.video), "--duration", "1.2", "--pan"]
    for name, mask in clip.masks.items():
        args += ["--object", name, "--mask_video", str(mask)]
    assert run_demo(weights_dir, tmp_path / "model", *args) == 0
    assert run_demo(weights_dir, tmp_path / "rate", *args, "--sample_rate", str(rate)) == 0
    stem = clip.video.stem
    for part in ["", *(f"_{n}" for n in clip.masks)]:
        made, made_rate = read_audio(tmp_path / "model" / f"{stem}{part}.flac")
        got, got_rate = read_audio(tmp_path / "rate" / f"{stem}{part}.flac")
        assert got_rate == rate
        expected = np.zeros((made.shape[0], resampled_length(made.shape[1], made_rate, rate)),
                            np.float32)
        resample_into(made.astype(np.float32), made_rate, rate, expected)
        # The 44.1 kHz file is 24-bit: resampling it differs by a few quantisation steps.
        np.testing.assert_allclose(got, expected, atol=2e-6)
        assert read_settings(tmp_path / "rate" / f"{stem}{part}.flac")["sample_rate"] == rate
    with av.open(str(tmp_path / "rate" / f"{stem}.mp4")) as container:
        assert [s.rate for s in container.streams.audio] == [rate] * (1 + len(clip.masks))
