"""The app in a real browser: headless Chromium from Debian's packages (``chromium``), driven by
Playwright for Python against the app served in-process on 127.0.0.1 (debug weights, tiny
random trackers).

The scenario of a visitor: a click before any video, a file that is not a video and Generate
before any click (each a message in the page, and the page goes on working); upload the duet,
scrub to a second, click on the violin (found from its mask video: the page must record the
click on the violin, in the video's pixels), name and prompt it, choose a short duration and
few steps, track (overlay video, visible time), generate (the progress bar goes through the
stages); both players hold sound of the chosen length, the FLAC downloads, and closing the tab
removes the session's files. Then Stop, and closing the tab, during a generation: it stops
after its next Euler step (the engine's log says where), and the closed tab leaves no file.
Screenshots of every stage go into ``$SAGANET_TEST_ARTIFACTS`` (default: a pytest temporary
folder; the path is printed); ``$SAGANET_APP_SCREENSHOT`` names a file that also gets the
finished page (the README's picture, ``docs/images/app.png``).

Playwright's own browser download cannot work offline, so the test uses Debian's binary
(``apt-get install chromium``; ``.ci/run`` installs it). Without it the test skips, except
under CI, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pytest
from scipy import ndimage

from saganet.media.video import SYNC_FPS, probe_video, read_frames
from tests.shared import DUET, VIOLIN, in_ci, need

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("SAGANET_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 900}
# Seconds of the duet to generate, sampler steps, and the second the violin is clicked at.
SECONDS, STEPS, CLICK_AT = 2.0, 2, 1.0
# Width of the README's picture.
README_WIDTH = 1000
# Where a click lands in the shown frame, as Gradio computes it: the image is fitted into its
# box (never enlarged), centred, and the click's offset divided by the scale, then rounded.
IMAGE_BOX = """img => { const r = img.getBoundingClientRect();
  return {left: r.left, top: r.top, width: r.width, height: r.height,
          nw: img.naturalWidth, nh: img.naturalHeight}; }"""


# Records every text the progress trackers show (stages can pass faster than a poll).
RECORD_PROGRESS = """() => { window.progressSeen = [];
  new MutationObserver(() => document.querySelectorAll('[data-testid=status-tracker]')
    .forEach(e => { const t = e.innerText.trim(); if (t) window.progressSeen.push(t); }))
  .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""


def _require(what: str, ok: bool) -> None:
    if ok:
        return
    if in_ci():
        pytest.fail(f"{what} (CI must run the browser test: see .ci/run)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium in a new, empty profile."""
    _require(f"no Chromium at {CHROMIUM} (apt-get install chromium)", CHROMIUM.is_file())
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("playwright is not installed (pip install -r requirements-dev.txt)", False)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport=VIEWPORT, accept_downloads=True)
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("SAGANET_TEST_ARTIFACTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser test screenshots: {folder}")
    return folder


def violin_point(seconds: float) -> tuple[float, float]:
    """The pixel deepest inside the violin's mask at ``seconds`` (pixels of the video)."""
    info = probe_video(VIOLIN)
    mask = read_frames(VIOLIN, SYNC_FPS, (info.height, info.width), gray=True, start=seconds,
                       end=seconds + 1 / SYNC_FPS)[0, 0].numpy() > 127
    depth = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return float(x), float(y)


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert container.format.name == "flac"
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def clock(seconds: float) -> str:
    """A duration as the audio player shows it (m:ss)."""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def wait_text(page, selector: str, text: str, timeout: float = 60) -> None:
    page.wait_for_function(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        f" return e && e.innerText.includes({json.dumps(text)}); }})()",
        timeout=timeout * 1000)


def click_until_queued(page, button: str, timeout: float = 60) -> None:
    """Click ``button`` until its event waits in line. Right after Stop has the page drop an
    event from the queue, the page may still hold it as pending for a moment and ignore the
    click (as it ignores any click on a button whose event waits); a repeated click is
    ignored the same way once one is accepted, so at most one event is queued."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    deadline = time.monotonic() + timeout
    while True:
        page.locator(button).click()
        try:
            wait_text(page, "#status", "queue", timeout=5)
            return
        except PlaywrightTimeoutError:
            if time.monotonic() > deadline:
                raise


def close_and_check_gone(page, server, seconds: float) -> None:
    """Close the tab; within ``seconds`` its session ends and leaves no files."""
    page.close()
    deadline = time.monotonic() + seconds
    while len(server.sessions) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(server.sessions) == 0
    assert not [p for p in server.sessions.root.iterdir() if p.name != "api-calls"]


def set_options(page, fields: dict[str, float]) -> None:
    """Type each number into its field (selector -> value) and check the page kept it."""
    for selector, value in fields.items():
        page.locator(selector).fill(f"{value:g}")
        page.locator(selector).press("Tab")
    page.wait_for_timeout(500)
    for selector, value in fields.items():
        assert float(page.locator(selector).input_value()) == value


def wait_message(page, text: str) -> None:
    """A message (toast) with ``text`` shows in the page; it is closed afterwards."""
    toast = page.locator(".toast-body").filter(has_text=text)
    toast.first.wait_for(timeout=30_000)
    toast.first.locator(".toast-close").click()
    toast.first.wait_for(state="detached", timeout=30_000)


def wait_new_frame(page, old: str | None) -> dict:
    """Wait until the frame image changed and is loaded; its box and natural size."""
    page.wait_for_function(
        "(() => { const i = document.querySelector('#frame img');"
        f" return i && i.src != {json.dumps(old)} && i.complete && i.naturalWidth > 0; }})()",
        timeout=60_000)
    return page.locator("#frame img").evaluate(IMAGE_BOX)


def click_video_pixel(page, x: float, y: float, width: int, height: int) -> float:
    """Click where pixel ``(x, y)`` of a ``width`` x ``height`` video is shown; returns how many
    video pixels one screen pixel spans there (the click's precision)."""
    image = page.locator("#frame img")
    image.scroll_into_view_if_needed()
    box = image.evaluate(IMAGE_BOX)
    scale = min(box["width"] / box["nw"], box["height"] / box["nh"], 1)
    left = box["left"] + (box["width"] - box["nw"] * scale) / 2
    top = box["top"] + (box["height"] - box["nh"] * scale) / 2
    page.mouse.click(left + x * box["nw"] / width * scale, top + y * box["nh"] / height * scale)
    return max(width / box["nw"], height / box["nh"]) / scale


def shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / name), full_page=True)


def test_click_the_violin_and_hear_it(chromium, server, artifacts, tmp_path) -> None:
    need(DUET, VIOLIN)
    page = chromium.new_page()
    page.goto(server.url)
    page.locator("#frame img").wait_for()
    # Opened early: fields mounted by opening the accordion take their initial values a
    # moment later, which would undo a change typed at once.
    page.locator("#advanced").get_by_text("Advanced options").click()
    shot(page, artifacts, "01-empty.png")

    # Bad input first: each gives a message in the page, and the page goes on working.
    click_video_pixel(page, 1, 1, 2, 2)  # the middle of the placeholder
    wait_message(page, "load a video first")
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is not a video")
    page.locator("#upload input[type=file]").set_input_files(str(notes))
    wait_message(page, "not a video")
    shot(page, artifacts, "02-not-a-video.png")

    # Upload the duet and scrub to the second where the violin is clicked.
    info = probe_video(DUET)
    old = page.locator("#frame img").get_attribute("src")
    page.locator("#upload input[type=file]").set_input_files(str(DUET))
    wait_text(page, "#video-info", f"{info.width}x{info.height}")
    wait_new_frame(page, old)
    page.locator("#generate").click()
    wait_message(page, "no click yet")
    old = page.locator("#frame img").get_attribute("src")
    number = page.locator("#time input[type=number]")
    number.fill(f"{CLICK_AT:g}")
    number.press("Enter")
    wait_new_frame(page, old)
    shot(page, artifacts, "03-loaded.png")

    # Click on the violin; the page records it in the video's pixels.
    x, y = violin_point(CLICK_AT)
    precision = click_video_pixel(page, x, y, info.width, info.height)
    wait_text(page, "#objects", f" at {CLICK_AT:.2f} s")
    cell = page.locator("#objects td").filter(has_text=" at ").first.inner_text()
    got_x, got_y = (float(v) for v in cell.split(" at ")[0].split(","))
    assert abs(got_x - x) <= precision + 1 and abs(got_y - y) <= precision + 1
    mask = read_frames(VIOLIN, SYNC_FPS, (info.height, info.width), gray=True, start=CLICK_AT,
                       end=CLICK_AT + 1 / SYNC_FPS)[0, 0].numpy()
    assert mask[round(got_y), round(got_x)] > 127  # on the violin
    page.locator("#object-name textarea").fill("violin")
    page.locator("#object-prompt textarea").fill("violin")
    wait_text(page, "#objects", "violin")
    shot(page, artifacts, "04-clicked.png")

    # Short and fast: the advanced options (opened at the start); the files at video's 48 kHz.
    set_options(page, {"#opt-duration input": SECONDS, "#opt-steps input": STEPS})
    rate = 48000
    page.locator("#opt-sample-rate input").click()
    page.get_by_role("option", name=str(rate), exact=True).click()
    assert page.locator("#opt-sample-rate input").input_value() == str(rate)

    # Track: the overlay video and the violin's visible time.
    page.locator("#track").click()
    wait_text(page, "#tracking-summary", "violin: visible", timeout=300)
    assert f"Tracked 0.00-{SECONDS:.2f} s" in page.locator("#tracking-summary").inner_text()
    page.locator("#preview video").wait_for()
    shot(page, artifacts, "05-tracked.png")

    # Generate: a progress bar through the stages, then players, spectrograms, downloads.
    page.evaluate(RECORD_PROGRESS)
    page.locator("#generate").click()
    page.wait_for_function("window.progressSeen.some(t => t.includes('sampling'))",
                           timeout=300_000)
    shot(page, artifacts, "06-generating.png")
    wait_text(page, "#status", "Generated", timeout=300)
    assert f"Generated {SECONDS:.2f} s" in page.locator("#status").inner_text()
    seen = " | ".join(page.evaluate("window.progressSeen"))
    for stage in ("features", "sampling", "decoding"):
        assert stage in seen, seen
    for player in ("#mix", "#stem-0"):
        wait_text(page, f"{player} #duration", clock(SECONDS), timeout=60)
        link = page.locator(f"{player} a[download]").first.get_attribute("href")
        sound = tmp_path / f"{player[1:]}.flac"
        sound.write_bytes(page.request.get(link).body())
        assert audio_seconds(sound) == pytest.approx(SECONDS, abs=1e-4)
    page.locator("#mix-spectrogram img").wait_for()
    page.locator("#stem-spectrogram-0 img").wait_for()
    shot(page, artifacts, "07-generated.png")

    flac = page.locator("#downloads a[download$='.flac']").first
    with page.expect_download() as download:
        flac.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"{DUET.stem}.flac"
    assert audio_seconds(saved) == pytest.approx(SECONDS, abs=1e-4)
    with av.open(str(saved)) as container:
        assert container.streams.audio[0].rate == rate
    # The same from the command line: the demo.py command the files record.
    command = page.locator("#command").inner_text()
    assert "python demo.py" in command and f"--sample_rate {rate}" in command, command
    readme_picture(page, artifacts)

    # Closing the tab ends the session: its files go.
    assert len(server.sessions) == 1
    close_and_check_gone(page, server, seconds=30)


def test_stop_and_closing_the_tab_stop_the_generation(chromium, server, monkeypatch,
                                                      caplog) -> None:
    """Generate on the example with the most steps the app allows and press Stop while it
    samples, then generate again and close the tab: each time the engine logs the generation
    stopped after its first Euler step (held there until its token is cancelled, so that the
    click or the close surely lands mid-run), nothing after sampling ran; Stop shows a message
    and the status line says the job stopped (and keeps saying it: Stop's own update used to
    reach the page after the job's and leave "Stopping..."); Stop leaves the page working, the
    close leaves no file."""
    import logging
    import threading

    caplog.set_level(logging.INFO, logger="saganet.app")
    engine, steps = server.engine, server.limits.max_steps
    held, reports = threading.Event(), []
    soundtrack = engine.soundtrack

    def holding(*args, progress, cancel=None, **kwargs):
        def report(stage: str, done: int, total: int) -> None:
            reports.append((stage, done, total))
            progress(stage, done, total)
            if stage == "sampling" and not held.is_set():
                held.set()
                deadline = time.monotonic() + 60
                while not cancel.cancelled and time.monotonic() < deadline:
                    time.sleep(0.02)

        return soundtrack(*args, progress=report, cancel=cancel, **kwargs)

    def stopped_in_sampling(reason: str) -> None:
        sampled = [done for stage, done, _ in reports if stage == "sampling"]
        assert sampled == [1] and reports[-1][0] == "sampling"  # no decoding, no files
        assert {total for stage, _, total in reports if stage == "sampling"} == {steps}
        stopped = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()]
        assert stopped == [f"generation stopped after sampling 1/{steps}: {reason}"]
        reports.clear()
        caplog.clear()
        held.clear()

    monkeypatch.setattr(engine, "soundtrack", holding)
    page = chromium.new_page()
    page.goto(server.url)
    page.locator("#frame img").wait_for()
    page.locator("#advanced").get_by_text("Advanced options").click()
    page.locator("#example").click()
    wait_text(page, "#status", "The example is loaded")
    set_options(page, {"#opt-duration input": 1.0, "#opt-steps input": steps})

    # Stop: its event is not queued behind the generation it stops.
    page.locator("#generate").click()
    assert held.wait(300)
    page.locator("#stop").click()
    wait_message(page, "Stopping at the next safe point")
    wait_text(page, "#status", "Stopped: stopped on request")
    # Nothing of Stop's own overwrites the job's line once it has come.
    page.wait_for_timeout(1000)
    assert "Stopped: stopped on request" in page.locator("#status").inner_text()
    stopped_in_sampling("stopped on request")

    # Close the tab: the job stops, then the tab's files go.
    assert len(server.sessions) == 1
    page.locator("#generate").click()
    assert held.wait(300)
    close_and_check_gone(page, server, seconds=60)
    stopped_in_sampling("the tab was closed")


def test_stop_a_generation_waiting_in_line(chromium, server, monkeypatch) -> None:
    """Two tabs on the example: the first generates (held at its first Euler step until the
    test lets it go on), the second presses the example button, which waits in line for the
    models, then Stop: its status line says the example will not load (it said "Nothing to
    stop", and the example loaded). Then Generate, which waits in line too, then Stop: the
    status line says its generation will not start, and its Generate works again at once;
    that generation waits, then runs to the end after the first tab's, untouched by the
    earlier Stop. The stopped ones never reach their handlers (Gradio dropped them from its
    queue). A Stop with nothing running or waiting says so, and the tabs
    leave no file."""
    import threading

    from saganet.app.session import Session

    engine = server.engine
    soundtrack, take_token = engine.soundtrack, Session.take_token
    held, release = threading.Event(), threading.Event()
    taken, ran = [], []

    def holding(*args, progress, **kwargs):
        first = not ran
        ran.append(kwargs["cancel"])

        def report(stage: str, done: int, total: int) -> None:
            progress(stage, done, total)
            if first and stage == "sampling" and not held.is_set():
                held.set()
                release.wait(300)

        return soundtrack(*args, progress=report, **kwargs)

    def taking(session, kind: str):
        taken.append(kind)
        return take_token(session, kind)

    monkeypatch.setattr(engine, "soundtrack", holding)
    monkeypatch.setattr(Session, "take_token", taking)
    pages = []
    try:
        for _ in range(2):
            page = chromium.new_page()
            page.goto(server.url)
            page.locator("#frame img").wait_for()
            page.locator("#advanced").get_by_text("Advanced options").click()
            page.locator("#example").click()  # in the models' line too: before generating
            wait_text(page, "#status", "The example is loaded")
            set_options(page, {"#opt-duration input": 1.0, "#opt-steps input": 2})
            pages.append(page)
        first, second = pages
        first.locator("#generate").click()
        assert held.wait(300)
        # The example button waits in the same line, and Stop reaches it too.
        second.locator("#example").click()
        wait_text(second, "#status", "queue")
        second.locator("#stop").click()
        wait_text(second, "#status", "Stopped: the example waiting in line will not load")
        second.wait_for_function(
            "!document.querySelector('#status').innerText.includes('queue')", timeout=30_000)
        click_until_queued(second, "#generate")  # its place in line
        second.locator("#stop").click()
        wait_text(second, "#status", "Stopped: the generation waiting in line will not start")
        second.wait_for_function(
            "!document.querySelector('#status').innerText.includes('queue')", timeout=30_000)
        click_until_queued(second, "#generate")
        release.set()
        wait_text(first, "#status", "Generated 1.00 s", timeout=300)
        wait_text(second, "#status", "Generated 1.00 s", timeout=300)
    finally:
        release.set()
    # Each tab's example, the first tab's generation and the second's second one: each took
    # its token and ran (the stopped example and generation never started).
    assert taken == ["example"] * 2 + ["generation"] * 2 and len(ran) == 2
    assert not any(token.cancelled for token in ran)
    second.locator("#stop").click()
    wait_text(second, "#status", "Nothing to stop")
    first.close()
    close_and_check_gone(second, server, seconds=30)


def readme_picture(page, folder: Path) -> None:
    """The finished page, scaled to the README's width (also to $SAGANET_APP_SCREENSHOT)."""
    from PIL import Image

    full = folder / "app-full.png"
    page.screenshot(path=str(full), full_page=True)
    image = Image.open(full)
    height = round(image.height * README_WIDTH / image.width)
    small = image.convert("RGB").resize((README_WIDTH, height), Image.Resampling.LANCZOS)
    small = small.quantize(256, dither=Image.Dither.NONE)  # a third of the size
    targets = [folder / "app.png"]
    if os.environ.get("SAGANET_APP_SCREENSHOT"):
        targets.append(Path(os.environ["SAGANET_APP_SCREENSHOT"]))
    for target in targets:
        small.save(target, optimize=True)
