"""The ``/generate`` endpoint through ``gradio_client``, against the app served in-process on
127.0.0.1 with debug weights and tiny random SAM 2 / SAM 3 models: stems and mix of the right
length, the MP4's tracks, messages for bad input (and serving on), one generation at a time,
models loaded once, and the call of a client that goes away stopped."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from saganet.app.example import deepest_point
from saganet.app.limits import Limits
from saganet.app.session import API_FOLDER, CALL_CANCELLED, CLIENT_GONE
from saganet.cancel import CancelledError
from saganet.media.video import SYNC_FPS
from tests.shared import wait_until

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.url, verbose=False)


def audio_seconds(path) -> list[float]:
    """Seconds of each audio stream of a file (decoded samples over the rate)."""
    seconds = []
    with av.open(str(path)) as container:
        count = len(container.streams.audio)
    for index in range(count):
        with av.open(str(path)) as container:
            stream = container.streams.audio[index]
            samples = sum(frame.samples for frame in container.decode(stream))
            seconds.append(samples / stream.rate)
    return seconds


def track_titles(path) -> list[str]:
    with av.open(str(path)) as container:
        # MP4 keeps a track's title as its handler name.
        return [s.metadata.get("handler_name") for s in container.streams.audio]


def where(scene, name: str, seconds: float) -> str:
    """A click on ``name`` at ``seconds`` (the string form of the endpoint)."""
    for k, (_, masks) in enumerate(scene.frames()):
        if k == round(seconds * SYNC_FPS):
            x, y = deepest_point(masks[name])
            return f"{x:.1f},{y:.1f}@{seconds:g}"
    raise IndexError(seconds)


def test_only_the_generate_endpoint_is_public(client) -> None:
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert list(endpoints) == ["/generate"]
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == ["video", "objects", "options"]


def test_generate_clicks_boxes_and_a_phrase(client, clip, scene) -> None:
    names = list(next(scene.frames())[1])
    duration = 1.5
    objects = [{"name": names[0], "prompt": "drum", "clicks": [where(scene, names[0], 0.4)],
                "negative_clicks": ["1,1@0.4"]},
               {"name": names[1], "boxes": [f"0,0,{scene.width},{scene.height}@0"]},
               {"name": "everything", "text": "shapes", "negative_prompt": "hum"}]
    mix, stems, video, info = client.predict(
        gradio_client.handle_file(str(clip)), objects,
        {"duration": duration, "num_steps": 2, "seed": 5}, api_name="/generate")
    expected = [o["name"] for o in objects]
    assert [Path(s).name for s in stems] == [f"{clip.stem}_{n}.flac" for n in expected]
    assert Path(mix).name == f"{clip.stem}.flac"
    for path in [mix, *stems]:
        assert audio_seconds(path) == [pytest.approx(duration, abs=1e-4)]
    # The MP4: the mix, then one titled track per object, each as long as the segment.
    assert track_titles(video) == ["mix", *expected]
    assert audio_seconds(video) == [pytest.approx(duration, abs=0.03)] * (len(objects) + 1)
    assert info["duration"] == pytest.approx(duration) and info["variant"] == "debug"
    assert list(info["objects"]) == expected
    for name, item in info["objects"].items():
        assert item["file"] == f"{clip.stem}_{name}.flac" and item["visible"]
    # Different objects got different sound.
    waves = [np.frombuffer(Path(s).read_bytes(), np.uint8) for s in stems]
    assert len({w.tobytes() for w in waves}) == len(waves)


@pytest.mark.parametrize(("objects", "options", "message"), [
    ([], None, "no object"),
    ([{"name": "a"}], None, "no click yet"),
    ([{"name": "a", "clicks": ["10,10"]}] * 2, None, "two objects are called"),
    ([{"name": "a", "clicks": ["1000,10"]}], None, "outside"),
    ([{"name": "a", "clicks": ["10,10@9"]}], None, "past the end"),
    ([{"name": "a b", "clicks": ["10,10"]}], None, "not usable in file names"),
    ([{"name": f"o{k}", "clicks": ["10,10"]} for k in range(4)], None, "at most 3"),
    ([{"name": "a", "clicks": ["10,10"]}], {"num_steps": 26}, "at most 25"),
    ([{"name": "a", "clicks": ["10,10@0"] * Limits().max_clicks, "boxes": ["0,0,9,9@0"]}],
     None, f"at most {Limits().max_clicks} per object"),
    ([{"name": "a", "clicks": ["10,10"]}], {"steps": 2}, "unknown option"),
    ([{"name": "a", "clicks": ["10,10"]}], {"start": 5}, "past the end"),
    ([{"name": "a", "clicks": ["10,10"]}], {"start": 10**400}, "too large a number"),
    ("violin", None, "JSON list"),
])
def test_bad_requests_give_messages(client, clip, objects, options, message) -> None:
    with pytest.raises(gradio_client.exceptions.AppError, match=message) as caught:
        client.predict(gradio_client.handle_file(str(clip)), objects, options,
                       api_name="/generate")
    assert "Traceback" not in str(caught.value)
    # A file is named, not shown by its path in the server's folders.
    assert f"/{clip.name}" not in str(caught.value)


def test_bad_files_and_serving_on(client, tmp_path, clip, server) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    with pytest.raises(gradio_client.exceptions.AppError, match="not a video"):
        client.predict(gradio_client.handle_file(str(text)),
                       [{"name": "a", "clicks": ["1,1"]}], None, api_name="/generate")
    # A video longer than the app's limit.
    long = tmp_path / "long.mp4"
    from tests.videos import write_video

    seconds = server.limits.max_seconds + 1
    write_video(long, [np.zeros((16, 16, 3), np.uint8)] * round(seconds * 5), fps=5)
    with pytest.raises(gradio_client.exceptions.AppError, match="up to"):
        client.predict(gradio_client.handle_file(str(long)),
                       [{"name": "a", "clicks": ["1,1"]}], None, api_name="/generate")
    # Still serving: a good request after the bad ones.
    mix, stems, _, _ = client.predict(
        gradio_client.handle_file(str(clip)), [{"name": "a", "clicks": ["20,20@0"]}],
        {"duration": 0.8, "num_steps": 1}, api_name="/generate")
    assert audio_seconds(mix) == [pytest.approx(0.8, abs=1e-4)]
    assert stems == [mix] or Path(stems[0]).read_bytes() == Path(mix).read_bytes()


def test_one_generation_at_a_time_and_models_loaded_once(client, clip, server,
                                                         monkeypatch) -> None:
    """Two clients at once: the second generation starts after the first ended; the models
    are those loaded at start, and the tracker is loaded once."""
    engine = server.engine
    models = engine.models()
    trackers = len(engine.segmenters)
    spans: list[tuple[float, float]] = []
    running = threading.Lock()
    soundtrack = engine.soundtrack

    def timed(*args, **kwargs):
        assert running.acquire(blocking=False), "two generations ran at once"
        began = time.perf_counter()
        try:
            return soundtrack(*args, **kwargs)
        finally:
            spans.append((began, time.perf_counter()))
            running.release()

    monkeypatch.setattr(engine, "soundtrack", timed)
    other = gradio_client.Client(server.url, verbose=False)
    jobs = [c.submit(gradio_client.handle_file(str(clip)),
                     [{"name": "a", "clicks": [f"{20 + k},20@0"]}],
                     {"duration": 0.7, "num_steps": 1}, api_name="/generate")
            for k, c in enumerate((client, other))]
    results = [job.result(timeout=300) for job in jobs]
    assert len(results) == 2 and len(spans) == 2
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end
    assert engine.models() is models and len(engine.segmenters) == trackers


def test_upload_size_limit(engine, clip) -> None:
    """An upload over ``--max_upload_mb`` is refused by the server, which serves on."""
    from saganet.app.limits import Limits
    from saganet.app.server import AppServer

    limit_mb = clip.stat().st_size / 2 / 1e6
    app = AppServer(engine, Limits(max_upload_mb=limit_mb))
    app.launch(block=False)
    try:
        small = gradio_client.Client(app.url, verbose=False)
        # gradio_client checks the server's limit before sending ...
        with pytest.raises(ValueError, match="exceeds the maximum file size"):
            small.predict(gradio_client.handle_file(str(clip)),
                          [{"name": "a", "clicks": ["1,1"]}], None, api_name="/generate")
        # ... and the server refuses what is sent anyway.
        with clip.open("rb") as data:
            response = httpx.post(f"{app.url}gradio_api/upload", files={"files": data})
        assert response.status_code == 413
        assert small.view_api(return_format="dict", print_info=False)["named_endpoints"]
    finally:
        app.close()


def test_uploads_and_gradio_copies_stay_in_the_apps_private_folder(engine, clip,
                                                                   monkeypatch) -> None:
    """Gradio's copies (uploads, served results) go under the app's own folder (mode 0700),
    not the shared ``<tmp>/gradio`` that every user of the machine can read."""
    from saganet.app.limits import Limits
    from saganet.app.server import AppServer

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    app = AppServer(engine, Limits())
    app.launch(block=False)
    try:
        with clip.open("rb") as data:
            [path] = httpx.post(f"{app.url}gradio_api/upload", files={"files": data}).json()
        assert Path(path).is_relative_to(app.sessions.root)
        assert app.sessions.root.stat().st_mode & 0o777 == 0o700
        assert httpx.get(f"{app.url}gradio_api/file={path}").content == clip.read_bytes()
    finally:
        app.close()
    assert not Path(path).exists()
    assert "GRADIO_TEMP_DIR" not in os.environ


def test_visitors_reach_no_other_server_file(server, clip, tmp_path) -> None:
    """Only what the app made is served: a server path is refused as a download and as
    ``/generate``'s video."""
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(clip.read_bytes())
    session_file = next(server.sessions.root.rglob("*.mp4"), secret)
    for path in (str(secret), f"{server.sessions.root}/../{secret.relative_to('/')}",
                 str(session_file)):
        assert httpx.get(f"{server.url}gradio_api/file={path}").status_code == 403
    # Sent as is: gradio_client would upload a local file named so.
    video = {"path": str(secret), "meta": {"_type": "gradio.FileData"}}
    call = httpx.post(f"{server.url}gradio_api/call/generate",
                      json={"data": [video, [{"name": "a", "clicks": ["1,1"]}], None]})
    events = httpx.get(f"{server.url}gradio_api/call/generate/{call.json()['event_id']}",
                       timeout=60).text
    assert events.startswith("event: error")


# Seconds between the server's heartbeats in the test below: how soon it notices a client gone.
HEARTBEAT = 0.5
# A script that submits a call and waits for it (killed by the test while the call runs).
SCRIPT = """
import sys
from gradio_client import Client, handle_file
client = Client(sys.argv[1], verbose=False)
client.submit(handle_file(sys.argv[2]), [{"name": "a", "clicks": ["20,20@0"]}],
              {"num_steps": int(sys.argv[3])}, api_name="/generate").result()
"""


@pytest.mark.parametrize("how", ["close", "kill", "cancel"])
def test_a_client_that_goes_away_stops_its_call(server, clip, monkeypatch, caplog, tmp_path,
                                                how) -> None:
    """A client gone while its call samples (``client.close()``, or its process killed), or
    one that cancels the call (``job.cancel()``): the call stops at its next Euler step, soon
    after the server notices, and leaves no files; the next client's call runs."""
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", str(HEARTBEAT))  # read per connection
    caplog.set_level(logging.INFO, logger="saganet.app")
    engine, steps = server.engine, server.limits.max_steps
    objects = [{"name": "a", "clicks": ["20,20@0"]}]
    short = {"duration": 0.7, "num_steps": 1}
    other = gradio_client.Client(server.url, verbose=False)
    began = time.perf_counter()
    other.predict(gradio_client.handle_file(str(clip)), objects, short, api_name="/generate")
    alone = time.perf_counter() - began  # a whole call, tracking and files included
    held, release, long = threading.Event(), threading.Event(), {}
    soundtrack = engine.soundtrack

    def holding(*args, progress, cancel=None, **kwargs):
        if args[2].num_steps != steps:
            return soundtrack(*args, progress=progress, cancel=cancel, **kwargs)
        long["folder"] = args[3]

        def report(stage: str, done: int, total: int) -> None:
            progress(stage, done, total)
            if stage == "sampling":
                long["sampled"] = (done, total)
                if not held.is_set():  # the client goes now, in the middle of sampling
                    held.set()
                    wait_until(lambda: release.is_set()
                           or (cancel is not None and cancel.cancelled), 300)

        try:
            return soundtrack(*args, progress=report, cancel=cancel, **kwargs)
        except CancelledError as err:
            long["stopped"] = err.reason
            raise
        finally:
            long["ended"] = time.perf_counter()

    monkeypatch.setattr(engine, "soundtrack", holding)
    # The whole clip with the most steps the app takes: held at its first step until stopped.
    if how != "kill":
        gone = gradio_client.Client(server.url, verbose=False)
        job = gone.submit(gradio_client.handle_file(str(clip)), objects, {"num_steps": steps},
                          api_name="/generate")
    else:
        with (tmp_path / "client.log").open("w") as log:
            process = subprocess.Popen([sys.executable, "-c", SCRIPT, server.url, str(clip),
                                        str(steps)], stdout=log, stderr=subprocess.STDOUT)
    try:
        assert held.wait(120), how == "kill" and (tmp_path / "client.log").read_text()
        left = time.perf_counter()
        if how == "close":
            gone.close()
        elif how == "cancel":
            assert job.cancel()
        else:
            process.kill()
            process.wait(30)
        # Noticed within a few heartbeats; then one Euler step, far shorter than a whole call.
        bound = 4 * HEARTBEAT + 2 * alone
        assert wait_until(lambda: "ended" in long, bound), f"still running {bound:.1f} s after"
        took = long["ended"] - left
    finally:
        release.set()
        if how == "kill" and process.poll() is None:
            process.kill()
            process.wait(30)
    reason = CALL_CANCELLED if how == "cancel" else CLIENT_GONE
    assert long["stopped"] == reason and long["sampled"] == (1, steps)
    assert any(f"stopped after sampling 1/{steps}: {reason}" in r.getMessage()
               for r in caplog.records)
    assert wait_until(lambda: not long["folder"].exists(), 10), "the stopped call left files"
    assert not list((server.sessions.root / API_FOLDER).iterdir())
    if how == "close":  # the closed client's job thread reads why
        with pytest.raises(gradio_client.exceptions.AppError, match=f"stopped: {CLIENT_GONE}"):
            job.result(timeout=60)
    # The models are free: the next call runs as it did alone.
    other.predict(gradio_client.handle_file(str(clip)), objects, short, api_name="/generate")
    print(f"{how}: stopped {took:.2f} s after the client went; a call alone {alone:.2f} s")
