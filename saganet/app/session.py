"""One visitor's work in the app, and the folders it lives in.

Every browser tab (a Gradio session) gets a :class:`Session`: its own folder under the app's
temporary root, the video it loaded, its objects and its latest tracking. :class:`Sessions`
hands them out by Gradio's session hash and removes a session's folder when its tab closes
(Gradio's ``unload`` event), those idle for too long when a new one starts, and the whole
root when the app closes or the process exits.
An app killed outright (SIGKILL, the OOM killer) cannot: its root is named after its process
(:mod:`saganet.leftovers`), and the next app started removes the roots of apps that no longer
run.
Each Track or Generate writes into a run folder of its own. The page's last results (its
tracking preview, its players and downloads) link into the run folders that made them, so
those stay until a later run has made what replaces them (:meth:`Session.show_run`); a run
stopped or failed removes its own folder only, and the page goes on showing the last results.

A session runs one Track or Generate at a time, its *job*, with a
:class:`~saganet.cancel.CancelToken`. A tab that closes cancels its job, which stops at its
next safe point (a tracked frame, an Euler step, a window, a file); the session's folder goes
once the job has stopped, and the closed session starts no further job. A Track, Generate or
example still waiting in Gradio's queue (another tab's job has the models) already has its token,
made when Gradio queued it (:meth:`Session.job_queued`): *Stop* cancels it there, and the job
it would have become starts nothing.

Calls of the ``/generate`` endpoint are keyed the same way, by the session hash of the
``gradio_client.Client`` that made them, but a client may queue several: each call gets its
own token (:meth:`Sessions.api_call`). A client that goes away (closed, killed, cut off) ends
its session like a closed tab: its running calls stop and its queued ones start nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from saganet.app.frames import FrameView
from saganet.app.limits import Limits
from saganet.app.objects import AppObject, Click, free_name
from saganet.cancel import CancelledError, CancelToken
from saganet.errors import UserInputError
from saganet.leftovers import make_owned_folder, remove_dead
from saganet.media.video import VideoInfo
from saganet.segment.grid import GRID_FPS, VideoGrid, frames_in
from saganet.segment.prompts import ObjectPrompt
from saganet.segment.tracking import Tracking

log = logging.getLogger(__name__)

NO_VIDEO = "load a video first: upload one or pick the example"
TAB_CLOSED = "the tab was closed"
APP_CLOSED = "the app is closing"
CLIENT_GONE = "the client disconnected"
CALL_CANCELLED = "the client cancelled the call"
# A call under a session hash that has ended: the script may still be there (a proxy cut its
# heartbeat connection), and only a new session hash gets it through.
CLIENT_ENDED = ("this client's session ended (its heartbeat connection to the app closed); "
                "make a new Client to call again")
# What the page shows from a run folder: the tracking preview, and a generation's players and
# downloads (a run may make both).
PREVIEW, RESULTS = "preview", "results"
# Under the root, the folder of /generate calls' files (a dash: never a session hash).
API_FOLDER = "api-calls"
# Start of the name of an app's root in the system's temporary folder (then its owner tag).
ROOT_PREFIX = "saganet-app-"
# How long closing the app waits for running jobs and calls to reach their next safe point
# before it removes their files anyway (a window of CPU work can take longer).
CLOSE_WAIT_S = 10.0
# Session hashes of closed tabs (and gone clients) remembered, so that an event of theirs still
# in Gradio's queue starts nothing (a reloaded tab gets a new hash); the oldest are forgotten
# first.
ENDED_KEYS_KEPT = 10_000


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class Session:
    """A video, its objects and the latest tracking of one visitor.

    Args:
        folder: the session's own folder (created on first use, removed by :meth:`close`).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.video: Path | None = None
        self.info: VideoInfo | None = None
        self.grid: VideoGrid | None = None
        self.objects: list[AppObject] = []
        self.current = 0
        self.tracking: Tracking | None = None
        self.tracked: tuple[ObjectPrompt, ...] | None = None
        # Which object each of the tracking's masks belongs to: by identity, not by name (an
        # object removed, and the next one added, gets the same free name; an object renamed
        # after tracking keeps its masks).
        self._tracked_objects: list[tuple[AppObject, str]] = []
        self.view: FrameView | None = None  # the frame the page shows
        self.busy = False  # a Track or Generate of this session is running
        self.job: CancelToken | None = None  # stops the running Track or Generate
        # The tokens of this tab's Track, Generate and example events waiting in Gradio's
        # queue, by kind: the page sends no second event of a kind while one waits (Gradio
        # ignores the click), so a kind's token is that of its one waiting event.
        self.waiting: dict[str, CancelToken] = {}
        self.ended = False  # the tab was closed: no more jobs, no more files
        self.last_used = time.monotonic()  # when the tab last sent an event
        self._runs = 0
        # The run folder of each part of the page (PREVIEW, RESULTS) showing a file of a run.
        self._shown: dict[str, Path] = {}
        self.lock = threading.RLock()

    # The video

    @property
    def duration(self) -> float:
        """Seconds of the loaded video (from the first frame to the end of the last)."""
        return self.require_grid().index.duration

    def check_open(self) -> None:
        """Raises :class:`~saganet.cancel.CancelledError` once the tab was closed."""
        if self.ended:
            raise CancelledError(TAB_CLOSED)

    def check_idle(self) -> None:
        """Raises UserInputError while a Track or Generate of this session runs."""
        if self.busy:
            raise UserInputError("wait until tracking or generating ends before loading "
                                 "another video")

    def require_grid(self) -> VideoGrid:
        """The loaded video's grid.

        Raises:
            UserInputError: no video loaded yet.
        """
        if self.grid is None:
            raise UserInputError(NO_VIDEO)
        return self.grid

    def load_video(self, source: Path, limits: Limits, name: str | None = None,
                   objects: Sequence[AppObject] = ()) -> VideoInfo:
        """Take a video into the session (a link or copy in its folder), check it and scan its
        frames; the objects start afresh (one empty object, or ``objects``).

        A rejected video leaves the session as it was.

        Args:
            source: the uploaded (or example) file.
            limits: the app's limits.
            name: the file name shown and used for outputs (default: the source's).
            objects: the objects to start with.

        Raises:
            UserInputError: not a readable video, or outside the limits.
        """
        name = Path(name or source.name).name
        self.check_open()
        limits.check_video(source, name)
        folder = self.folder / f"video-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        target = folder / name
        try:
            _link_or_copy(source, target)
            grid = VideoGrid(target)
            index = grid.scan()
            limits.check_length(index.duration, name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if self.video is not None:
            shutil.rmtree(self.video.parent, ignore_errors=True)
        # The page shows no result of the previous video's runs any more.
        self._shown.clear()
        self._remove_runs()
        self.video, self.info, self.grid = target, index.info, grid
        self.objects = list(objects) or [AppObject(free_name([]))]
        self.current = 0
        self.view = None
        self.forget_tracking()
        return index.info

    # The objects

    def current_object(self) -> AppObject:
        if not self.objects:
            self.objects.append(AppObject(free_name([])))
        self.current = min(max(self.current, 0), len(self.objects) - 1)
        return self.objects[self.current]

    def add_object(self, limits: Limits) -> AppObject:
        """A new, empty object becomes the current one.

        Raises:
            UserInputError: the app's object limit is reached.
        """
        if len(self.objects) >= limits.max_objects:
            raise UserInputError(f"this app takes at most {limits.max_objects} objects")
        obj = AppObject(free_name([o.name for o in self.objects]))
        self.objects.append(obj)
        self.current = len(self.objects) - 1
        return obj

    def remove_object(self) -> None:
        """Remove the current object (the last one is emptied instead)."""
        if len(self.objects) <= 1:
            self.objects = [AppObject(free_name([]))]
        else:
            del self.objects[self.current]
        self.current = min(self.current, len(self.objects) - 1)

    def add_click(self, x: float, y: float, time: float, positive: bool) -> Click:
        """Add a click to the current object.

        Raises:
            UserInputError: no video, or a point outside the frame.
        """
        grid = self.require_grid()
        info = grid.index.info
        if not (0 <= x <= info.width and 0 <= y <= info.height):
            raise UserInputError(f"the click {x:.0f},{y:.0f} is outside the "
                                 f"{info.width}x{info.height} frame")
        click = Click(x, y, time, positive)
        self.current_object().clicks.append(click)
        return click

    def slot(self, time: float) -> int:
        """The grid slot shown at ``time`` seconds."""
        index = self.require_grid().index
        return min(max(round(time * GRID_FPS), 0), index.num_slots - 1)

    # Tracking and runs

    def forget_tracking(self) -> None:
        self.tracking, self.tracked = None, None
        self._tracked_objects = []

    def tracking_for(self, prompts: tuple[ObjectPrompt, ...], start: float,
                     end: float) -> Tracking | None:
        """The latest tracking if it was made from ``prompts`` and covers the seconds."""
        tracking = self.tracking
        if tracking is None or self.tracked != prompts:
            return None
        stop = min(frames_in(end), self.require_grid().index.num_slots)
        return tracking if tracking.first <= frames_in(start) and tracking.stop >= stop else None

    def keep_tracking(self, tracking: Tracking, prompts: tuple[ObjectPrompt, ...],
                      objects: Sequence[AppObject]) -> None:
        """Remember a tracking and the prompts it was made from.

        Args:
            tracking: the tracking.
            prompts: the prompts it was made from.
            objects: the session's objects it was made for, in the order of ``prompts`` (the
                objects themselves, not the job's copies): each shows the masks of its prompt's
                name, whatever it is called now; an object not among them shows none.
        """
        self.tracking, self.tracked = tracking, prompts
        self._tracked_objects = [(obj, prompt.name)
                                 for obj, prompt in zip(objects, prompts, strict=True)]

    def tracked_name(self, obj: AppObject) -> str | None:
        """The name of ``obj``'s masks in the latest tracking (None: it was not tracked)."""
        if self.tracking is None:
            return None
        name = next((name for o, name in self._tracked_objects if o is obj), None)
        return name if name in self.tracking.objects else None

    def job_queued(self, kind: str) -> None:
        """Gradio has queued a Track, Generate or example of this session: its token is made
        now, so that *Stop* reaches the event before it starts.

        A newer event of a kind replaces the token of the last one, which has started (and
        taken it) or was dropped from the queue (*Stop* has Gradio remove it): an old token,
        cancelled or not, never reaches a later job.

        Args:
            kind: which event (``"tracking"``, ``"generation"`` or ``"example"``).
        """
        with self.lock:
            self.waiting[kind] = CancelToken()

    def take_token(self, kind: str) -> CancelToken:
        """The token of the ``kind`` event starting now: the one it got when Gradio queued it
        (taken: the next event of the kind gets its own), or a new one for an event that did
        not come through the queue (call with :attr:`lock` held).

        Raises:
            CancelledError: *Stop* was pressed while the event waited: it starts nothing.
        """
        token = self.waiting.pop(kind, None) or CancelToken()
        token.check()
        return token

    def start_job(self, cancel: CancelToken) -> None:
        """Mark the session busy with a Track or Generate (call with :attr:`lock` held).

        Args:
            cancel: the job's token (:meth:`take_token`): :meth:`stop_job` and a closing tab
                cancel it.

        Raises:
            CancelledError: the tab was closed (its queued job starts nothing).
            UserInputError: a job of this session is already running.
        """
        self.check_open()
        self.check_no_job()
        self.busy, self.job = True, cancel

    def check_no_job(self) -> None:
        """Raises UserInputError while a Track or Generate of this session runs."""
        if self.busy:
            raise UserInputError("this page is already tracking or generating; wait for it")

    def stop_job(self, reason: str) -> bool:
        """Ask the running job to stop at its next safe point; False if none runs.

        Args:
            reason: why (logged, and shown in the page if it is still open).
        """
        with self.lock:
            if self.job is None:
                return False
            self.job.cancel(reason)
            return True

    def stop_waiting(self, reason: str) -> list[str]:
        """Cancel the tokens of the Track, Generate and example events waiting in Gradio's
        queue: each starts nothing when its turn comes.

        Args:
            reason: why (shown in the page if the event still starts).

        Returns:
            the kinds of the events stopped now (not those stopped before).
        """
        with self.lock:
            stopped = [kind for kind, token in self.waiting.items() if not token.cancelled]
            for kind in stopped:
                self.waiting[kind].cancel(reason)
            return stopped

    @property
    def next_run(self) -> Path:
        """The folder :meth:`new_run` makes next (not made yet): what a job will write there
        can be checked before a folder is made."""
        return self.folder / f"run-{self._runs + 1}"

    def new_run(self) -> Path:
        """A fresh folder for a Track or Generate (:attr:`next_run`). The previous runs'
        folders stay: the page shows their files until this run has made what replaces them
        (:meth:`show_run`); a run that fails or is stopped goes alone (:meth:`drop_run`).

        Raises:
            CancelledError: the tab was closed.
        """
        self.check_open()
        folder = self.next_run
        self._runs += 1
        folder.mkdir(parents=True)
        return folder

    def show_run(self, run: Path, parts: Iterable[str]) -> None:
        """A run has succeeded and the page now shows its ``parts`` (:data:`PREVIEW`,
        :data:`RESULTS`): the folders of runs whose files the page no longer shows are
        removed (call with :attr:`lock` held)."""
        for part in parts:
            self._shown[part] = run
        self._remove_runs()

    def drop_run(self, run: Path) -> None:
        """Remove the folder of a run that failed or was stopped (the page goes on showing
        the last results, from other runs)."""
        shutil.rmtree(run, ignore_errors=True)

    def _remove_runs(self) -> None:
        """Remove the run folders the page shows nothing of."""
        shown = set(self._shown.values())
        for old in self.folder.glob("run-*"):
            if old not in shown:
                shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        """Remove the session's folder."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.video = self.grid = self.info = None
        self.forget_tracking()


@dataclass(frozen=True, eq=False)
class ApiCall:
    """One running ``/generate`` call.

    Args:
        cancel: stops the call (its client went away, or the app is closing).
        folder: where its files go.
    """

    cancel: CancelToken
    folder: Path


class Sessions:
    """The sessions of one running app, by Gradio session hash, under one temporary root.

    Args:
        root: the folder for all sessions (default: a new folder ``saganet-app-<owner>`` in
            the system's temporary folder, removed when the app closes or the process exits;
            the roots there of apps killed outright are removed first).
        idle_s: a session that has sent no event for this many seconds, runs no job and has
            none waiting is removed with its files when a new session starts (None: never).
            Its tab, should it come back, starts afresh. This is what ends the sessions of
            scripts that post the page's events without Gradio's heartbeat connection: their
            end is never seen.
    """

    def __init__(self, root: Path | None = None, idle_s: float | None = None) -> None:
        if root is None:
            temporary = Path(tempfile.gettempdir())
            remove_dead(temporary, prefix=ROOT_PREFIX)
            self.root = make_owned_folder(temporary, ROOT_PREFIX)
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, Session] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        # The running /generate calls of each client (a set: a client may queue several).
        self._api_calls: dict[str, set[ApiCall]] = {}
        self._closed = False
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def get(self, key: str | None) -> Session:
        """The session of ``key`` (a Gradio session hash), made on first use.

        A closed tab's key gets an ended session that is not kept: it starts no job and makes
        no folder.
        """
        key = _safe_key(key)
        now = time.monotonic()
        idle: list[Session] = []
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                idle = self._idle(now)
                session = Session(self.root / key)
                if key in self._ended:
                    session.ended = True
                else:
                    self._sessions[key] = session
            session.last_used = now
        for old in idle:
            self._expire(old)
        return session

    def _idle(self, now: float) -> list[Session]:
        """The sessions idle past :attr:`idle_s` (call with :attr:`_lock` held)."""
        if self.idle_s is None:
            return []
        return [s for s in self._sessions.values()
                if now - s.last_used > self.idle_s and not s.busy and not s.waiting]

    def _expire(self, session: Session) -> None:
        """Forget an idle session and remove its files, unless it was used meanwhile: an event
        of its tab after this makes a new, empty session."""
        with session.lock, self._lock:
            idle = time.monotonic() - session.last_used
            if idle <= self.idle_s or session.busy or session.waiting:
                return
            for key in [k for k, s in self._sessions.items() if s is session]:
                del self._sessions[key]
            session.close()
        log.info("session %s sent nothing for %.1f h; its files are removed",
                 session.folder.name, idle / 3600)

    def end(self, key: str | None) -> None:
        """The tab (or ``gradio_client`` client) of ``key`` was closed: stop its job and its
        ``/generate`` calls, remove its folder, then forget it.

        A running job is asked to stop (:meth:`Session.stop_job`), and the folder goes when
        it has stopped (:meth:`job_ended`): this returns at once either way. Forgotten only
        once the files are gone, so that a session no longer listed has none left. Running
        calls are asked to stop too; each removes its own files (:meth:`api_call`).
        """
        key = _safe_key(key)
        with self._lock:
            session = self._sessions.get(key)
            self._ended[key] = None
            while len(self._ended) > ENDED_KEYS_KEPT:
                self._ended.popitem(last=False)
            calls = list(self._api_calls.get(key, ()))
        for call in calls:
            call.cancel.cancel(CLIENT_GONE)
        if calls:
            log.info("client %s went away; its %d /generate call(s) are asked to stop", key,
                     len(calls))
        if session is None:
            return
        with session.lock:
            session.ended = True
            if session.stop_job(TAB_CLOSED):
                log.info("session %s ended; its job is asked to stop", key)
            if session.busy:
                return
        self._remove(session)

    def job_ended(self, session: Session) -> None:
        """A job of ``session`` has ended (finished, failed or stopped): the session is idle
        again, or removed if its tab was closed meanwhile."""
        with session.lock:
            session.busy, session.job = False, None
            if not session.ended:
                return
        self._remove(session)

    def _remove(self, session: Session) -> None:
        """Remove an ended, idle session's folder, then forget it."""
        with session.lock:
            session.close()
        with self._lock:
            keys = [k for k, s in self._sessions.items() if s is session]
            for key in keys:
                del self._sessions[key]
        log.info("session %s ended; its files are removed", session.folder.name)

    def _api_folder(self) -> Path:
        """A fresh folder for one ``/generate`` call (call with :attr:`_lock` held). The
        folders of calls that have ended are removed: a call that returned had its files
        copied to Gradio's cache before the next one could start (one queue slot). A call
        still running keeps its folder: after ``job.cancel()`` of ``gradio_client``, Gradio
        starts the next call while the cancelled one runs on in its thread."""
        folder = self.root / API_FOLDER
        running = {call.folder for calls in self._api_calls.values() for call in calls}
        if folder.is_dir():
            for old in folder.iterdir():
                if old not in running:
                    shutil.rmtree(old, ignore_errors=True)
        run = folder / uuid.uuid4().hex[:12]
        run.mkdir(parents=True)
        return run

    @contextmanager
    def api_call(self, key: str | None, cancel: CancelToken | None = None) -> Iterator[ApiCall]:
        """One ``/generate`` call of the client ``key``, while it runs: its token and a fresh
        folder.

        The call is listed under ``key`` until it ends, next to any other call of the same
        client; :meth:`end` and :meth:`close` cancel its token. A call that fails or is
        stopped removes its folder: it returns no file, so nobody would fetch them. A call
        that returns keeps it until another call starts.

        Args:
            key: the client's session hash.
            cancel: the call's token, when the caller also cancels it (a new one by default).

        Raises:
            CancelledError: the client was already gone (or the app closing), or ``cancel``
                already cancelled, when the call came to run: it starts nothing and makes no
                folder.
        """
        key = _safe_key(key)
        with self._lock:
            reason = (APP_CLOSED if self._closed else CLIENT_ENDED if key in self._ended
                      else cancel.reason if cancel is not None and cancel.cancelled else None)
            if reason is not None:
                log.info("a /generate call of client %s starts nothing: %s", key, reason)
                raise CancelledError(reason)
            call = ApiCall(cancel or CancelToken(), self._api_folder())
            self._api_calls.setdefault(key, set()).add(call)
        try:
            yield call
        except BaseException:
            shutil.rmtree(call.folder, ignore_errors=True)
            raise
        finally:
            with self._lock:
                calls = self._api_calls[key]
                calls.discard(call)
                if not calls:
                    del self._api_calls[key]

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop every session's job and ``/generate`` call, and remove the root (the app is
        closing); a call that comes later starts nothing.

        Jobs and calls stop at their next safe point; the root goes once they have, or after
        ``wait_s`` seconds: removed under a job writing its last file, it failed with a
        missing folder (and a traceback) instead of stopping.
        """
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
            self._sessions.clear()
            calls = [call for running in self._api_calls.values() for call in running]
        for session in sessions:
            with session.lock:
                session.ended = True
                session.stop_job(APP_CLOSED)
        for call in calls:
            call.cancel.cancel(APP_CLOSED)
        deadline = time.monotonic() + wait_s
        while (any(session.busy for session in sessions) or self._calls_running()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        self._cleanup()

    def _calls_running(self) -> bool:
        with self._lock:
            return any(self._api_calls.values())


def _safe_key(key: str | None) -> str:
    """A session hash as a folder name (anything but letters and digits is dropped)."""
    safe = "".join(c for c in (key or "") if c.isalnum())[:64]
    return safe or "anonymous"
