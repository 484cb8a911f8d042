"""What the web app accepts: upload size, video length, frame size, number of objects and
steps.

A public page must not let one visitor tie the machine up for an hour, so each upload is
checked before any decoding beyond its header, and each request before any model runs. Every
check raises :class:`~saganet.errors.UserInputError` with a message for the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from saganet.errors import UserInputError

if TYPE_CHECKING:
    from saganet.app.objects import AppObject
    from saganet.media.video import VideoInfo


def min_seconds() -> float:
    """The shortest clip the model conditions on: one Synchformer window."""
    # Imported here: the command line's --help must not wait for torch.
    from saganet.media.video import SYNC_FPS, SYNC_WINDOW_FRAMES

    return SYNC_WINDOW_FRAMES / SYNC_FPS


@dataclass(frozen=True)
class Limits:
    """The app's limits (command-line flags of ``app.py``).

    Args:
        max_upload_mb: largest upload in megabytes (10^6 bytes).
        max_seconds: longest video accepted, in seconds.
        max_objects: most objects per video (each gets a player and a spectrogram).
        max_steps: most Euler steps a request may ask for.
        max_clicks: most clicks and boxes per object: each is a token of the tracker's prompt
            (attended to by every other), each clicked frame one its memory keeps.
        max_megapixels: largest frame, in millions of pixels (width x height): a small file
            can hold huge frames (a still picture compresses to nothing), and each is decoded
            to RGB in full (3 bytes a pixel) before it is scaled down for the page or a model.
        max_queue: most events waiting in Gradio's queue at once (None: no limit); past it a
            *Track*, *Generate* or ``/generate`` call is refused at once ("queue is full").
        idle_hours: a tab (or script) that has sent nothing for this long has its session
            and files removed (0: kept until it closes).
    """

    max_upload_mb: float = 200.0
    max_seconds: float = 120.0
    max_objects: int = 6
    max_steps: int = 100
    max_clicks: int = 50
    # 4096x2160 (DCI 4K, 8.85 MP) fits.
    max_megapixels: float = 9.0
    max_queue: int | None = None
    idle_hours: float = 24.0

    def __post_init__(self) -> None:
        if not (self.max_upload_mb > 0 and self.max_seconds > 0 and self.max_megapixels > 0):
            raise UserInputError("the upload, length and frame size limits must be positive")
        # The upload limit becomes a whole number of bytes (Gradio's max_file_size).
        if not math.isfinite(self.max_upload_mb):
            raise UserInputError(f"the upload limit must be a finite number of MB, got "
                                 f"{self.max_upload_mb}")
        if self.max_objects < 1 or self.max_steps < 1 or self.max_clicks < 1:
            raise UserInputError("the object, step and click limits must be at least 1")
        if not (math.isfinite(self.idle_hours) and self.idle_hours >= 0):
            raise UserInputError(f"the idle time must be 0 or more hours, got {self.idle_hours}")
        if self.max_queue is not None and self.max_queue < 1:
            raise UserInputError(f"the queue limit must be at least 1, got {self.max_queue}")

    @property
    def idle_seconds(self) -> float | None:
        """:attr:`idle_hours` in seconds (None: never)."""
        return self.idle_hours * 3600 if self.idle_hours else None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)

    def check_file(self, path: Path) -> None:
        """The upload exists and is not too large.

        Raises:
            UserInputError: a missing, empty or too large file.
        """
        if not path.is_file():
            raise UserInputError("the upload did not arrive; try again", path.name)
        size = path.stat().st_size
        if size == 0:
            raise UserInputError("the file is empty", path.name)
        if size > self.max_upload_bytes:
            raise UserInputError(f"the file is {size / 1e6:.1f} MB; this app takes videos up "
                                 f"to {self.max_upload_mb:g} MB", path.name)

    def check_video(self, path: Path, name: str | None = None) -> VideoInfo:
        """The file is a video this app takes: readable, frames not too large, not too long, not
        too short.

        Args:
            path: the uploaded file.
            name: the name to show in messages (default: the file's).

        Raises:
            UserInputError: not a video, frames too large, or a length outside the limits.
        """
        from saganet.media.video import open_video, probe_video

        name = name or path.name
        self.check_file(path)
        try:
            # The frame size from the header, before probing decodes a first frame.
            with open_video(path) as (_, stream):
                width, height = stream.codec_context.width, stream.codec_context.height
            if width * height <= self.max_megapixels * 1e6:
                info = probe_video(path)
        except UserInputError as err:
            raise UserInputError(f"not a video this app can read: {err.problem}", name) from None
        if width * height > self.max_megapixels * 1e6:
            raise UserInputError(f"its frames are {width}x{height} ({width * height / 1e6:.1f} "
                                 f"megapixels); this app takes up to {self.max_megapixels:g} "
                                 f"(scale it down first)", name)
        if info.duration is not None:
            self.check_length(info.duration, name)
        return info

    def check_length(self, seconds: float, name: str) -> None:
        """A video of ``seconds`` is within the limits.

        Raises:
            UserInputError: shorter than one model window, or longer than ``max_seconds``.
        """
        if seconds > self.max_seconds + 1e-6:
            raise UserInputError(f"the video lasts {seconds:.1f} s; this app takes videos up to "
                                 f"{self.max_seconds:g} s (cut it first)", name)
        if seconds < min_seconds():
            raise UserInputError(f"the video lasts {seconds:.2f} s; the model needs at least "
                                 f"{min_seconds():.2f} s", name)

    def check_objects(self, count: int) -> None:
        """Raises UserInputError for no object or more than ``max_objects``."""
        if count < 1:
            raise UserInputError("no object yet: click on the object in the frame (or type "
                                 "what it is), then generate")
        if count > self.max_objects:
            raise UserInputError(f"{count} objects; this app takes at most {self.max_objects}")

    def check_clicks(self, obj: AppObject, adding: int = 0) -> None:
        """Raises UserInputError when ``obj``, with ``adding`` more, would have more than
        ``max_clicks`` clicks and boxes."""
        count = len(obj.clicks) + len(obj.boxes) + adding
        if count > self.max_clicks:
            raise UserInputError(f"{obj.name} has {count} clicks and boxes; this app takes at "
                                 f"most {self.max_clicks} per object")
