"""A running app: the page built over one engine and one set of sessions, launched and closed.

:class:`AppServer` is what ``app.py`` starts and what tests launch in-process::

    server = AppServer(Engine(ModelSettings(variant="debug")), Limits())
    url = server.launch(block=False)        # http://127.0.0.1:7860/
    ...
    server.close()                          # stops serving, removes every session's files
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from saganet.app.engine import Engine
from saganet.app.limits import Limits
from saganet.app.session import Sessions
from saganet.errors import UserInputError

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
# Under the sessions' root, the folder of Gradio's copies of uploads and served files (a dash:
# never a session hash).
GRADIO_FOLDER = "gradio-cache"
GRADIO_ENV = "GRADIO_TEMP_DIR"


class AppServer:
    """The app over ``engine``, with its sessions' folders under one temporary root.

    Args:
        engine: the shared models.
        limits: what the app accepts.
        sessions: the sessions (default: a new temporary root, sessions idle for
            ``limits.idle_hours`` removed).
    """

    def __init__(self, engine: Engine, limits: Limits, sessions: Sessions | None = None) -> None:
        from saganet.app.layout import build_app

        self.engine = engine
        self.limits = limits
        self.sessions = (sessions if sessions is not None
                         else Sessions(idle_s=limits.idle_seconds))
        # Gradio's default, <tmp>/gradio, is shared by every app and user of the machine and
        # readable by all: the visitors' videos and sounds go under the app's own root (0700,
        # removed when the app stops) instead, unless whoever runs the app chose a folder.
        # Gradio reads the variable while serving (what a request may name as an upload), so
        # it stays set until close().
        self._set_env = not os.environ.get(GRADIO_ENV)
        if self._set_env:
            os.environ[GRADIO_ENV] = str(self.sessions.root / GRADIO_FOLDER)
        self.app = build_app(engine, self.sessions, limits)
        self.blocks: gr.Blocks = self.app.blocks
        self.url: str | None = None

    def launch(self, host: str = DEFAULT_HOST, port: int | None = None, share: bool = False,
               block: bool = True, logins: Sequence[tuple[str, str]] = ()) -> str:
        """Serve the app (one model request at a time, through Gradio's queue of at most
        ``limits.max_queue`` events).

        Args:
            host: address to listen on (``127.0.0.1``: this machine only; ``0.0.0.0``: all).
            port: port (None: 7860, or the next free one).
            share: also open a public Gradio share link.
            block: serve until interrupted (Ctrl-C), then close; False: return at once.
            logins: ``(user, password)`` pairs; Gradio then asks for one before serving
                anything (:mod:`saganet.app.logins`). None: anyone who reaches the page.

        Returns:
            the local URL.

        Raises:
            UserInputError: the address cannot be served on (e.g. the port is taken).
        """
        self.blocks.queue(max_size=self.limits.max_queue)
        try:
            _, self.url, share_url = self.blocks.launch(
                server_name=host, server_port=port, share=share, prevent_thread_lock=True,
                max_file_size=self.limits.max_upload_bytes, show_error=False, quiet=True,
                auth=list(logins) or None, auth_message="saganet: log in to use this app")
        except OSError as err:
            self._release()
            where = f"{host}:{port}" if port else host
            raise UserInputError(f"cannot serve on {where}: {err}".splitlines()[0]) from None
        log.info("serving on %s", self.url)
        print(f"saganet app: {self.url}" + (f" (public: {share_url})" if share_url else ""),
              flush=True)
        if block:
            try:
                self.blocks.block_thread()
            finally:
                self.close()
        return self.url

    def close(self) -> None:
        """Stop serving and remove every session's files."""
        self.blocks.close(verbose=False)
        self._release()

    def _release(self) -> None:
        """Remove every session's files (and Gradio's copies) and Gradio's folder setting."""
        self.sessions.close()
        if self._set_env:
            os.environ.pop(GRADIO_ENV, None)
