"""What the user points at: clicks, boxes and phrases, each at a time, grouped into objects.

Coordinates are pixels of the original video's upright frames (after its display rotation),
``x`` to the right and ``y`` down from the top-left corner. A time is seconds after the video's
first frame (``1.5``) or the index of a decoded frame of the video (``f37``, counted from 0).
The string forms, shared by the command line, the demo and the web app::

    X,Y           a point at time 0          812,430
    X,Y@T         a point at T seconds       812,430@2.5
    X,Y@fN        a point at frame N         812,430@f62
    X0,Y0,X1,Y1[@T]   a box (any two opposite corners), same times

A phrase (text prompt) has no time: SAM 3 looks for it in every frame.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from saganet.errors import UserInputError
from saganet.fileio import check_object_name, name_clash

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass(frozen=True)
class PromptTime:
    """When a prompt applies: seconds after the first frame, or a decoded frame's index.

    Args:
        seconds: seconds after the video's first frame (None when ``frame`` is given).
        frame: index of a decoded frame, from 0 (None when ``seconds`` is given).
    """

    seconds: float | None = 0.0
    frame: int | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.frame is None):
            raise ValueError("a prompt time is either seconds or a frame index")

    def __str__(self) -> str:
        return f"frame {self.frame}" if self.frame is not None else f"{self.seconds:g} s"


@dataclass(frozen=True)
class PointPrompt:
    """A click on the object (positive) or on what is not the object (negative).

    Args:
        x: column in pixels of the upright frame.
        y: row in pixels of the upright frame.
        positive: True for the object, False for background.
        time: when the click applies.
    """

    x: float
    y: float
    positive: bool = True
    time: PromptTime = field(default_factory=PromptTime)


@dataclass(frozen=True)
class BoxPrompt:
    """A box around the object, corners in pixels of the upright frame (``x0 < x1``,
    ``y0 < y1`` after :func:`parse_box` sorts them).

    Args:
        x0: left edge.
        y0: top edge.
        x1: right edge.
        y1: bottom edge.
        time: when the box applies.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    time: PromptTime = field(default_factory=PromptTime)


@dataclass(frozen=True)
class ObjectPrompt:
    """One object to track: clicks and/or boxes (SAM 2), or a phrase (SAM 3).

    Args:
        name: what the object is called (file names, messages); letters, digits, ``_.-``.
        points: clicks, positive and negative, at any times.
        boxes: boxes, at most one per time.
        text: a phrase naming the object (e.g. "violin"); excludes points and boxes.
    """

    name: str
    points: tuple[PointPrompt, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    text: str | None = None

    def __post_init__(self) -> None:
        check_object_name(self.name)
        if self.text is not None:
            if not self.text.strip():
                raise UserInputError(f"object {self.name}: the text prompt is empty")
            if self.points or self.boxes:
                raise UserInputError(f"object {self.name}: a text prompt cannot be combined "
                                     "with clicks or boxes (SAM 3 finds the phrase by itself)")
        elif not self.points and not self.boxes:
            raise UserInputError(f"object {self.name}: give a click, a box or a text prompt")
        elif not any(p.positive for p in self.points) and not self.boxes:
            raise UserInputError(f"object {self.name}: negative clicks alone do not say what "
                                 "the object is; add a click on it or a box")


def _number(value: float) -> str:
    """The shortest text that parses back to ``value`` (``812``, not ``812.0``)."""
    text = repr(float(value))
    return text.removesuffix(".0")


def _time_text(time: PromptTime) -> str:
    return f"@f{time.frame}" if time.frame is not None else f"@{_number(time.seconds)}"


def point_text(point: PointPrompt) -> str:
    """``X,Y@T``: what :func:`parse_point` reads as ``point`` (its sign aside)."""
    return f"{_number(point.x)},{_number(point.y)}{_time_text(point.time)}"


def box_text(box: BoxPrompt) -> str:
    """``X0,Y0,X1,Y1@T``: what :func:`parse_box` reads as ``box``."""
    corners = ",".join(_number(v) for v in (box.x0, box.y0, box.x1, box.y1))
    return f"{corners}{_time_text(box.time)}"


def prompt_flags(obj: ObjectPrompt) -> dict[str, list[str] | str]:
    """An object's prompts under the names of ``demo.py``'s flags, as their values:
    ``click``, ``negative_click`` and ``box`` (lists) and ``segment_text``; those given only."""
    flags: dict[str, list[str] | str] = {
        "click": [point_text(p) for p in obj.points if p.positive],
        "negative_click": [point_text(p) for p in obj.points if not p.positive],
        "box": [box_text(b) for b in obj.boxes],
    }
    if obj.text is not None:
        flags["segment_text"] = obj.text
    return {name: value for name, value in flags.items() if value}


def _parse_time(text: str, what: str) -> PromptTime:
    if text.startswith(("f", "F")):
        digits = text[1:]
        if not digits.isdigit():
            raise UserInputError(f"{what}: frame {text!r} must be 'f' and a frame index, e.g. f37")
        return PromptTime(seconds=None, frame=int(digits))
    if not re.fullmatch(_NUMBER, text):
        raise UserInputError(f"{what}: time {text!r} must be seconds (1.5) or a frame (f37)")
    seconds = float(text)
    if seconds < 0 or not math.isfinite(seconds):
        raise UserInputError(f"{what}: time {text!r} must be zero or more seconds")
    return PromptTime(seconds=seconds)


def _parse_numbers(text: str, count: int, what: str, form: str) -> tuple[list[float], PromptTime]:
    coords, at, when = text.strip().partition("@")
    parts = [p.strip() for p in coords.split(",")]
    if len(parts) != count or not all(re.fullmatch(_NUMBER, p) for p in parts):
        raise UserInputError(f"{what} {text!r} must look like {form}")
    values = [float(p) for p in parts]
    if not all(math.isfinite(v) for v in values):
        raise UserInputError(f"{what} {text!r}: coordinates must be finite numbers")
    time = _parse_time(when.strip(), f"{what} {text!r}") if at else PromptTime()
    return values, time


def parse_point(text: str, positive: bool = True) -> PointPrompt:
    """Parse ``X,Y``, ``X,Y@SECONDS`` or ``X,Y@fFRAME`` (pixels of the upright frame).

    Args:
        text: the point.
        positive: a click on the object (True) or on the background (False).

    Raises:
        UserInputError: malformed text or a negative time.
    """
    (x, y), time = _parse_numbers(text, 2, "click", "X,Y or X,Y@SECONDS or X,Y@fFRAME")
    return PointPrompt(x, y, positive, time)


def parse_box(text: str) -> BoxPrompt:
    """Parse ``X0,Y0,X1,Y1`` with an optional ``@SECONDS`` / ``@fFRAME``; any two opposite
    corners are accepted.

    Args:
        text: the box.

    Raises:
        UserInputError: malformed text, a negative time or a box without area.
    """
    (x0, y0, x1, y1), time = _parse_numbers(text, 4, "box", "X0,Y0,X1,Y1 or X0,Y0,X1,Y1@T")
    box = BoxPrompt(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), time)
    if box.x1 - box.x0 <= 0 or box.y1 - box.y0 <= 0:
        raise UserInputError(f"box {text!r} has zero area")
    return box


def object_prompt(name: str, clicks: Sequence[str] = (), negative_clicks: Sequence[str] = (),
                  boxes: Sequence[str] = (), text: str | None = None) -> ObjectPrompt:
    """One object from the string forms of its prompts (see the module docstring).

    Args:
        name: the object's name.
        clicks: points on the object.
        negative_clicks: points on what is not the object.
        boxes: boxes around the object.
        text: a phrase naming the object (SAM 3).

    Raises:
        UserInputError: a malformed prompt, or an object without a usable prompt.
    """
    points = tuple([parse_point(c) for c in clicks]
                   + [parse_point(c, positive=False) for c in negative_clicks])
    return ObjectPrompt(name, points, tuple(parse_box(b) for b in boxes), text)


def check_unique_names(objects: Sequence[ObjectPrompt]) -> None:
    """Every object needs its own name (they name the outputs).

    Args:
        objects: the objects of one tracking run.

    Raises:
        UserInputError: no objects, or a name used twice.
    """
    if not objects:
        raise UserInputError("nothing to track: give at least one object")
    # Without case: the names become mask file names.
    clash = name_clash([obj.name for obj in objects])
    if clash:
        raise UserInputError(f"two objects are called {clash}; names must differ (case aside)")
