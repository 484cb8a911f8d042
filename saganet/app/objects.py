"""The objects a user points at in the app: name, prompts, clicks, boxes or a phrase.

An :class:`AppObject` is what the page edits and what the ``/generate`` endpoint receives. It
becomes an :class:`~saganet.segment.ObjectPrompt` for tracking and, once tracked, a
:class:`~saganet.soundtrack.SoundObject` for generation: the same types ``demo.py`` and
``python -m saganet.segment`` build from their flags.

Click positions are pixels of the video's upright frames and times are seconds after its first
frame, as everywhere in saganet (the page maps its shown frame to these, see
:mod:`saganet.app.frames`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from saganet.errors import UserInputError
from saganet.media.masks import MaskSource
from saganet.media.video import SYNC_FPS
from saganet.segment.prompts import (
    BoxPrompt,
    ObjectPrompt,
    PointPrompt,
    PromptTime,
    parse_box,
    parse_point,
)
from saganet.soundtrack import SoundObject


@dataclass(frozen=True)
class Click:
    """A click in the frame.

    Args:
        x: column in pixels of the upright frame.
        y: row in pixels of the upright frame.
        time: seconds after the video's first frame.
        positive: on the object (True) or on something that is not it (False).
    """

    x: float
    y: float
    time: float
    positive: bool = True

    @property
    def slot(self) -> int:
        """The 25 fps grid slot the click applies to (the frame it was made on)."""
        return round(self.time * SYNC_FPS)

    def point(self) -> PointPrompt:
        return PointPrompt(self.x, self.y, self.positive, PromptTime(seconds=self.time))

    def __str__(self) -> str:
        sign = "" if self.positive else "not "
        return f"{sign}{self.x:.0f},{self.y:.0f} at {self.time:.2f} s"


@dataclass
class AppObject:
    """One object of a video in the app.

    Args:
        name: its name (file names, track titles): letters, digits, ``_ . -``.
        prompt: text prompt for the sound (empty: no text condition).
        negative_prompt: what the sound should not be (empty: nothing).
        text: a phrase that finds the object (SAM 3) instead of clicks.
        clicks: clicks on (and off) the object.
        boxes: boxes around it (from the endpoint; the page uses clicks).
    """

    name: str
    prompt: str = ""
    negative_prompt: str = ""
    text: str = ""
    clicks: list[Click] = field(default_factory=list)
    boxes: list[BoxPrompt] = field(default_factory=list)

    @property
    def pointed(self) -> bool:
        """The object has something to track by (a click, a box or a phrase)."""
        return bool(self.clicks or self.boxes or self.text.strip())

    def tracking_prompt(self) -> ObjectPrompt:
        """What the tracker gets.

        Raises:
            UserInputError: a bad name, nothing to track by, negative clicks alone, or a
                phrase together with clicks.
        """
        return ObjectPrompt(self.name, tuple(c.point() for c in self.clicks), tuple(self.boxes),
                            self.text.strip() or None)

    def sound_object(self, masks: MaskSource) -> SoundObject:
        """What the generator gets, with the object's tracked masks."""
        return SoundObject(self.name, masks, self.prompt.strip() or None,
                           self.negative_prompt.strip() or None)

    def earliest(self) -> float | None:
        """Seconds of the earliest click or box (None: a phrase only, or a frame index)."""
        times = [c.time for c in self.clicks] + [b.time.seconds for b in self.boxes
                                                  if b.time.seconds is not None]
        return min(times) if times else None

    def latest(self) -> float | None:
        """Seconds of the latest click or box (None as for :meth:`earliest`)."""
        times = [c.time for c in self.clicks] + [b.time.seconds for b in self.boxes
                                                  if b.time.seconds is not None]
        return max(times) if times else None


def free_name(taken: Sequence[str], base: str = "object") -> str:
    """``object1``, ``object2``, ...: the first not in ``taken``."""
    k = 1
    while f"{base}{k}" in taken:
        k += 1
    return f"{base}{k}"


_FIELDS = ("name", "prompt", "negative_prompt", "text", "clicks", "negative_clicks", "boxes")


def _strings(item: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = item.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserInputError(f"{where}: {key} must be a list of strings such as \"812,430@1.5\"")
    return value


def _text(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserInputError(f"{where}: {key} must be a string")
    return value


def objects_from_json(items: Any) -> list[AppObject]:
    """Objects of the ``/generate`` endpoint: a list of mappings with ``name`` and any of
    ``prompt``, ``negative_prompt``, ``clicks``, ``negative_clicks``, ``boxes`` (the string
    forms of :mod:`saganet.segment.prompts`: ``"X,Y@T"``, ``"X0,Y0,X1,Y1@T"``) and ``text``.

    Raises:
        UserInputError: not a list of mappings, unknown keys, or malformed prompts.
    """
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise UserInputError("objects must be a JSON list of objects such as "
                             "[{\"name\": \"violin\", \"clicks\": [\"812,430@1.5\"]}]")
    objects = []
    for k, item in enumerate(items):
        where = f"object {k + 1}"
        unknown = sorted(set(item) - set(_FIELDS))
        if unknown:
            raise UserInputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(_FIELDS)}")
        name = _text(item, "name", where) or free_name([o.name for o in objects])
        points = ([parse_point(c) for c in _strings(item, "clicks", where)]
                  + [parse_point(c, positive=False)
                     for c in _strings(item, "negative_clicks", where)])
        if any(p.time.seconds is None for p in points):
            raise UserInputError(f"{where}: give click times in seconds (X,Y@1.5)")
        clicks = [Click(p.x, p.y, p.time.seconds, p.positive) for p in points]
        boxes = [parse_box(b) for b in _strings(item, "boxes", where)]
        # Seconds, as for clicks: the tracked range is widened to the prompts' times.
        if any(b.time.seconds is None for b in boxes):
            raise UserInputError(f"{where}: give box times in seconds (X0,Y0,X1,Y1@1.5)")
        objects.append(AppObject(name, _text(item, "prompt", where),
                                 _text(item, "negative_prompt", where), _text(item, "text", where),
                                 clicks, boxes))
    return objects
