"""The app's parts without a server: options, objects from JSON, limits, the shown frame and
its click mapping, the example's clicks, spectrograms and session folders."""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from saganet.app.engine import Engine, ModelSettings, tracking_range
from saganet.app.example import deepest_point, example_objects, first_click
from saganet.app.frames import FrameView, object_color, render_frame, shown_size
from saganet.app.limits import Limits, min_seconds
from saganet.app.objects import AppObject, Click, free_name, objects_from_json
from saganet.app.options import GenerationOptions
from saganet.app.session import PREVIEW, RESULTS, Sessions
from saganet.app.spectrogram import HEIGHT, colorize, write_spectrogram
from saganet.cancel import CancelToken
from saganet.errors import UserInputError
from saganet.example import synthetic_example
from saganet.media.masks import MaskVideo
from saganet.media.output import write_flac
from saganet.media.video import SYNC_FPS, SYNC_WINDOW_FRAMES, probe_video, read_frames
from saganet.segment.grid import VideoGrid
from tests.videos import write_video


def test_options_from_page_and_json() -> None:
    options = GenerationOptions.from_values(start="1.5", duration=None, end="", cfg_strength=4,
                                            num_steps=3.0, seed="7", variant=" debug ")
    assert options == GenerationOptions(start=1.5, cfg_strength=4.0, num_steps=3, seed=7,
                                        variant="debug")
    assert options.segment_duration is None
    assert GenerationOptions(start=1, end=4).segment_duration == 3
    assert GenerationOptions.from_mapping(None) == GenerationOptions()
    assert GenerationOptions.from_mapping({"duration": 2}).segment_duration == 2
    for audio_format in ("flac", " wav "):
        assert GenerationOptions.from_mapping({"audio_format": audio_format}).audio_format == \
            audio_format.strip()
    for rate in (48000, "16000", 96000.0):
        assert GenerationOptions.from_mapping({"sample_rate": rate}).sample_rate == int(rate)
    for name in ("original_sound", "pan", "negatives_from_others", "keep_hidden"):
        for switch in (False, True):
            assert getattr(GenerationOptions.from_mapping({name: switch}), name) is switch
    bad = [{"steps": 2}, {"num_steps": 2.5}, {"num_steps": 0}, {"seed": "x"}, {"start": -1},
           {"duration": 0}, {"start": 3, "end": 2}, {"cfg_strength": "nan"}, {"variant": 3},
           {"cfg_strength": 1e308},
           {"num_steps": True}, {"duration": math.inf}, {"seed": 2**64}, {"seed": 1e30},
           {"seed": -(2**63) - 1}, {"original_sound": "false"}, {"original_sound": 1},
           {"pan": "yes"}, {"keep_hidden": "no"}, {"negatives_from_others": 1},
           {"audio_format": "mp3"}, {"audio_format": 1},
           {"sample_rate": 1000}, {"sample_rate": True}, {"sample_rate": 44100.5}]
    for values in bad:
        with pytest.raises(UserInputError):
            GenerationOptions.from_mapping(values)
    # Whole numbers are kept exactly (through a float, 2^53 + 1 would become 2^53).
    for seed in (2**53 + 1, str(2**53 + 1)):
        assert GenerationOptions.from_mapping({"seed": seed}).seed == 2**53 + 1
    # The extreme seeds accepted still seed every object's generator (object k: seed + k).
    for seed in (2**63 - 1, -(2**63)):
        options = GenerationOptions.from_mapping({"seed": seed})
        for k in range(Limits().max_objects):
            torch.Generator().manual_seed(options.seed + k)
    with pytest.raises(UserInputError, match="JSON object"):
        GenerationOptions.from_mapping([1, 2])
    limits = Limits(max_steps=4)
    GenerationOptions(num_steps=4).check(limits)
    with pytest.raises(UserInputError, match="at most 4"):
        GenerationOptions(num_steps=5).check(limits)


def test_options_whole_numbers_beyond_float_range_are_user_errors() -> None:
    # JSON may carry a whole number of any length; float() cannot convert one past its range.
    huge = int(sys.float_info.max) * 10
    for name in ("start", "duration", "end", "cfg_strength"):
        for value in (huge, -huge):
            with pytest.raises(UserInputError, match=f"option {name} is too large a number"):
                GenerationOptions.from_mapping({name: value})


def test_objects_from_json() -> None:
    objects = objects_from_json([
        {"name": "violin", "prompt": "violin", "clicks": ["812,430@1.5", "800,420@1.5"],
         "negative_clicks": "600,300@1.5"},
        {"boxes": ["380,520,100,200@0"], "negative_prompt": "noise"},
        {"name": "voice", "text": "singer"}])
    violin, second, voice = objects
    assert [c.positive for c in violin.clicks] == [True, True, False]
    assert (violin.clicks[2].x, violin.clicks[2].y, violin.clicks[2].time) == (600, 300, 1.5)
    assert violin.earliest() == violin.latest() == 1.5
    assert second.name == free_name(["violin"]) == "object1"
    assert (second.boxes[0].x0, second.boxes[0].y1) == (100, 520)
    assert voice.tracking_prompt().text == "singer" and voice.earliest() is None
    masks = MaskVideo("violin_mask.mp4")  # not opened: the object only carries it
    sound = violin.sound_object(masks=masks)
    assert (sound.prompt, sound.negative_prompt, sound.masks) == ("violin", None, masks)
    assert second.sound_object(masks=masks).prompt is None
    for bad in ["violin", [1], [{"name": "a", "click": ["1,1"]}], [{"clicks": "1,1@f3"}],
                [{"boxes": ["1,1,4,4@f3"]}],
                [{"clicks": [1, 2]}], [{"prompt": 3}], [{"clicks": ["1,x"]}]]:
        with pytest.raises(UserInputError):
            objects_from_json(bad)
    for obj in (AppObject("a b", clicks=[Click(1, 1, 0)]), AppObject("a"),
                AppObject("a", clicks=[Click(1, 1, 0, positive=False)]),
                AppObject("a", text="x", clicks=[Click(1, 1, 0)])):
        with pytest.raises(UserInputError):
            obj.tracking_prompt()


def test_tracking_range_covers_the_clicks() -> None:
    early = AppObject("a", clicks=[Click(1, 1, 0.4)])
    late = AppObject("b", clicks=[Click(1, 1, 3.0)])
    assert tracking_range([early], GenerationOptions(start=1, duration=1), 5) == (0.4, 2.0)
    start, end = tracking_range([late], GenerationOptions(duration=1), 5)
    assert start == 0 and end == pytest.approx(3.0 + 1 / SYNC_FPS)
    assert tracking_range([late], GenerationOptions(), 5) == (0, 5)
    assert tracking_range([AppObject("t", text="x")], GenerationOptions(start=2, end=3), 5) == (
        2, 3)


def test_tracking_range_refuses_what_generation_would() -> None:
    """A range that the generation would refuse is refused before any tracking."""
    seconds = 4 * min_seconds()
    obj = AppObject("a", clicks=[Click(1, 1, 0.0)])
    with pytest.raises(UserInputError, match="past the end"):
        tracking_range([obj], GenerationOptions(start=seconds), seconds)
    with pytest.raises(UserInputError, match="too short"):
        tracking_range([obj], GenerationOptions(start=seconds - min_seconds() / 2), seconds)
    with pytest.raises(UserInputError, match="too short"):
        tracking_range([obj], GenerationOptions(duration=min_seconds() / 2), seconds)
    assert tracking_range([obj], GenerationOptions(start=seconds - min_seconds()), seconds) == (
        0.0, seconds)


def test_tracking_range_takes_the_last_window_of_a_video() -> None:
    """The last 16 frames of a video from a start on the frame grid: their length, video
    length minus start in floats, can fall a hair below one window (5.0 - 4.36), which was
    refused as '0.640 s from 4.36 s is too short: need at least 0.64 s'."""
    frames, fps = SYNC_WINDOW_FRAMES, SYNC_FPS
    total = next(n for n in range(frames, 1000)
                 if (n / fps - (n - frames) / fps) * fps < frames)
    obj = AppObject("a", clicks=[Click(1, 1, 0.0)])
    start = (total - frames) / fps
    assert tracking_range([obj], GenerationOptions(start=start), total / fps) == (
        0.0, total / fps)


def test_limits(tmp_path) -> None:
    frames = 25
    video = write_video(tmp_path / "clip.mp4", [np.zeros((16, 16, 3), np.uint8)] * frames,
                        fps=25)
    seconds = frames / 25
    limits = Limits(max_seconds=seconds, max_upload_mb=1)
    assert limits.check_video(video).width == 16
    with pytest.raises(UserInputError, match=re.escape(f"up to {seconds * 0.8:g} s")):
        Limits(max_seconds=seconds * 0.8).check_video(video)
    with pytest.raises(UserInputError, match="at least"):
        Limits().check_length(min_seconds() / 2, "x")
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 2000)
    with pytest.raises(UserInputError, match=re.escape("up to 0.001 MB")):
        Limits(max_upload_mb=0.001).check_video(big)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(UserInputError, match="not a video"):
        limits.check_video(text)
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(UserInputError, match="empty"):
        limits.check_video(tmp_path / "empty.mp4")
    with pytest.raises(UserInputError, match="no object"):
        limits.check_objects(0)
    with pytest.raises(UserInputError, match="at most"):
        Limits(max_objects=2).check_objects(3)
    with pytest.raises(UserInputError):
        Limits(max_objects=0)


def test_frame_size_limit(tmp_path) -> None:
    """A frame larger than ``max_megapixels`` is refused before any decoding: a small file can
    hold huge frames, each decoded to RGB in full before it is scaled down."""
    width, height = 48, 16
    video = write_video(tmp_path / "wide.mp4", [np.zeros((height, width, 3), np.uint8)] * 25,
                        fps=25)
    pixels = width * height
    assert Limits(max_megapixels=pixels / 1e6).check_video(video).width == width
    with pytest.raises(UserInputError, match=f"{width}x{height}"):
        Limits(max_megapixels=pixels / 2 / 1e6).check_video(video)
    with pytest.raises(UserInputError):
        Limits(max_megapixels=0)


@pytest.mark.parametrize("size", [(1920, 1080), (1080, 1920), (333, 201), (4000, 3000)])
def test_click_mapping(size) -> None:
    """Shown pixels map to the video's pixels by the shown size; never enlarged; inverse."""
    width, height = size
    shown_w, shown_h = shown_size(width, height, max_side=640)
    assert max(shown_w, shown_h) == min(640, max(width, height))
    assert abs(shown_w / shown_h - width / height) < 2 / min(shown_w, shown_h)
    view = FrameView(0, shown_w, shown_h, width, height)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, 1, (20, 2)) * (width, height):
        sx, sy = view.to_shown(x, y)
        assert view.to_video(sx, sy) == pytest.approx((x, y))
    # A click on the shown image's far corner is the video's far corner; outside clamps.
    assert view.to_video(shown_w, shown_h) == (width, height)
    assert view.to_video(-5, shown_h * 3) == (0, height)


def test_shown_frame_has_masks_and_clicks(tmp_path) -> None:
    """The shown frame is the grid slot's frame scaled down, with a dot of the object's colour
    where a click was made on it (none on other frames)."""
    frames = [np.full((90, 160, 3), 10 * k, np.uint8) for k in range(10)]
    video = write_video(tmp_path / "v.mp4", frames, fps=25, options={"qp": "0"})
    grid = VideoGrid(video)
    objects = [AppObject("a", clicks=[Click(40, 30, 0.2)]),
               AppObject("b", clicks=[Click(120, 60, 0.2, positive=False)])]
    image, view = render_frame(grid, 5, objects, max_side=80)
    assert image.shape == (45, 80, 3) and (view.width, view.height) == (160, 90)
    x, y = (round(v) for v in view.to_shown(40, 30))
    assert np.abs(image[y, x].astype(int) - object_color(0)).max() < 8
    assert np.abs(image[5, 5].astype(int) - 50).max() < 6  # frame 5 is grey 50
    other, _ = render_frame(grid, 3, objects, max_side=80)
    assert np.abs(other[y, x].astype(int) - 30).max() < 6


def test_example_clicks_are_inside_their_masks(tmp_path) -> None:
    ring = np.zeros((40, 60), bool)
    ring[5:35, 5:55] = True
    ring[12:28, 12:48] = False  # a frame: the centroid is outside it
    x, y = deepest_point(ring)
    assert ring[int(y), int(x)]
    example = synthetic_example(tmp_path / "example")
    objects = example_objects(example)
    assert [o.name for o in objects] == list(example.masks)
    for obj in objects:
        [click] = obj.clicks
        info = probe_video(example.masks[obj.name])
        mask = read_frames(example.masks[obj.name], SYNC_FPS, (info.height, info.width),
                           gray=True, start=click.time, end=click.time + 1 / SYNC_FPS)[0, 0]
        assert mask[int(click.y), int(click.x)] > 127
        assert obj.prompt == example.prompts[obj.name]
    empty = write_video(tmp_path / "empty_mask.mp4", [np.zeros((16, 16), np.uint8)] * 5)
    assert first_click(empty) is None


def test_spectrogram(tmp_path) -> None:
    levels = colorize(np.linspace(0, 1, 11))
    assert levels.shape == (11, 3) and tuple(levels[0]) == (0, 0, 4)
    assert np.all(np.diff(levels.astype(int).sum(axis=1)) > 0)  # brighter when louder
    sr, seconds = 44100, 1.5
    t = np.arange(int(sr * seconds)) / sr
    audio = 0.5 * np.sin(2 * np.pi * 440 * t) * (t < 0.75)  # a tone, then silence
    path = write_flac(tmp_path / "tone.flac", audio.astype(np.float32), sr)
    from PIL import Image

    image = np.asarray(Image.open(write_spectrogram(path, tmp_path / "tone.png", seconds, 300)))
    assert image.shape == (HEIGHT, 300, 3)
    brightness = image.astype(int).sum(axis=2)
    assert brightness[:, :140].max() > 600 and brightness[:, 160:].max() < 60
    loudest_row = int(np.argmax(brightness[:, :140].mean(axis=1)))
    assert loudest_row > HEIGHT // 2  # 440 Hz is low: near the bottom


def test_session_folders(tmp_path, clip, scene) -> None:
    sessions = Sessions(tmp_path / "root")
    one, two = sessions.get("abc"), sessions.get("de/f..")
    assert sessions.get("abc") is one and two.folder.name == "def"
    limits = Limits()
    info = one.load_video(clip, limits)
    assert (info.width, info.height) == (scene.width, scene.height)
    assert one.video.parent.parent == one.folder and one.duration == pytest.approx(2.0)
    # A run's folder stays until a later run shows what replaces its files, or fails.
    run = one.new_run()
    one.show_run(run, [PREVIEW, RESULTS])
    failed = sessions.get("abc").new_run()
    assert failed != run and run.is_dir()
    one.drop_run(failed)
    assert not failed.exists() and run.is_dir()
    tracked = one.new_run()
    one.show_run(tracked, [PREVIEW])
    assert run.is_dir()
    generated = one.new_run()
    one.show_run(generated, [RESULTS])
    assert not run.exists() and tracked.is_dir() and generated.is_dir()
    text = tmp_path / "notes.mp4"
    text.write_text("no")
    with pytest.raises(UserInputError):
        one.load_video(text, limits)
    assert one.video.is_file() and len(list(one.folder.glob("video-*"))) == 1
    with pytest.raises(UserInputError, match="outside"):
        one.add_click(scene.width + 1, 0, 0.0, True)
    with pytest.raises(UserInputError, match="load a video"):
        two.add_click(1, 1, 0.0, True)
    for _ in range(limits.max_objects - 1):
        one.add_object(limits)
    with pytest.raises(UserInputError, match="at most"):
        one.add_object(limits)
    with sessions.api_call("script") as first:
        pass
    with sessions.api_call("script") as second:
        assert second.folder.parent == first.folder.parent and not first.folder.exists()
    sessions.end("abc")
    assert not one.folder.exists() and len(sessions) == 1
    sessions.close()
    assert not (tmp_path / "root").exists()


def test_an_ended_session_is_listed_until_its_files_are_gone(tmp_path) -> None:
    """A job still holding the session delays the removal; meanwhile it stays listed, so a
    session no longer listed never has files left."""
    sessions = Sessions(tmp_path / "root")
    session = sessions.get("tab")
    session.folder.mkdir(parents=True)
    (session.folder / "video.mp4").write_bytes(b"x")
    with session.lock:  # a job running
        ending = threading.Thread(target=sessions.end, args=("tab",))
        ending.start()
        ending.join(timeout=0.5)
        assert ending.is_alive() and len(sessions) == 1 and session.folder.exists()
    ending.join(timeout=10)
    assert not ending.is_alive() and len(sessions) == 0 and not session.folder.exists()


def test_ending_a_session_stops_its_job_then_removes_it(tmp_path, monkeypatch) -> None:
    """A closed tab's running job is cancelled and its files stay until the job ends; the
    closed tab starts no job and makes no folder; another tab's job is not touched; closing
    the app cancels every job; only the latest closed tabs are remembered."""
    from saganet.app import session as session_module
    from saganet.cancel import CancelledError

    sessions = Sessions(tmp_path / "root")
    closing, other = sessions.get("closing"), sessions.get("other")
    tokens = {}
    for session in (closing, other):
        session.new_run()
        with session.lock:
            tokens[session.folder.name] = CancelToken()
            session.start_job(tokens[session.folder.name])
    with pytest.raises(UserInputError, match="already"):
        closing.start_job(CancelToken())
    sessions.end("closing")
    assert tokens["closing"].cancelled and not tokens["other"].cancelled
    with pytest.raises(CancelledError, match=session_module.TAB_CLOSED):
        tokens["closing"].check()
    assert len(sessions) == 2 and closing.folder.is_dir()  # the job has not stopped yet
    sessions.job_ended(closing)
    assert len(sessions) == 1 and not closing.folder.exists()
    again = sessions.get("closing")  # an event of the closed tab still in the queue
    assert again is not closing and again.ended and len(sessions) == 1
    for start in (lambda: again.start_job(CancelToken()), again.new_run):
        with pytest.raises(CancelledError):
            start()
    assert not again.folder.exists()
    sessions.job_ended(other)
    assert other.folder.is_dir() and not other.busy and other.job is None
    assert not other.stop_job("nothing runs")
    with other.lock:
        other.start_job(token := CancelToken())
    sessions.close(wait_s=0)  # the job is the test's: it never ends (close waited 10 s)
    assert token.cancelled and token.reason == session_module.APP_CLOSED
    assert not (tmp_path / "root").exists()

    monkeypatch.setattr(session_module, "ENDED_KEYS_KEPT", 2)
    sessions = Sessions(tmp_path / "second")
    keys = [f"tab{k}" for k in range(session_module.ENDED_KEYS_KEPT + 1)]
    for key in keys:
        sessions.end(key)
    assert not sessions.get(keys[0]).ended and all(sessions.get(k).ended for k in keys[1:])
    sessions.close()


def test_api_calls_are_stopped_per_client(tmp_path) -> None:
    """A client's ``/generate`` calls each get a token and a folder, all cancelled when the
    client goes (another client's are not); a new call keeps the running calls' folders; a
    stopped or failed call removes its folder, a finished one keeps it until the next call; a
    gone client's later call, and any call once the app closes, starts nothing."""
    from saganet.app import session as session_module
    from saganet.cancel import CancelledError

    sessions = Sessions(tmp_path / "root")
    with sessions.api_call("gone") as first, sessions.api_call("gone") as second, \
            sessions.api_call("other") as other:
        assert first.cancel is not second.cancel
        assert all(c.folder.is_dir() for c in (first, second, other))
        sessions.end("gone")
        assert first.cancel.cancelled and second.cancel.cancelled
        assert first.cancel.reason == session_module.CLIENT_GONE
        assert not other.cancel.cancelled
    assert other.folder.is_dir()  # returned: Gradio copies its files from there
    with pytest.raises(CancelledError, match=re.escape(session_module.CLIENT_ENDED)), \
            sessions.api_call("gone"):
        pytest.fail("a gone client's call ran")
    for failure in (CancelledError("stopped"), UserInputError("bad")):
        with pytest.raises(type(failure)), sessions.api_call("other") as call:
            raise failure
        assert not call.folder.exists()
    assert not sessions._api_calls  # every call that ended is forgotten
    # A call cancelled by its client (job.cancel()) before it came to run.
    token = CancelToken()
    token.cancel(session_module.CALL_CANCELLED)
    folders = set((tmp_path / "root").rglob("*"))
    with pytest.raises(CancelledError, match=session_module.CALL_CANCELLED), \
            sessions.api_call("other", token):
        pytest.fail("a cancelled call ran")
    assert set((tmp_path / "root").rglob("*")) == folders and not sessions._api_calls
    with sessions.api_call("other", mine := CancelToken()) as call:
        assert call.cancel is mine
    with sessions.api_call("late") as running:
        sessions.close(wait_s=0)  # the call ends only after close (which waited 10 s)
        assert running.cancel.reason == session_module.APP_CLOSED
    with pytest.raises(CancelledError, match=session_module.APP_CLOSED), \
            sessions.api_call("later"):
        pytest.fail("a call ran after the app closed")


def test_closing_waits_for_jobs_and_calls_to_stop_before_removing_their_files(tmp_path) -> None:
    """A job or call that sees the app closing may still finish the file it is writing: the
    root goes once both have stopped, not under them."""
    sessions = Sessions(tmp_path / "root")
    session = sessions.get("tab")
    with session.lock:
        session.start_job(job := CancelToken())
    written: list[Path] = []
    errors: list[BaseException] = []
    started = threading.Semaphore(0)

    def finish_last_file(cancel, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            started.release()
            while not cancel.cancelled:
                time.sleep(0.01)
            time.sleep(0.2)  # the rest of a FLAC
            (folder / "last.flac").write_bytes(b"audio")
            written.append(folder)
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    def page_job() -> None:
        finish_last_file(job, session.folder)
        sessions.job_ended(session)

    def api_call() -> None:
        with sessions.api_call("script") as call:
            finish_last_file(call.cancel, call.folder)

    threads = [threading.Thread(target=page_job), threading.Thread(target=api_call)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=30)
    sessions.close()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(written) == len(threads)
    assert not sessions.root.exists()


def test_tracker_choice() -> None:
    assert ModelSettings(variant="debug").tracker == "debug"
    assert ModelSettings().tracker == "tiny"
    assert ModelSettings(segment_model="small").tracker == "small"


@pytest.mark.parametrize(("settings", "dtype"), [
    (dict(), torch.float32),
    (dict(cpu_bf16=True), torch.bfloat16),
])
def test_engine_precision_follows_the_flags(settings, dtype) -> None:
    # Models load lazily: building the engine only decides where and in what precision.
    engine = Engine(ModelSettings(variant="debug", device="cpu", **settings))
    assert engine.device == torch.device("cpu") and engine.dtype == dtype
    assert engine.loaded_variant is None


def test_engine_rejects_contradicting_precision_flags() -> None:
    with pytest.raises(UserInputError, match="contradict"):
        Engine(ModelSettings(variant="debug", device="cpu", cpu_bf16=True, full_precision=True))



def age(sessions: Sessions, seconds: float) -> None:
    """Make every session's last event ``seconds`` older."""
    for session in list(sessions._sessions.values()):
        session.last_used -= seconds


def test_idle_sessions_are_removed_when_a_new_one_starts(tmp_path) -> None:
    """Sessions that sent nothing for ``idle_s`` go with their files when a new session
    starts, unless a job runs or waits; one used meanwhile stays; an expired tab that comes
    back starts afresh (not as a closed tab)."""
    idle_s = 60.0
    sessions = Sessions(tmp_path / "root", idle_s=idle_s)
    names = ["idle", "busy", "waiting", "recent"]
    made = {name: sessions.get(name) for name in names}
    for session in made.values():
        session.folder.mkdir(parents=True)
    made["busy"].busy = True
    made["waiting"].waiting["generate"] = CancelToken()
    age(sessions, idle_s + 1)
    sessions.get("recent")  # an event of this tab: it is not idle
    sessions.get("recent")  # and no new session: nothing is looked at
    assert all(s.folder.exists() for s in made.values()) and len(sessions) == len(names)
    sessions.get("new")
    assert not made["idle"].folder.exists()
    assert all(made[n].folder.exists() for n in names if n != "idle")
    assert len(sessions) == len(names)  # the idle one gone, the new one there
    back = sessions.get("idle")
    assert back is not made["idle"] and not back.ended and back.video is None
    age(sessions, 10 * idle_s)
    made["busy"].busy = False
    sessions.get("newer")
    assert not made["busy"].folder.exists() and made["waiting"].folder.exists()
    sessions.close()


def test_without_an_idle_time_sessions_stay(tmp_path) -> None:
    sessions = Sessions(tmp_path / "root")
    old = sessions.get("old")
    old.folder.mkdir(parents=True)
    age(sessions, 10**9)
    sessions.get("new")
    assert old.folder.exists() and sessions.get("old") is old
    sessions.close()
    assert Limits(idle_hours=0).idle_seconds is None
    assert Limits(idle_hours=1.5).idle_seconds == 5400
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(UserInputError, match="idle time"):
            Limits(idle_hours=bad)
