"""Progress bars that read well both in a terminal and in a log file.

tqdm redraws its bar with carriage returns about ten times a second. A terminal shows one
line; a log file (SLURM, ``torchrun ... > log``, ``nohup``, CI) keeps every redraw, so one
training run leaves megabytes of half-lines. :func:`progress_bar` is the one place bars are
made: on a terminal it is plain tqdm; in a notebook tqdm's widget; on any other stream it
writes a bar only once its task has run for :data:`LOG_INTERVAL_S`, then at most once per
that interval, each state on its own line (and the last one when the bar closes).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "LineWriter", "progress_bar"]

LOG_INTERVAL_S = 30.0
"""Seconds between two lines of a bar written to a stream that is not a terminal."""

# Cursor movements tqdm uses to stack several bars (``ESC[A``) and similar control sequences.
_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class LineWriter:
    """A text stream that turns tqdm's in-place redraws into whole lines.

    Every write is one state of a bar (a carriage return, the bar, padding spaces) or a
    cursor movement; the bar is kept as a line of its own, the rest dropped.

    Args:
        stream: where the lines go.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = _ESCAPE.sub("", text).replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def _notebook_bar() -> type[tqdm] | None:
    """tqdm's widget class when running in a Jupyter kernel, else None."""
    from tqdm.autonotebook import tqdm as auto

    return auto if any(cls.__module__ == "tqdm.notebook" for cls in auto.__mro__) else None


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(iterable: Iterable[Any] | None = None, *, file: TextIO | None = None,
                 **options: Any) -> tqdm:
    """A tqdm bar suited to where ``file`` goes.

    Args:
        iterable: what to iterate over, as for ``tqdm``.
        file: the stream (default ``sys.stderr``, looked up at the call so that a redirected
            stream is honoured).
        **options: tqdm's options (``total``, ``desc``, ``unit``, ``disable``, ``leave``...).
            For a stream that is not a terminal, ``mininterval`` and ``delay`` are raised to
            :data:`LOG_INTERVAL_S` and ``miniters`` is 1.
    """
    stream = sys.stderr if file is None else file
    if _is_terminal(stream):
        return tqdm(iterable, file=stream, **options)
    notebook_bar = _notebook_bar() if stream is sys.stderr else None
    if notebook_bar is not None:
        return notebook_bar(iterable, **options)
    # delay keeps tasks shorter than one interval out of the log altogether.
    for name in ("mininterval", "delay"):
        options[name] = max(float(options.get(name) or 0.0), LOG_INTERVAL_S)
    # With tqdm's adaptive miniters its monitor thread redraws a bar whose steps slowed down
    # without recording that draw, so the next step wrote a second line at once; with
    # miniters 1 the monitor leaves the bar alone and every step checks the interval.
    options["miniters"] = 1
    options.pop("dynamic_ncols", None)
    return tqdm(iterable, file=LineWriter(stream), ascii=True, **options)
