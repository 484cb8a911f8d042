"""One visitor's work in the app, and the folders it lives in.

Every browser tab (a Gradio session) gets a :class:`Session`: its own folder under the app's
temporary root, the video it loaded, its objects and its latest tracking. :class:`Sessions`
hands them out by Gradio's session hash and removes a session's folder when its tab closes
(Gradio's ``unload`` event), and the whole root when the app closes or the process exits.
Generated files live in the session's latest run folder only: Gradio serves copies from its
own cache, so an older run is removed when a new one starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path

from saganet.app.frames import FrameView
from saganet.app.limits import Limits
from saganet.app.objects import AppObject, Click, free_name
from saganet.errors import UserInputError
from saganet.media.video import VideoInfo
from saganet.segment.grid import GRID_FPS, VideoGrid, frames_in
from saganet.segment.prompts import ObjectPrompt
from saganet.segment.tracking import Tracking

log = logging.getLogger(__name__)

NO_VIDEO = "load a video first: upload one or pick the example"


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
        self.view: FrameView | None = None  # the frame the page shows
        self.busy = False  # a Track or Generate of this session is running
        self._runs = 0
        self.lock = threading.RLock()

    # The video

    @property
    def duration(self) -> float:
        """Seconds of the loaded video (from the first frame to the end of the last)."""
        return self.require_grid().index.duration

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

    def tracking_for(self, prompts: tuple[ObjectPrompt, ...], start: float,
                     end: float) -> Tracking | None:
        """The latest tracking if it was made from ``prompts`` and covers the seconds."""
        tracking = self.tracking
        if tracking is None or self.tracked != prompts:
            return None
        stop = min(frames_in(end), self.require_grid().index.num_slots)
        return tracking if tracking.first <= frames_in(start) and tracking.stop >= stop else None

    def keep_tracking(self, tracking: Tracking, prompts: tuple[ObjectPrompt, ...]) -> None:
        """Remember a tracking and the prompts it was made from."""
        self.tracking, self.tracked = tracking, prompts

    def new_run(self) -> Path:
        """A fresh folder for a generation; the previous run's folder is removed."""
        for old in self.folder.glob("run-*"):
            shutil.rmtree(old, ignore_errors=True)
        self._runs += 1
        folder = self.folder / f"run-{self._runs}"
        folder.mkdir(parents=True)
        return folder

    def close(self) -> None:
        """Remove the session's folder."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.video = self.grid = self.info = None
        self.forget_tracking()


class Sessions:
    """The sessions of one running app, by Gradio session hash, under one temporary root.

    Args:
        root: the folder for all sessions (default: a new temporary folder, removed when the
            app closes or the process exits).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else Path(
            tempfile.mkdtemp(prefix="saganet-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def get(self, key: str | None) -> Session:
        """The session of ``key`` (a Gradio session hash), made on first use."""
        key = _safe_key(key)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = Session(self.root / key)
            return session

    def end(self, key: str | None) -> None:
        """Remove a session's folder, then forget it (its tab was closed).

        Forgotten only once the files are gone, so that a session no longer listed has none
        left (the folder's removal waits for a job that still holds the session).
        """
        key = _safe_key(key)
        with self._lock:
            session = self._sessions.get(key)
        if session is None:
            return
        with session.lock:
            session.close()
        with self._lock:
            if self._sessions.get(key) is session:
                del self._sessions[key]
        log.info("session %s ended; its files are removed", key)

    def api_run(self) -> Path:
        """A fresh folder for one ``/generate`` call; earlier calls' folders are removed (their
        files were copied to Gradio's cache when they returned; calls run one at a time)."""
        folder = self.root / "api-calls"  # a dash: never a session hash
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        run = folder / uuid.uuid4().hex[:12]
        run.mkdir(parents=True)
        return run

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self) -> None:
        """End every session and remove the root."""
        with self._lock:
            self._sessions.clear()
        self._cleanup()


def _safe_key(key: str | None) -> str:
    """A session hash as a folder name (anything but letters and digits is dropped)."""
    safe = "".join(c for c in (key or "") if c.isalnum())[:64]
    return safe or "anonymous"
