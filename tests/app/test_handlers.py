"""The page's handlers called directly (as Gradio calls them, without a browser): messages for
bad input, clicks mapped to the video's pixels, tracking, generation with progress, reuse of
a tracking, the session's files, and jobs stopped by a closing tab or by Stop."""

from __future__ import annotations

from pathlib import Path

import av
import gradio as gr
import numpy as np
import pytest

from saganet.app.example import deepest_point
from saganet.app.frames import shown_size
from saganet.app.layout import build_app
from saganet.app.limits import Limits, min_seconds
from saganet.app.session import Sessions
from saganet.media.video import SYNC_FPS
from tests.shared import wait_until
from tests.videos import write_video


class Recorder:
    """Stands in for ``gr.Progress``: records ``(stage, done, total)``, and each stage's
    unit."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.units: dict[str, str] = {}

    def __call__(self, progress, desc=None, total=None, unit="steps") -> None:
        done, count = progress
        self.calls.append((desc, done, count))
        self.units[desc] = unit

    def stages(self) -> list[str]:
        return list(dict.fromkeys(desc for desc, _, _ in self.calls))


@pytest.fixture
def app(engine, tmp_path):
    sessions = Sessions(tmp_path / "sessions")
    built = build_app(engine, sessions, Limits(max_objects=3, max_steps=8))
    yield built
    sessions.close()


def request(key: str = "tab1") -> gr.Request:
    return gr.Request(session_hash=key)


def select(x: float, y: float) -> gr.SelectData:
    return gr.SelectData(None, {"index": [x, y], "value": None})


def options(duration=0, steps=2, original_sound=False, pan=False, audio_format="flac",
            sample_rate=44100, *, variant="debug", cfg=4.5, seed=3,
            negatives_from_others=False, keep_hidden=False) -> dict:
    """The advanced options' values as the page sends them, by name (0 for a blank duration
    or end, as the page's number fields)."""
    return {"start": 0, "duration": duration, "end": 0, "cfg_strength": cfg,
            "num_steps": steps, "seed": seed, "variant": variant,
            "original_sound": original_sound, "pan": pan, "audio_format": audio_format,
            "sample_rate": sample_rate, "negatives_from_others": negatives_from_others,
            "keep_hidden": keep_hidden}


def flac_seconds(path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate


def refused(updates: dict, page, text: str) -> None:
    """The event ended with an error message in the status line (and nothing else)."""
    assert list(updates) == [page.status]
    assert updates[page.status].startswith("**Error:**") and text in updates[page.status]


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_messages_for_bad_input(app, tmp_path, clip) -> None:
    handlers, page = app.handlers, app.page
    refused(handlers.click(False, 0.0, select(10, 10), request()), page, "load a video first")
    refused(handlers.generate(0.0, request(), Recorder(), **options()), page, "load a video")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    updates = handlers.upload(str(text), request())
    assert "not a video" in updates[page.status] and updates[page.upload] is None
    updates = handlers.upload(str(clip), request())
    assert "Video loaded" in updates[page.status]
    session = handlers.sessions.get("tab1")
    updates = handlers.upload(str(text), request())  # a bad file keeps the loaded video
    assert updates[page.upload] == str(session.video) and session.video.is_file()
    refused(handlers.generate(0.0, request(), Recorder(), **options()), page, "no click yet")
    refused(handlers.track(0.0, request(), Recorder(), **options(steps=9)), page, "at most 8")
    handlers.add_object(0.0, request())
    handlers.add_object(0.0, request())
    refused(handlers.add_object(0.0, request()), page, "at most 3")
    handlers.remove_object(0.0, request())
    handlers.remove_object(0.0, request())
    assert len(handlers.sessions.get("tab1").objects) == 1
    for _ in range(Limits().max_clicks):
        handlers.click(False, 0.0, select(10, 10), request())
    refused(handlers.click(False, 0.0, select(10, 10), request()), page, "at most")
    handlers.clear_clicks(0.0, request())
    handlers.edit_name("a b", None, request())
    handlers.click(False, 0.0, select(10, 10), request())
    refused(handlers.track(0.0, request(), Recorder(), **options()), page,
            "not usable in file names")


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_a_name_too_long_for_a_file_is_refused_before_tracking(app, clip, tmp_path) -> None:
    """With several objects, each one's name is part of its stem's file name
    (``<video>_<name>.flac``): a name the file system does not take there is refused by Track
    and Generate before any tracking, leaving no run folder, and by the engine's generation
    (the ``/generate`` endpoint's path) before its tracking. It was refused only when the
    generation came to write its files, after all the tracking. A single object's sound is
    the mix, named after the video: its name may be that long."""
    from saganet.app.engine import check_output_names
    from saganet.app.options import GenerationOptions
    from saganet.errors import UserInputError

    handlers, page = app.handlers, app.page
    _prepared(handlers, clip, "tab1")
    handlers.add_object(0.0, request())
    handlers.click(False, 0.0, select(60, 60), request())
    long = "a" * 250  # a file name of its own, but not with "shapes_" and ".flac" around it
    handlers.edit_name(long, 1, request())
    session = handlers.sessions.get("tab1")
    for run in (handlers.track, handlers.generate):
        progress = Recorder()
        refused(run(0.0, request(), progress, **options(1.0)), page, "name too long")
        assert progress.calls == [] and not list(session.folder.glob("run-*"))
        assert not session.busy and session.tracking is None
    reports = []
    with pytest.raises(UserInputError, match="name too long"):
        handlers.engine.soundtrack(clip, session.objects, GenerationOptions(duration=1.0),
                                   tmp_path / "out", (0.0, 1.0),
                                   progress=lambda *report: reports.append(report))
    assert reports == [] and not (tmp_path / "out").exists()
    check_output_names(clip, session.objects[1:], tmp_path / "out")


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_a_refused_name_keeps_the_last_results(app, clip) -> None:
    """Generate (or Track) refused for a name too long for a file name leaves the last
    generation's files, which the page still shows, where they were. The previous run's
    folder used to be removed before the names were checked: the page showed players and
    downloads whose files were gone."""
    handlers, page = app.handlers, app.page
    _prepared(handlers, clip, "tab1")
    handlers.add_object(0.0, request())
    handlers.click(False, 0.0, select(60, 60), request())
    updates = handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))
    shown = [Path(p) for p in updates[page.downloads]]
    handlers.edit_name("a" * 250, 1, request())
    for run in (handlers.generate, handlers.track):
        refused(run(0.0, request(), Recorder(), **options(1.0)), page, "name too long")
        assert all(path.is_file() for path in shown)


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_the_last_results_stay_until_a_new_run_succeeds(app, clip, monkeypatch) -> None:
    """The page's players, downloads and tracking preview link into the run folders that made
    them: a Generate stopped or failed (after writing its files) removes its own run folder
    only; a Track replaces the preview only, so the generation's files stay; a Generate
    reusing that tracking replaces the players only, so the Track's preview stays. Each new
    run used to remove the previous run's folder as it started."""
    from saganet.cancel import CancelledError
    from saganet.errors import UserInputError

    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    _prepared(handlers, clip, "tab1")
    session = handlers.sessions.get("tab1")

    def runs() -> list[Path]:
        return sorted(session.folder.glob("run-*"))

    updates = handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))
    results = [Path(p) for p in updates[page.downloads]]
    before = runs()
    soundtrack = engine.soundtrack
    for error in (CancelledError("stopped on request"), UserInputError("the sampler broke")):
        def failing(*args, error=error, **kwargs):
            soundtrack(*args, **kwargs)  # its files are written, then it fails
            raise error

        monkeypatch.setattr(engine, "soundtrack", failing)
        status = handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))
        assert error.args[0] in status[page.status]
        assert all(path.is_file() for path in results) and runs() == before
    monkeypatch.undo()
    preview = Path(handlers.track(0.0, request(), Recorder(), **options())[page.preview])
    assert preview.is_file() and all(path.is_file() for path in results)
    updates = handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))
    assert page.preview not in updates  # the tracking was reused
    assert preview.is_file() and not any(path.exists() for path in results)
    results = [Path(p) for p in updates[page.downloads]]
    assert runs() == sorted({preview.parent, results[0].parent.parent})
    handlers.click(False, 0.4, select(30, 30), request())  # the next Generate tracks again
    updates = handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))
    assert runs() == [Path(updates[page.preview]).parent]


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
@pytest.mark.parametrize("offline", [True, False])
def test_a_variant_without_weights_keeps_the_loaded_one(app, clip, monkeypatch,
                                                        offline) -> None:
    """*Variant* set to one whose weights are not on the server (offline), or fail to
    download: Generate says so in a line of its own, before any tracking, the loaded variant
    stays in memory, and the next Generate with the app's variant runs. The loaded variant
    used to be freed first (the next job loaded it again), after all the tracking, and the
    page listed the server's cache folders."""
    import dataclasses

    from saganet import weights
    from saganet.weights.transfer import DownloadError

    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    if not offline:  # no download leaves the machine: each fails as a cut network does
        def failing(*args, **kwargs):
            raise DownloadError("cannot download saganet.pth: network unreachable")

        monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings,
                                                                    offline=False))
        monkeypatch.setattr(weights, "resolve_all", failing)
    _prepared(handlers, clip, "tab1")
    assert engine.loaded_variant == "debug"
    values = options(1.0, steps=1, variant="saganet_small")
    progress = Recorder()
    status = handlers.generate(0.0, request(), progress, **values)[page.status]
    assert progress.stages() == ["loading the model"] and status == (
        "**Error:** the saganet_small variant is not available on this server (its weights "
        "are missing or failed to download); pick another variant")
    assert engine.loaded_variant == "debug"
    updates = handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))
    assert "Generated 1.00 s" in updates[page.status]


def test_generate_checks_names_and_fetches_a_variant_once(app, clip, monkeypatch) -> None:
    """Generate checks its output names once (the engine's check, before the tracking) and
    resolves another variant's weights once (before the tracking; then it loads them). The
    page's path checked the names in the handler and again in the engine, and resolved the
    variant's files again as it loaded them. Another variant is stood in for by the loaded
    one unloaded (only the debug variant's weights are here)."""
    from saganet.app import engine as engine_module
    from saganet.app import handlers as handlers_module

    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    _prepared(handlers, clip, "tab1")
    calls = []
    check, fetch = engine_module.check_output_names, engine.fetch_variant
    for module in (engine_module, handlers_module):
        monkeypatch.setattr(module, "check_output_names",
                            lambda *a: calls.append("names") or check(*a))
    monkeypatch.setattr(engine, "fetch_variant",
                        lambda v, *rest: calls.append(v) or fetch(v, *rest))
    monkeypatch.setattr(engine, "_loaded", None)
    progress = Recorder()
    updates = handlers.generate(0.0, request(), progress, **options(1.0, steps=1))
    assert "Generated 1.00 s" in updates[page.status] and engine.loaded_variant == "debug"
    assert calls == ["names", "debug"]
    stages = [desc for desc, _, _ in progress.calls]  # loading, tracking..., loading, ...
    assert stages[0] == stages[-stages[::-1].index("tracking")] == "loading the model"


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_a_variants_download_shows_its_progress(app, clip, tmp_path, monkeypatch) -> None:
    """*Variant* set to one whose weights download: the page's progress bar names the file
    and counts its MB up to its size (from a loopback server), not only "loading the model".
    The download here fails its checksum at the end: the page then says the variant is not
    available, and the loaded one stays."""
    import dataclasses
    import functools
    import hashlib
    import http.server
    import threading

    from saganet import weights
    from saganet.weights import WeightFile

    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    served = tmp_path / "served"
    served.mkdir()
    body = np.random.default_rng(0).bytes(3 * 10**6 + 17)
    (served / "saganet.pth").write_bytes(body)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/saganet.pth"
    wrong = hashlib.md5(b"another file", usedforsecurity=False).hexdigest()
    registry = {"saganet.pth": WeightFile("saganet.pth", url, wrong, "weights")}
    resolve_all = weights.resolve_all

    def loopback(names, weights_dir=None, offline=None, **kwargs):
        return resolve_all(["saganet.pth"], weights_dir, offline, registry=registry, **kwargs)

    monkeypatch.setattr(weights, "resolve_all", loopback)
    monkeypatch.setattr(engine, "settings", dataclasses.replace(
        engine.settings, offline=False, weights_dir=tmp_path / "cache"))
    _prepared(handlers, clip, "tab1")
    progress = Recorder()
    try:
        status = handlers.generate(0.0, request(), progress,
                                   **options(1.0, steps=1, variant="saganet_small"))[page.status]
    finally:
        server.shutdown()
        server.server_close()
    assert "the saganet_small variant is not available" in status
    stage = "downloading saganet.pth"
    assert progress.stages() == ["loading the model", stage]
    counts = [(done, total) for desc, done, total in progress.calls if desc == stage]
    size = len(body) // 10**6
    assert counts[0] == (0, size) and counts[-1] == (size, size)
    assert progress.units[stage] == "MB" and engine.loaded_variant == "debug"


def test_clicks_map_to_the_videos_pixels(app, tmp_path) -> None:
    """A click on the shown (smaller) frame lands on the video's pixel under it, at the time of
    the frame scrubbed to; another tab's session is separate."""
    width, height = 1600, 900
    frames = round(min_seconds() * SYNC_FPS) + 1  # the shortest video the app takes
    video = write_video(tmp_path / "wide.mp4", [np.full((height, width, 3), 12 * k, np.uint8)
                                                 for k in range(frames)])
    handlers, page = app.handlers, app.page
    updates = handlers.upload(str(video), request())
    shown_w, shown_h = shown_size(width, height)
    assert updates[page.frame].shape == (shown_h, shown_w, 3)
    slot = frames - 2
    shown = handlers.scrub(slot / SYNC_FPS, request())[page.frame]
    assert np.abs(shown.astype(int) - 12 * slot).max() < 5  # the scrubbed frame
    updates = handlers.click(False, slot / SYNC_FPS, select(shown_w / 4, shown_h / 2), request())
    handlers.click(True, slot / SYNC_FPS, select(shown_w - 1, 0), request())
    session = app.handlers.sessions.get("tab1")
    positive, negative = session.current_object().clicks
    assert (positive.x, positive.y) == pytest.approx((width / 4, height / 2))
    assert positive.time == pytest.approx(slot / SYNC_FPS) and positive.positive
    assert negative.x == pytest.approx((shown_w - 1) * width / shown_w) and not negative.positive
    assert f"{width / 4:.0f},{height / 2:.0f} at" in updates[page.objects_table]
    assert app.handlers.sessions.get("tab2").video is None


def _click_on(scene, name: str, slot: int) -> tuple[float, float]:
    """Where ``name`` is in frame ``slot`` of the scene (pixels of the video)."""
    for k, (_, masks) in enumerate(scene.frames()):
        if k == slot:
            return deepest_point(masks[name])
    raise IndexError(slot)


def test_track_then_generate(app, clip, scene, monkeypatch) -> None:
    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    tracks = []
    track = engine.track
    monkeypatch.setattr(engine, "track", lambda *a, **k: tracks.append(a) or track(*a, **k))
    handlers.upload(str(clip), request())
    session = handlers.sessions.get("tab1")
    names = list(next(scene.frames())[1])
    slot = 10
    for k, name in enumerate(names):
        if k:
            handlers.add_object(slot / SYNC_FPS, request())
        view = session.view
        x, y = view.to_shown(*_click_on(scene, name, slot))
        handlers.click(False, slot / SYNC_FPS, select(round(x), round(y)), request())
        handlers.edit_name(name, k, request())
        updates = handlers.edit_prompt(f"{name} sound", k, request())
    assert updates[page.object_choice]["choices"] == [(n, k) for k, n in enumerate(names)]
    # An edit made while object 0 was shown lands on it, whichever object is current now.
    handlers.edit_negative_prompt("hiss", 0, request())
    assert session.objects[0].negative_prompt == "hiss" and session.current == len(names) - 1
    progress = Recorder()
    updates = handlers.track(slot / SYNC_FPS, request(), progress, **options())
    assert progress.stages() == ["tracking"]
    assert progress.calls[-1][1] == progress.calls[-1][2] == round(scene.duration * SYNC_FPS)
    assert Path(updates[page.preview]).is_file()
    for name in names:
        assert f"{name}: visible" in updates[page.tracking_summary]
    assert len(tracks) == 1

    duration = 1.2
    progress = Recorder()
    updates = handlers.generate(slot / SYNC_FPS, request(), progress, **options(duration))
    assert len(tracks) == 1  # the tracking was reused
    assert {"features", "sampling", "decoding", "writing files"} <= set(progress.stages())
    assert flac_seconds(updates[page.mix]["value"]) == pytest.approx(duration, abs=1e-4)
    for k, name in enumerate(names):
        assert updates[page.stem_rows[k]]["visible"]
        assert updates[page.stems[k]]["label"] == name
        assert flac_seconds(updates[page.stems[k]]["value"]) == pytest.approx(duration, abs=1e-4)
        assert Path(updates[page.stem_spectrograms[k]]["value"]).is_file()
    for row in page.stem_rows[len(names):]:
        assert not updates[row]["visible"]
    downloads = [Path(p) for p in updates[page.downloads]]
    assert sorted(p.suffix for p in downloads) == [".flac"] * (len(names) + 1) + [".mp4"]
    assert "Generated 1.20 s" in updates[page.status]
    first_run = downloads[0].parent

    # A correcting click changes the prompts: the next generation tracks again.
    x, y = session.view.to_shown(*_click_on(scene, names[-1], slot))
    handlers.click(False, slot / SYNC_FPS, select(round(x), round(y)), request())
    progress = Recorder()
    updates = handlers.generate(slot / SYNC_FPS, request(), progress, **options(duration))
    assert len(tracks) == 2 and Path(updates[page.preview]).is_file()
    assert progress.stages()[:2] == ["tracking", "features"]
    assert not first_run.exists()  # only the latest run's files are kept
    # While a job runs, the page can scrub and click but not load another video.
    session.busy = True
    updates = handlers.upload(str(clip), request())
    assert "wait until" in updates[page.status]
    assert page.frame in handlers.scrub(0.2, request())
    session.busy = False
    handlers.sessions.end("tab1")
    assert not session.folder.exists()


def test_example_button(app) -> None:
    """The debug variant's example: the synthetic clip, one clicked object per shape."""
    updates = app.handlers.example(request())
    session = app.handlers.sessions.get("tab1")
    assert Path(updates[app.page.upload]) == session.video and session.video.is_file()
    assert [len(o.clicks) for o in session.objects] == [1] * len(session.objects)
    assert {o.name for o in session.objects} == {"circle", "square"}
    assert "circle" in updates[app.page.objects_table]


def test_stop_while_the_example_waits_in_the_queue(app, clip) -> None:
    """The example button waits in the models' queue like Generate: Stop pressed meanwhile
    says the example will not load, has the page drop the event, and the event loads nothing
    if it starts anyway (the tab keeps its video). Stop used to say "Nothing to stop" and the
    example loaded. The next press loads it."""
    from saganet.app.handlers import EXAMPLE, GENERATION

    handlers, page = app.handlers, app.page
    _prepared(handlers, clip, "tab1")
    session = handlers.sessions.get("tab1")
    video = session.video
    handlers.queued(EXAMPLE)(request())
    updates = handlers.stop(request())
    assert list(updates) == [page.stop_waiting[EXAMPLE], page.status]
    assert updates[page.status] == "**Stopped:** the example waiting in line will not load."
    assert handlers.example(request()) == {
        page.status: "**Stopped:** stopped on request before it started."}
    assert session.video == video and session.objects[0].clicks
    handlers.queued(GENERATION)(request(), 0.0, **options())
    handlers.queued(EXAMPLE)(request())
    assert handlers.stop(request())[page.status] == (
        "**Stopped:** the generation waiting in line will not start and the example waiting "
        "in line will not load.")
    handlers.queued(EXAMPLE)(request())
    assert "The example is loaded" in handlers.example(request())[page.status]
    assert session.video != video


def test_scrubbing_and_clicking_during_a_generation(app, clip, monkeypatch) -> None:
    """A running generation holds the models, not the page: the same tab scrubs and clicks
    meanwhile; the generation works on the objects as they were when it started."""
    import threading

    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    handlers.upload(str(clip), request())
    handlers.click(False, 0.0, select(20, 20), request())
    started, release = threading.Event(), threading.Event()
    seen = []
    soundtrack = engine.soundtrack

    def slow(video, objects, *args, **kwargs):
        seen.append([len(o.clicks) for o in objects])
        started.set()
        assert release.wait(60)
        return soundtrack(video, objects, *args, **kwargs)

    monkeypatch.setattr(engine, "soundtrack", slow)
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))))
    worker.start()
    try:
        assert started.wait(120)
        assert page.frame in handlers.scrub(0.4, request())
        handlers.click(False, 0.4, select(30, 30), request())
        assert "wait" in handlers.track(0.0, request(), Recorder(), **options())[page.status]
    finally:
        release.set()
        worker.join(120)
    assert seen == [[1]] and "Generated" in result[page.status]
    assert len(handlers.sessions.get("tab1").current_object().clicks) == 2


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_messages_name_the_video_not_its_folder_on_the_server(app, clip, tmp_path,
                                                              monkeypatch) -> None:
    """An error about the visitor's video names the file as uploaded, not the session's
    temporary folder it lives in on the server."""
    import dataclasses

    from saganet.segment.debug_models import write_tiny_sam2

    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    absent = write_tiny_sam2(tmp_path / "absent", object_present=False)
    monkeypatch.setattr(engine, "settings",
                        dataclasses.replace(engine.settings, segment_model=str(absent)))
    handlers.upload(str(clip), request())
    handlers.click(False, 0.0, select(20, 20), request())
    status = handlers.track(0.0, request(), Recorder(), **options())[page.status]
    assert "not found in any frame" in status and clip.name in status
    folder = handlers.sessions.get("tab1").folder
    assert folder.name not in status and str(folder.parent) not in status


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_messages_name_no_server_folder(app, clip, tmp_path, monkeypatch, caplog) -> None:
    """The duet example's files missing offline (a full variant) and a phrase with no SAM 3
    on the server: the page says what is missing in the visitor's words (the example, the
    objects to click instead), and the log says which files go where. The page used to list
    the server's cache folders."""
    import dataclasses
    import logging

    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    caplog.set_level(logging.WARNING, logger="saganet.app")
    empty = tmp_path / "empty-cache"
    settings = dataclasses.replace(engine.settings, weights_dir=empty, text_model=None)
    monkeypatch.setattr(engine, "settings", dataclasses.replace(settings,
                                                                variant="saganet_small"))
    status = handlers.example(request())[page.status]
    assert status == ("**Error:** the duet example is not available on this server (its "
                      "files are missing or failed to download); upload a video instead")
    assert str(empty) in caplog.text
    caplog.clear()
    monkeypatch.setattr(engine, "settings", settings)
    handlers.upload(str(clip), request())
    handlers.edit_phrase("a red circle", 0, request())
    name = handlers.sessions.get("tab1").objects[0].name
    for run in (handlers.track, handlers.generate):
        status = run(0.0, request(), Recorder(), **options(1.0, steps=1))[page.status]
        assert status == ("**Error:** finding an object by a phrase is not available on this "
                          f"server (it has no SAM 3 model): click on {name} instead")
        assert str(empty) in caplog.text


def _prepared(handlers, clip, key: str) -> None:
    """Tab ``key`` with the clip loaded and one object clicked."""
    handlers.upload(str(clip), request(key))
    handlers.click(False, 0.0, select(20, 20), request(key))


@pytest.mark.parametrize("job", ["generate", "track"])
def test_closing_a_tab_stops_its_job(app, clip, monkeypatch, caplog, job) -> None:
    """A tab closed while its job runs: the job stops at its next check (no later progress,
    no decoding or files), the tab's files go, and its queued job starts nothing; another
    tab's job, waiting for the models meanwhile, runs to the end."""
    import logging
    import threading

    handlers, page, engine, sessions = app.handlers, app.page, app.handlers.engine, \
        app.handlers.sessions
    caplog.set_level(logging.INFO, logger="saganet.app")
    stage = "sampling" if job == "generate" else "tracking"
    steps = handlers.limits.max_steps
    _prepared(handlers, clip, "closing")
    _prepared(handlers, clip, "other")
    held, tokens = threading.Event(), []
    method = getattr(engine, "soundtrack" if job == "generate" else "track")

    def holding(*args, progress, cancel=None, **kwargs):
        def report(name: str, done: int, total: int) -> None:
            progress(name, done, total)
            if name == stage and cancel is tokens[0] and not held.is_set():
                held.set()  # the tab closes now, in the middle of the stage
                assert cancel.cancelled or wait_until(lambda: cancel.cancelled, 60)

        tokens.append(cancel)
        return method(*args, progress=report, cancel=cancel, **kwargs)

    monkeypatch.setattr(engine, "soundtrack" if job == "generate" else "track", holding)
    run = getattr(handlers, job)
    closing, other, results = Recorder(), Recorder(), {}
    threads = [threading.Thread(target=lambda: results.update(closing=run(
        0.0, request("closing"), closing, **options(1.0, steps=steps))))]
    threads[0].start()
    assert held.wait(120)
    threads.append(threading.Thread(target=lambda: results.update(other=run(
        0.0, request("other"), other, **options(1.0, steps=steps)))))
    threads[1].start()
    folder = sessions.get("closing").folder
    sessions.end("closing")
    for thread in threads:
        thread.join(300)

    assert results["closing"] == {page.status: "**Stopped:** the tab was closed."}
    seen = [(name, done) for name, done, _ in closing.calls if name == stage]
    total = next(count for name, _, count in closing.calls if name == stage)
    assert seen[-1][1] == 1 < total  # held after the first report, stopped at the next
    assert closing.stages()[-1] == stage  # nothing after it
    assert not folder.exists() and len(sessions) == 1
    assert any(f"stopped after {stage} 1/{total}: the tab was closed" in r.getMessage()
               for r in caplog.records)
    # A job of the closed tab still waiting in Gradio's queue starts nothing.
    queued = Recorder()
    assert run(0.0, request("closing"), queued, **options(1.0, steps=steps)) == {
        page.status: "**Stopped:** the tab was closed."}
    assert queued.calls == [] and not folder.exists() and len(sessions) == 1
    # The other tab's job was not touched.
    done = [(done, count) for name, done, count in other.calls if name == stage]
    assert done[-1][0] == done[-1][1] == total
    expected = "Generated 1.00 s" if job == "generate" else "Tracked 1 object(s)"
    assert expected in results["other"][page.status]
    assert sessions.get("other").folder.is_dir()


def test_stop_button_stops_the_job_and_the_tab_goes_on(app, clip, monkeypatch,
                                                        capsys) -> None:
    """Stop cancels the tab's running generation through the same token as a closing tab:
    it stops at its next Euler step, its run's files go, and the tab generates again. Stop
    writes no status line while a job runs (a message says it is stopping): the job's event
    writes it when it ends, and Stop's update, reaching the page after it, left "Stopping..."
    under a job long stopped."""
    import threading

    handlers, page, engine = app.handlers, app.page, app.handlers.engine
    _prepared(handlers, clip, "tab1")
    session = handlers.sessions.get("tab1")
    assert "Nothing to stop" in handlers.stop(request())[page.status]
    held = threading.Event()
    soundtrack = engine.soundtrack

    def holding(*args, progress, cancel=None, **kwargs):
        def report(name: str, done: int, total: int) -> None:
            progress(name, done, total)
            if name == "sampling" and not held.is_set():
                held.set()
                assert wait_until(lambda: cancel.cancelled, 60)

        return soundtrack(*args, progress=report, cancel=cancel, **kwargs)

    monkeypatch.setattr(engine, "soundtrack", holding)
    steps = handlers.limits.max_steps
    progress, result = Recorder(), {}
    worker = threading.Thread(target=lambda: result.update(handlers.generate(
        0.0, request(), progress, **options(1.0, steps=steps))))
    worker.start()
    assert held.wait(120)
    capsys.readouterr()
    assert handlers.stop(request()) == {}
    assert capsys.readouterr().out == "Stopping at the next safe point.\n"  # gr.Info's
    worker.join(120)
    assert result == {page.status: "**Stopped:** stopped on request."}
    assert [done for name, done, _ in progress.calls if name == "sampling"] == [1] < [steps]
    assert not list(session.folder.glob("run-*")) and session.video.is_file()
    assert not session.busy and session.job is None
    updates = handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))
    assert "Generated 1.00 s" in updates[page.status]


def test_stop_while_waiting_in_the_queue(app, clip, capsys) -> None:
    """A Generate waiting in Gradio's queue (its validator ran, its handler has not) is
    stopped by Stop: the page's state for it changes (which has the page drop it from the
    queue), and if it starts anyway it does nothing and leaves no file. It used to find no
    running job ("Nothing to stop") and then run. Stop with nothing running or waiting, or
    pressed again, stops nothing; a Generate queued after a Stop runs, whether the stopped one
    was dropped or started; with a Track running and a Generate waiting, Stop stops both."""
    from saganet.app.handlers import GENERATION, TRACKING

    handlers, page = app.handlers, app.page
    _prepared(handlers, clip, "tab1")
    session = handlers.sessions.get("tab1")
    values = options(1.0, steps=1)
    nothing = {page.status: "Nothing to stop: no tracking or generation is running or waiting."}
    stopped = "**Stopped:** the generation waiting in line will not start."
    assert handlers.stop(request()) == nothing
    for dropped in (True, False):
        handlers.queued(GENERATION)(request(), 0.0, **values)
        updates = handlers.stop(request())
        assert list(updates) == [page.stop_waiting[GENERATION], page.status]
        assert updates[page.status] == stopped
        assert handlers.stop(request()) == nothing  # pressed twice
        if not dropped:  # it starts after all
            progress, runs = Recorder(), list(session.folder.glob("run-*/**/*"))
            assert handlers.generate(0.0, request(), progress, **values) == {
                page.status: "**Stopped:** stopped on request before it started."}
            # The last results stay, and nothing is added.
            assert progress.calls == [] and list(session.folder.glob("run-*/**/*")) == runs
            assert not session.busy and session.job is None
            assert handlers.stop(request()) == nothing
        # The next Generate is not touched by that Stop.
        handlers.queued(GENERATION)(request(), 0.0, **values)
        updates = handlers.generate(0.0, request(), Recorder(), **values)
        assert "Generated 1.00 s" in updates[page.status]
    # A Track running (its token taken as it started) and a Generate waiting behind it.
    handlers.queued(TRACKING)(request(), 0.0, **values)
    handlers.queued(GENERATION)(request(), 0.0, **values)
    with session.lock:
        session.start_job(running := session.take_token(TRACKING))
    capsys.readouterr()
    assert list(handlers.stop(request())) == [page.stop_waiting[GENERATION]]
    assert capsys.readouterr().out == ("Stopping at the next safe point; the generation "
                                       "waiting in line will not start.\n")
    assert running.cancelled and running.reason == "stopped on request"
    handlers.sessions.job_ended(session)


def test_a_new_object_does_not_show_a_removed_objects_tracking(app, clip) -> None:
    """The tracked masks belong to the objects tracked, not to their names: an object added
    after one was removed gets the removed one's free name but shows no masks and no visible
    time, and an object renamed after tracking keeps its own."""
    handlers, page = app.handlers, app.page
    _prepared(handlers, clip, "tab1")
    handlers.add_object(0.0, request())
    handlers.click(False, 0.0, select(60, 60), request())
    session = handlers.sessions.get("tab1")
    first, second = (o.name for o in session.objects)
    untinted = handlers.scrub(0.0, request())[page.frame]
    handlers.track(0.0, request(), Recorder(), **options())
    handlers.choose_object(0, 0.0, request())
    handlers.remove_object(0.0, request())
    updates = handlers.add_object(0.0, request())
    added = session.current_object()
    assert added.name == first and not added.clicks  # the removed object's name again
    rows = updates[page.objects_table].splitlines()
    assert rows[-1].endswith("| (no click yet) |  |")  # no visible time
    handlers.choose_object(0, 0.0, request())
    updates = handlers.edit_name("renamed", 0, request())
    assert "renamed" in updates[page.objects_table]
    assert updates[page.objects_table].splitlines()[2].rstrip(" |").endswith(" s")
    # The frame tints the renamed object's masks only, none of the removed object's (the
    # clicks drawn differ too: the removed object's has gone).
    shown = handlers.scrub(0.0, request())[page.frame]
    assert shown.shape == untinted.shape  # shown at the video's size: masks map 1:1
    kept_mask = session.tracking.objects[second].masks(0, 1)[0]
    removed_mask = session.tracking.objects[first].masks(0, 1)[0]
    changed = np.any(shown != untinted, axis=-1)
    near_click = np.zeros_like(changed)
    for x, y in ((20, 20), (60, 60)):  # _prepared's click and this test's
        near_click[y - 12:y + 13, x - 12:x + 13] = True
    assert (removed_mask & ~kept_mask & ~near_click).any()  # the old code tinted these
    assert not (changed & ~kept_mask & ~near_click).any()


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_generating_again_reuses_the_video_features(app, clip, monkeypatch) -> None:
    """A second Generate of the same objects with another seed, guidance and steps runs
    neither CLIP's image encoder nor the Synchformer: the engine keeps their features (most
    of a generation's time on a CPU); another object is computed."""
    from tests.soundtrack.test_feature_cache import Counts

    handlers, engine = app.handlers, app.handlers.engine
    _prepared(handlers, clip, "tab1")
    counts = Counts(monkeypatch, engine.models())
    handlers.generate(0.0, request(), Recorder(), **options(1.0, steps=1))
    images, clips = counts.take()
    assert images > 0 and clips > 0
    # start, duration, end, cfg, steps, seed, variant, original sound, pan, sound files
    again = options(1.0, steps=2, cfg=2.0, seed=11)
    handlers.generate(0.0, request(), Recorder(), **again)
    assert counts.take() == (0, 0)
    handlers.add_object(0.0, request())
    handlers.click(False, 0.0, select(60, 60), request())
    handlers.generate(0.0, request(), Recorder(), **again)
    assert counts.take() == (0, clips)  # the new object's windows only


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_the_sound_options_reach_the_files(app, scene, tmp_path) -> None:
    """The page's *original sound* box: the downloaded MP4 ends with the video's own sound
    as a track titled ``original sound``; its *stereo mix* box: the mix is stereo (the MP4's
    first track and the mix's file); *WAV*: the sound files are WAV; *sample rate*: every file
    is at that rate. Unticked, none."""
    from tests.videos import read_audio

    seconds = scene.duration
    t = np.arange(round(seconds * 44100)) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    video = write_video(tmp_path / "with_sound.mp4", (image for image, _ in scene.frames()),
                        fps=scene.fps, audio=tone)
    handlers, page = app.handlers, app.page
    _prepared(handlers, video, "tab1")
    for ticked in (False, True):
        rate = 48000 if ticked else 44100
        chosen = options(1.0, steps=1, original_sound=ticked, pan=ticked,
                         audio_format="wav" if ticked else "flac", sample_rate=rate)
        updates = handlers.generate(0.0, request(), Recorder(), **chosen)
        files = [Path(p) for p in updates[page.downloads]]
        (mp4,) = [p for p in files if p.suffix == ".mp4"]
        with av.open(str(mp4)) as container:
            titles = [s.metadata.get("handler_name") for s in container.streams.audio]
            channels = container.streams.audio[0].channels
            assert {s.rate for s in container.streams.audio} == {rate}
            last = np.concatenate([f.to_ndarray()[0] for f in container.decode(
                container.streams.audio[len(titles) - 1])])
        assert (titles[-1] == "original sound") == ticked
        assert titles.count("original sound") == int(ticked)
        # The tone (RMS 0.35), not the random weights' noise.
        level = np.sqrt(np.mean(last[: round(0.9 * rate)] ** 2))
        assert (abs(level - 0.5 / np.sqrt(2)) < 0.05) == ticked
        (mix,) = [p for p in files if p.name == f"{video.stem}.{'wav' if ticked else 'flac'}"]
        assert channels == read_audio(mix)[0].shape[0] == (2 if ticked else 1)
        assert read_audio(mix)[1] == rate


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a running app
def test_prompt_options_reach_the_request(app, clip) -> None:
    """*Negative prompts from the other objects* and *generate where hidden* become the
    request's ``negatives_from_others`` and ``silence_hidden``: the files record the others'
    prompts as each object's negative prompt, and the page's command says ``--keep_hidden``.
    Unticked, neither."""
    import shlex

    from saganet.soundtrack.settings import read_settings

    handlers, page = app.handlers, app.page
    _prepared(handlers, clip, "prompts")
    handlers.add_object(0.0, request("prompts"))
    handlers.click(False, 0.0, select(60, 30), request("prompts"))
    prompts = ["drum", "violin"]
    for index, prompt in enumerate(prompts):
        handlers.edit_prompt(prompt, index, request("prompts"))
    for ticked in (False, True):
        updates = handlers.generate(0.0, request("prompts"), Recorder(),
                                    **options(1.0, steps=1, negatives_from_others=ticked,
                                              keep_hidden=ticked))
        mix = next(Path(p) for p in updates[page.downloads] if p.endswith(".flac")
                   and Path(p).stem == clip.stem)
        record = read_settings(mix)
        negatives = [o["negative_prompt"] for o in record["objects"]]
        assert negatives == (prompts[::-1] if ticked else ["", ""])
        assert record["silence_hidden"] is not ticked
        assert ("--keep_hidden" in shlex.split(updates[page.command])) == ticked


def test_the_page_s_command_line_makes_the_same_sound(app, clip, sam2_folder, weights_dir,
                                                      tmp_path) -> None:
    """After Generate the page shows the ``demo.py`` command the results record; run with the
    tracker's folder and the video's path put in, it writes the app's mix to the bit (one
    library path, one result). A new video clears it."""
    import shlex

    import demo
    from tests.videos import read_audio

    handlers, page = app.handlers, app.page
    _prepared(handlers, clip, "cmd")
    rate = 48000
    updates = handlers.generate(0.0, request("cmd"), Recorder(),
                                **options(1.0, steps=2, pan=True, sample_rate=rate))
    command = shlex.split(updates[page.command])
    assert command[:2] == ["python", "demo.py"]
    arguments = command[2:]
    assert arguments[arguments.index("--sample_rate") + 1] == str(rate)
    assert "--pan" in arguments and "--click" in arguments
    # Recorded by name: the run gives the places.
    arguments[arguments.index("--video") + 1] = str(clip)
    assert arguments[arguments.index("--segment_model") + 1] == Path(sam2_folder).name
    arguments[arguments.index("--segment_model") + 1] = str(sam2_folder)
    out = tmp_path / "cli"
    assert demo.main([*arguments, "--weights_dir", str(weights_dir), "--output", str(out),
                      "--skip_video_composite"]) == 0
    np.testing.assert_array_equal(read_audio(out / f"{clip.stem}.flac")[0],
                                  read_audio(Path(updates[page.mix]["value"]))[0])
    assert handlers.upload(str(clip), request("cmd"))[page.command] == ""
