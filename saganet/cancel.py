"""Stopping long work from another thread, at the work's next safe point.

A :class:`CancelToken` is handed to :func:`saganet.soundtrack.write_soundtrack`,
:func:`saganet.inference.generate` or :func:`saganet.segment.track_objects`; another thread
calls :meth:`CancelToken.cancel` (the web app does when a tab closes, or when its visitor
presses *Stop*). The work checks the token where stopping leaves nothing half done: after each
tracked frame, before each window's features, each network evaluation of the sampler, each
decoded chunk and each file written. There it raises :class:`CancelledError`, and the usual
clean-up on failure removes what it had written.

Work given no token does no check at all: the sampling loop runs exactly as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class CancelledError(Exception):
    """The work was stopped through its :class:`CancelToken` before it finished.

    Args:
        reason: why, as given to :meth:`CancelToken.cancel`.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CancelToken:
    """Asks running work to stop; thread-safe, and set once for good."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = "cancelled"
        self._lock = threading.Lock()

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the work to stop at its next check (the first reason given is kept).

        Args:
            reason: why, for logs and messages (e.g. ``"the tab was closed"``).
        """
        with self._lock:
            if not self._event.is_set():
                self._reason = reason
                self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def check(self) -> None:
        """Raise :class:`CancelledError` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise CancelledError(self._reason)


def checked(progress: Callable[[str, int, int], None],
            cancel: CancelToken | None) -> Callable[[str, int, int], None]:
    """``progress(stage, done, total)`` that first checks ``cancel`` (``progress`` itself when
    there is no token: nothing is added to the work's loop).

    Args:
        progress: the work's progress callback.
        cancel: the token to check before each report.
    """
    if cancel is None:
        return progress

    def report(stage: str, done: int, total: int) -> None:
        cancel.check()
        progress(stage, done, total)

    return report
