"""What the page's events do: load a video, scrub, click, edit objects, track, generate.

Each handler finds the visitor's :class:`~saganet.app.session.Session` by Gradio's session
hash, does its work through the session and the :class:`~saganet.app.engine.Engine`, and
returns updates for the components of :class:`~saganet.app.layout.Page` (as a dict). A bad
input (:class:`~saganet.errors.UserInputError`) becomes a message in the page (a toast and the
status line), never a stack trace, and the app goes on serving.

Track and Generate work on a copy of the session's objects, so the visitor can go on scrubbing
and clicking while the models run. They run as the session's job, in a run folder of their
own: closing the tab or pressing Stop cancels it (:class:`~saganet.cancel.CancelledError` at
its next safe point), its run's files are removed and the event ends with a status line; the
page's last results, and their files, stay until a later job succeeds. A Track or Generate
still waiting for the models (another tab's job has them) has its token already, from the
event's validator, which Gradio runs as it queues the event: Stop cancels it there, and has
the page drop the event from the queue, so that it starts nothing.

Annotations here are evaluated (no ``from __future__ import annotations``): Gradio reads them
to pass ``gr.Request`` and ``gr.SelectData``.
"""

import copy
import functools
import html
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from saganet.app.engine import (
    DOWNLOADING,
    Engine,
    Progress,
    Soundtrack,
    check_objects,
    check_output_names,
    tracking_range,
)
from saganet.app.example import load_example
from saganet.app.frames import object_color, render_frame
from saganet.app.limits import Limits
from saganet.app.objects import AppObject
from saganet.app.options import GenerationOptions
from saganet.app.session import PREVIEW, RESULTS, Session, Sessions
from saganet.app.spectrogram import write_spectrogram
from saganet.cancel import CancelledError, CancelToken
from saganet.commands.settings import remake_command
from saganet.errors import UserInputError
from saganet.pipeline import pipeline_variant
from saganet.segment.grid import GRID_FPS
from saganet.segment.prompts import ObjectPrompt
from saganet.segment.tracking import Tracking
from saganet.soundtrack.settings import read_settings

if TYPE_CHECKING:
    from saganet.app.layout import Page

log = logging.getLogger(__name__)

Updates = dict[Any, Any]

STOPPED_ON_REQUEST = "stopped on request"
STOPPED_WAITING = "stopped on request before it started"
# The kinds of job, as a visitor reads them: each has its event, and its token while the event
# waits in Gradio's queue (Session.waiting).
TRACKING, GENERATION = "tracking", "generation"
# The example button waits in the models' queue too (it may make or fetch the example), so Stop
# reaches it the same way; it is no job (it runs nothing that could be stopped midway).
EXAMPLE = "example"
# The folder of a run that holds Generate's files (the stems, the mix, the MP4).
OUTPUTS = "out"


@dataclass(frozen=True)
class Job:
    """What one Track or Generate works on (taken from the session when it starts).

    Args:
        video: the video.
        options: the job's options.
        objects: copies of the session's objects.
        originals: the session's objects themselves (the tracking is theirs).
        prompts: their tracking prompts.
        track_range: seconds to track.
        run: the folder of the job's files.
        tracking: the session's tracking, if it fits these prompts and seconds.
        cancel: stops the job (Stop, or the tab closed).
    """

    video: Path
    options: GenerationOptions
    objects: list[AppObject]
    originals: tuple[AppObject, ...]
    prompts: tuple[ObjectPrompt, ...]
    track_range: tuple[float, float]
    run: Path
    tracking: Tracking | None
    cancel: CancelToken


def user_message(err: UserInputError) -> str:
    """An error as a visitor reads it: a file by its name, not by its path on the server (the
    session's temporary folder, or Gradio's, means nothing to them and is not theirs to see)."""
    return err.problem if err.path is None else f"{Path(err.path).name}: {err.problem}"


def tell(problem: str) -> None:
    """Show a message in the page (a toast; HTML in it is shown as text)."""
    gr.Warning(html.escape(problem), title="Error")


def page_errors(handler: Callable[..., Updates]) -> Callable[..., Updates]:
    """Turn a user error into a message in the page and the status line, and a stopped job
    into a status line. The event still ends normally: an error raised to Gradio would paint
    "Error" over every output."""

    @functools.wraps(handler)
    def wrapper(self: "Handlers", *args: Any, **kwargs: Any) -> Updates:
        try:
            return handler(self, *args, **kwargs)
        except UserInputError as err:
            log.info("user error: %s", err)
            tell(user_message(err))
            return {self.page.status: f"**Error:** {html.escape(user_message(err))}"}
        except CancelledError as err:
            return {self.page.status: f"**Stopped:** {html.escape(err.reason)}."}

    return wrapper


def gradio_progress(progress: gr.Progress) -> Progress:
    """Engine progress -> the page's progress bar (one bar per stage; a download's names its
    file and counts MB)."""
    names = {"loading": "loading the model", "tracking": "tracking",
             "features": "features", "sampling": "sampling", "decoding": "decoding",
             "writing": "writing files"}

    def report(stage: str, done: int, total: int) -> None:
        unit = "MB" if stage.startswith(f"{DOWNLOADING} ") else "step"
        # A download of unknown size (total 0) shows how much has arrived.
        progress((done, max(total, done, 1)), desc=names.get(stage, stage), unit=unit)

    return report


class Handlers:
    """The page's event handlers.

    Args:
        page: the page's components (outputs are keyed by them).
        engine: the shared models.
        sessions: the visitors' sessions.
        limits: what the app accepts.
    """

    def __init__(self, page: "Page", engine: Engine, sessions: Sessions, limits: Limits) -> None:
        self.page = page
        self.engine = engine
        self.sessions = sessions
        self.limits = limits

    def session(self, request: gr.Request | None) -> Session:
        """The session of the tab that sent ``request``."""
        return self.sessions.get(None if request is None else request.session_hash)

    # Page parts

    def _frame(self, session: Session, time_s: float | None) -> Updates:
        grid = session.require_grid()
        slot = session.slot(time_s or 0.0)
        image, view = render_frame(grid, slot, session.objects, session.tracking,
                                   session.current, tracked_names=[
                                       session.tracked_name(o) for o in session.objects])
        session.view = view
        return {self.page.frame: image}

    def _frame_if_loaded(self, session: Session, time_s: float | None) -> Updates:
        """The frame at ``time_s`` when a video is loaded (object edits need none)."""
        return {} if session.grid is None else self._frame(session, time_s)

    def _object_choice(self, session: Session) -> Updates:
        choices = [(o.name or f"({k + 1})", k) for k, o in enumerate(session.objects)]
        return {self.page.object_choice: gr.update(choices=choices, value=session.current)}

    def _objects(self, session: Session) -> Updates:
        page, current = self.page, session.current_object()
        return {
            **self._object_choice(session),
            page.name: current.name, page.prompt: current.prompt,
            page.negative_prompt: current.negative_prompt, page.phrase: current.text,
            page.objects_table: objects_table(session),
        }

    def _no_results(self) -> Updates:
        page = self.page
        updates: Updates = {page.mix: None, page.mix_spectrogram: None, page.downloads: None,
                            page.command: "", page.preview: None, page.tracking_summary: ""}
        for row, audio, image in zip(page.stem_rows, page.stems, page.stem_spectrograms,
                                     strict=True):
            updates |= {row: gr.update(visible=False), audio: None, image: None}
        return updates

    def _loaded(self, session: Session, message: str) -> Updates:
        info = session.info
        last = (session.require_grid().index.num_slots - 1) / GRID_FPS
        video_info = (f"**{session.video.name}**: {info.width}x{info.height}, "
                      f"{session.duration:.2f} s")
        return {
            self.page.time: gr.update(minimum=0, maximum=max(last, 1 / GRID_FPS), value=0),
            self.page.video_info: video_info, self.page.status: message,
            **self._frame(session, 0.0), **self._objects(session), **self._no_results(),
        }

    # Loading a video

    def upload(self, path: str | None, request: gr.Request) -> Updates:
        """A video was uploaded. A rejected file is removed from the upload box (with a
        message), so that another can be dropped in; the session keeps its video."""
        session = self.session(request)
        try:
            if not path:
                raise UserInputError("no file arrived; upload a video file")
            with session.lock:
                session.check_idle()
                session.load_video(Path(path), self.limits)
                return self._loaded(session, "Video loaded. Click on an object in the frame "
                                             "(scrub with the time slider to find it).")
        except UserInputError as err:
            log.info("user error: %s", err)
            tell(user_message(err))
            return {self.page.upload: None if session.video is None else str(session.video),
                    self.page.status: f"**Not loaded:** {html.escape(user_message(err))}"}
        except CancelledError:
            return {}  # the tab was closed

    @page_errors
    def example(self, request: gr.Request) -> Updates:
        """The example button: the example video with its objects clicked (nothing, if Stop
        was pressed while the event waited in the models' queue)."""
        session = self.session(request)
        with session.lock:
            session.take_token(EXAMPLE)
        settings = self.engine.settings
        example, objects = load_example(pipeline_variant(settings.variant).debug,
                                        settings.weights_dir, settings.offline)
        with session.lock:
            session.check_idle()
            session.load_video(example.video, self.limits,
                               objects=objects[: self.limits.max_objects])
            updates = self._loaded(session, "The example is loaded with one click per "
                                            "object: press Generate, or add clicks first.")
        return {**updates, self.page.upload: str(session.video)}

    # Frames and clicks

    @page_errors
    def scrub(self, time_s: float | None, request: gr.Request) -> Updates:
        """The time slider moved: show that frame."""
        session = self.session(request)
        with session.lock:
            if session.grid is None:
                return {}
            return self._frame(session, time_s)

    @page_errors
    def click(self, negative: bool, time_s: float | None, event: gr.SelectData,
              request: gr.Request) -> Updates:
        """A click on the frame: a point of the current object at the shown frame's time."""
        session = self.session(request)
        with session.lock:
            session.require_grid()
            view = session.view
            if view is None or event.index is None:
                raise UserInputError("click inside the frame")
            x, y = view.to_video(float(event.index[0]), float(event.index[1]))
            obj = session.current_object()
            self.limits.check_clicks(obj, adding=1)
            click = session.add_click(x, y, view.slot / GRID_FPS, positive=not negative)
            updates = self._frame(session, view.slot / GRID_FPS)
        return {**updates, self.page.objects_table: objects_table(session),
                self.page.status: f"{obj.name}: click {click}."}

    # Objects

    @page_errors
    def choose_object(self, index: int | None, time_s: float | None,
                      request: gr.Request) -> Updates:
        """Another object was chosen: show its fields (and its clicks larger)."""
        session = self.session(request)
        with session.lock:
            if index is not None:
                session.current = int(index)
            return self._objects(session) | self._frame_if_loaded(session, time_s)

    @page_errors
    def add_object(self, time_s: float | None, request: gr.Request) -> Updates:
        """A new object becomes the current one."""
        session = self.session(request)
        with session.lock:
            session.require_grid()
            obj = session.add_object(self.limits)
            return {**self._objects(session), **self._frame(session, time_s),
                    self.page.status: f"Added {obj.name}: click on it in the frame."}

    @page_errors
    def remove_object(self, time_s: float | None, request: gr.Request) -> Updates:
        """The current object goes (the last one is emptied instead)."""
        session = self.session(request)
        with session.lock:
            session.remove_object()
            return self._objects(session) | self._frame_if_loaded(session, time_s)

    @page_errors
    def clear_clicks(self, time_s: float | None, request: gr.Request) -> Updates:
        """The current object's clicks go."""
        session = self.session(request)
        with session.lock:
            obj = session.current_object()
            obj.clicks.clear()
            return {self.page.objects_table: objects_table(session),
                    self.page.status: f"{obj.name}: clicks cleared.",
                    **self._frame_if_loaded(session, time_s)}

    def _edit(self, field: str, value: str | None, index: int | None,
              request: gr.Request) -> Updates:
        """Set a field of the object the page showed when it was edited (``index``: the
        object choice then; the current object may have changed since)."""
        session = self.session(request)
        with session.lock:
            target = (session.objects[index] if index is not None
                      and 0 <= index < len(session.objects) else session.current_object())
            setattr(target, field, (value or "").strip())
            return {**self._object_choice(session),
                    self.page.objects_table: objects_table(session)}

    @page_errors
    def edit_name(self, value: str | None, index: int | None, request: gr.Request) -> Updates:
        return self._edit("name", value, index, request)

    @page_errors
    def edit_prompt(self, value: str | None, index: int | None, request: gr.Request) -> Updates:
        return self._edit("prompt", value, index, request)

    @page_errors
    def edit_negative_prompt(self, value: str | None, index: int | None,
                             request: gr.Request) -> Updates:
        return self._edit("negative_prompt", value, index, request)

    @page_errors
    def edit_phrase(self, value: str | None, index: int | None, request: gr.Request) -> Updates:
        return self._edit("text", value, index, request)

    # Tracking and generation

    def _options(self, values: dict[str, Any]) -> GenerationOptions:
        """The advanced options' fields (by :class:`GenerationOptions` field name) as options;
        the page's number fields show 0 for "not given" (to the end; no end)."""
        blank = {name: values[name] or None for name in ("duration", "end") if name in values}
        options = GenerationOptions.from_values(**{**values, **blank})
        options.check(self.limits)
        log.info("options: %s", options)
        return options

    def _tracking_view(self, session: Session, tracking: Tracking, time_s: float | None,
                       run: Path) -> Updates:
        """The preview video and summary of a new tracking."""
        preview = run / "tracking_preview.mp4"
        tracking.write_preview(preview, overwrite=True)
        return {self.page.preview: str(preview),
                self.page.tracking_summary: tracking_summary(tracking),
                self.page.objects_table: objects_table(session), **self._frame(session, time_s)}

    @contextmanager
    def _job(self, session: Session, kind: str, values: dict[str, Any]) -> Iterator[Job]:
        """Take what a Track or Generate needs from the session (a copy: the visitor may go
        on scrubbing and clicking meanwhile) and make it the session's job until it ends.

        First of all, under the session's lock, the event takes the token it got when Gradio
        queued it: a *Stop* pressed while it waited has cancelled it, and it starts nothing;
        a *Stop* pressed from here on finds the running job. A job that fails or is stopped
        removes its own run folder (all of the session's, if its tab was closed), not those
        of the results the page still shows; one that succeeds says what the page shows of it
        (:meth:`Session.show_run`) before it ends. A Track checks here the names of the files
        a Generate of these objects would write (a Generate's own check is the engine's,
        before its tracking): a name too long for the file system is refused before any
        tracking, not after it.

        Args:
            session: the visitor's session.
            kind: :data:`TRACKING` or :data:`GENERATION`.
            values: the advanced options' fields, by option name.

        Raises:
            UserInputError: bad options, or objects (or their names) that cannot be tracked or
                generated.
            CancelledError: *Stop* was pressed, or the tab closed, before or while the job ran.
        """
        with session.lock:
            cancel = session.take_token(kind)
            options = self._options(values)
            session.check_open()
            session.require_grid()
            session.check_no_job()
            objects = copy.deepcopy(session.objects)
            self.limits.check_objects(len(objects))
            check_objects(objects)
            start, end = tracking_range(objects, options, session.duration)
            prompts = tuple(o.tracking_prompt() for o in objects)
            if kind == TRACKING:
                check_output_names(session.video, objects, session.next_run / OUTPUTS)
            run = session.new_run()
            session.start_job(cancel)
            job = Job(session.video, options, objects, tuple(session.objects), prompts,
                      (start, end), run, session.tracking_for(prompts, start, end), cancel)
        try:
            yield job
        except BaseException:
            session.drop_run(job.run)
            raise
        finally:
            self.sessions.job_ended(session)

    @page_errors
    def track(self, time_s: float | None, request: gr.Request,
              progress=gr.Progress(),  # noqa: B008 (Gradio's way to ask for it)
              **options: Any) -> Updates:
        """The Track button: track every object, show the overlay video and visible times
        (``options``: the advanced options' fields, by option name)."""
        session = self.session(request)
        began = time.perf_counter()
        with self._job(session, TRACKING, options) as job:
            tracking = self.engine.track(job.video, job.objects, *job.track_range,
                                         progress=gradio_progress(progress),
                                         cancel=job.cancel)
            with session.lock:
                updates = {}
                if session.video == job.video:
                    session.keep_tracking(tracking, job.prompts, job.originals)
                    updates = self._tracking_view(session, tracking, time_s, job.run)
                    session.show_run(job.run, [PREVIEW])
        took = time.perf_counter() - began
        return {**updates, self.page.status: f"Tracked {len(job.objects)} object(s) in "
                                              f"{took:.1f} s. Add a click to correct, or press "
                                              "Generate."}

    @page_errors
    def generate(self, time_s: float | None, request: gr.Request,
                 progress=gr.Progress(),  # noqa: B008 (Gradio's way to ask for it)
                 **options: Any) -> Updates:
        """The Generate button: track (if needed) and generate, then players and downloads
        (``options`` as for :meth:`track`)."""
        session = self.session(request)
        began = time.perf_counter()
        with self._job(session, GENERATION, options) as job:
            made = self.engine.soundtrack(job.video, job.objects, job.options, job.run / OUTPUTS,
                                          job.track_range, tracking=job.tracking,
                                          progress=gradio_progress(progress),
                                          cancel=job.cancel)
            with session.lock:
                updates: Updates = {}
                shown = [RESULTS]
                if made.tracking is not job.tracking and session.video == job.video:
                    session.keep_tracking(made.tracking, job.prompts, job.originals)
                    updates = self._tracking_view(session, made.tracking, time_s, job.run)
                    shown.append(PREVIEW)
                updates |= self._results(made, job.run)
                session.show_run(job.run, shown)
        took = time.perf_counter() - began
        return {**updates, self.page.status: generation_summary(made, took)}

    def queued(self, kind: str) -> Callable[..., list[dict[str, Any]]]:
        """The validator of the ``kind`` event (Track, Generate or the example), which gives
        the event its token (:meth:`Session.job_queued`) as Gradio puts it in its queue.

        Gradio runs an event's validator when it is about to queue that event, and only then
        (not for a click it ignores because the last one still waits, nor for inputs it
        refuses): a token is made for each event queued, and for nothing else. One made when
        the handler starts would come too late for a *Stop* pressed while the event waits for
        another tab's job. Every input is declared valid: the handler checks them.
        """

        # The request first: Gradio passes it to a positional parameter annotated with it.
        # Track and Generate also pass their options by name.
        def validator(request: gr.Request, *values: Any, **options: Any
                      ) -> list[dict[str, Any]]:
            self.session(request).job_queued(kind)
            return [gr.validate(True, "") for _ in [*values, *options.values()]]

        return validator

    @page_errors
    def stop(self, request: gr.Request) -> Updates:
        """The Stop button: the tab's running Track or Generate stops at its next safe point
        (as when the tab closes), and its event then says so in the status line (Stop shows
        only a message meanwhile); one waiting in Gradio's queue starts nothing, and the
        example waiting there loads nothing.

        The page also drops a stopped waiting event from the queue: the update of its
        :attr:`~saganet.app.layout.Page.stop_waiting` state fires that state's change event,
        which cancels the event in the page (Gradio takes it out of its queue, and its
        button works again at once). Only the waiting ones: a running event cancelled that
        way would lose its status line and free the models' queue slot while it still ran.
        """
        session = self.session(request)
        with session.lock:
            running = session.stop_job(STOPPED_ON_REQUEST)
            waiting = session.stop_waiting(STOPPED_WAITING)
        # Any new value fires the change event.
        updates: Updates = {self.page.stop_waiting[kind]: time.monotonic_ns()
                            for kind in waiting}
        held = [_held(waiting)] if waiting else []
        if running:
            # The status line is the running job's: its event writes "Stopped" when it ends,
            # often before this event's own update reaches the page. A line written here too
            # could arrive last and stay ("Stopping..." under a job long stopped).
            gr.Info("; ".join(["Stopping at the next safe point", *held]) + ".",
                    title="Stop")
            return updates
        message = (f"**Stopped:** {held[0]}." if held
                   else "Nothing to stop: no tracking or generation is running or waiting.")
        return {**updates, self.page.status: message}

    def _results(self, made: Soundtrack, run: Path) -> Updates:
        page = self.page
        outputs = made.result.outputs
        seconds = made.duration
        updates: Updates = {
            page.mix: gr.update(value=str(outputs.mix), label="Mix" if len(made.stems) > 1
                                else f"Mix (= {next(iter(made.stems))})"),
            page.mix_spectrogram: str(write_spectrogram(outputs.mix, run / "spectrogram_mix.png",
                                                        seconds)),
            page.downloads: [str(p) for p in outputs.all()],
            page.command: _command(outputs.mix),
        }
        stems = list(made.stems.items())
        for k, (row, audio, image) in enumerate(zip(page.stem_rows, page.stems,
                                                    page.stem_spectrograms, strict=True)):
            if k >= len(stems):
                updates |= {row: gr.update(visible=False), audio: None, image: None}
                continue
            name, path = stems[k]
            picture = write_spectrogram(path, run / f"spectrogram_{k}.png", seconds)
            updates |= {row: gr.update(visible=True),
                        audio: gr.update(value=str(path), label=name),
                        image: gr.update(value=str(picture), label=f"{name}: spectrogram")}
        return updates


def _command(mix: Path) -> str:
    """The ``demo.py`` command that makes the results again, from what the mix records; or
    why there is none."""
    try:
        record = read_settings(mix)
        if record is None:
            return "# the files record no settings"
        return remake_command(record)
    except UserInputError as err:
        return f"# no demo.py command makes this again: {err}"


def _held(kinds: list[str]) -> str:
    """What Stop stopped in line, as the status line says it."""
    jobs = [kind for kind in kinds if kind != EXAMPLE]
    parts = [f"the {' and the '.join(jobs)} waiting in line will not start"] if jobs else []
    if EXAMPLE in kinds:
        parts.append("the example waiting in line will not load")
    return " and ".join(parts)


def _swatch(index: int) -> str:
    red, green, blue = object_color(index)
    return f'<span style="color: rgb({red}, {green}, {blue})">&#9632;</span>'


def objects_table(session: Session) -> str:
    """The objects as a Markdown table: colour, name, prompts, clicks, visible times."""
    if not session.objects:
        return "No object yet."
    rows = ["| | object | prompt | negative prompt | clicks / phrase | visible |",
            "|---|---|---|---|---|---|"]
    tracking = session.tracking
    for k, obj in enumerate(session.objects):
        marker = "**&#9654;**" if k == session.current else ""
        how = "; ".join(str(c) for c in obj.clicks) or "(no click yet)"
        if obj.text:
            how = f'"{html.escape(obj.text)}"' + ("" if not obj.clicks else f"; {how}")
        visible = ""
        tracked = session.tracked_name(obj)
        if tracking is not None and tracked is not None:
            spans = tracking.spans(tracked)
            visible = ", ".join(f"{s.start:.2f}-{s.end:.2f} s" for s in spans) or "not found"
        cells = [f"{marker} {_swatch(k)}", html.escape(obj.name), html.escape(obj.prompt),
                 html.escape(obj.negative_prompt), how, visible]
        rows.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(rows)


def tracking_summary(tracking: Tracking) -> str:
    """Each object's visible time, one line each."""
    first, stop = tracking.first / GRID_FPS, tracking.stop / GRID_FPS
    lines = [f"Tracked {first:.2f}-{stop:.2f} s:"]
    lines += [f"- {line}" for line in tracking.summary()]
    return "\n".join(lines)


def generation_summary(made: Soundtrack, took: float) -> str:
    """What was generated, in a few words."""
    result = made.result
    parts = [f"Generated {made.duration:.2f} s of sound for {len(made.stems)} object(s) with "
             f"{made.variant} in {took:.1f} s."]
    for name, spans in result.silenced.items():
        where = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in spans)
        parts.append(f"{name} is not visible at {where}: silent there.")
    if result.mix_level is not None and result.mix_level.gain < 1:
        parts.append(f"The mix was turned down to {result.mix_level.gain:.2f}x to stay below "
                     "clipping.")
    return " ".join(parts)
