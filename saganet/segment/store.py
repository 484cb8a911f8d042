"""Tracked masks of one object, kept small: one run-length code per 25 fps slot.

A full-resolution boolean mask compresses to a few hundred bytes as COCO run-length encoding
(pycocotools), so a minute of 4K tracking costs kilobytes per object instead of gigabytes.
:class:`TrackedMasks` serves any time range of them as the model takes them (a
:class:`~saganet.media.masks.MaskSource`), through the resize the mask-video reader applies, so
in-memory masks and the same masks read back from a lossless mask video are equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as rle

from saganet.media.video import SYNC_FPS, SYNC_SIZE, FrameRequest, resize_masks

# Masks decoded at once when serving a window: bounds the full-size frames held at a time.
_DECODE_BATCH = 8


@dataclass(frozen=True)
class Span:
    """A stretch of slots where the object is visible, ``[start, end)`` in seconds.

    Args:
        start: first visible slot's time.
        end: time just after the last visible slot.
    """

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


class TrackedMasks:
    """Boolean masks of one object, one per slot of the 25 fps grid (slot ``k`` at ``k / 25`` s
    after the video's first frame), at the video's upright resolution; a
    :class:`~saganet.media.masks.MaskSource`.

    Args:
        name: the object's name.
        height: mask height in pixels.
        width: mask width in pixels.
    """

    def __init__(self, name: str, height: int, width: int) -> None:
        self._name = name
        self.height = height
        self.width = width
        self._codes: list[dict] = []
        self._visible: list[bool] = []
        self._empty = rle.encode(np.zeros((height, width, 1), np.uint8, order="F"))[0]
        # How the masks were made, as results record it (saganet.soundtrack.settings): the
        # prompts under demo.py's flag names and the model; set by track_objects.
        self.origin: dict[str, object] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def duration(self) -> float:
        """Seconds the stored slots cover from time 0."""
        return len(self._codes) / SYNC_FPS

    def __len__(self) -> int:
        return len(self._codes)

    def set(self, slot: int, mask: np.ndarray | torch.Tensor | None) -> None:
        """Store the mask of ``slot`` (None: the object is absent); slots in between stay empty.

        Args:
            slot: grid slot.
            mask: ``(H, W)`` bool mask, or None.
        """
        while len(self._codes) <= slot:
            self._codes.append(self._empty)
            self._visible.append(False)
        if mask is None:
            self._codes[slot], self._visible[slot] = self._empty, False
            return
        array = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if array.shape != (self.height, self.width):
            raise ValueError(f"mask of {self.name} is {array.shape}, expected "
                             f"{(self.height, self.width)}")
        code = rle.encode(np.asfortranarray(array.astype(np.uint8)[:, :, None]))[0]
        self._codes[slot], self._visible[slot] = code, bool(array.any())

    def extend_to(self, slots: int) -> None:
        """Make the masks cover ``slots`` slots (empty where nothing was stored)."""
        if slots > len(self._codes):
            self.set(slots - 1, None)

    def masks(self, first: int = 0, stop: int | None = None) -> np.ndarray:
        """Full-size ``(T, H, W)`` bool masks of slots ``first .. stop - 1``.

        Args:
            first: first slot.
            stop: one past the last slot (None: the last stored).
        """
        codes = self._codes[first:stop]
        if not codes:
            return np.zeros((0, self.height, self.width), bool)
        return rle.decode(codes).transpose(2, 0, 1).astype(bool)  # (T, H, W)

    def iter_masks(self, first: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """``(H, W)`` bool masks of slots ``first .. stop - 1``, one at a time."""
        stop = len(self._codes) if stop is None else min(stop, len(self._codes))
        for slot in range(first, stop):
            yield rle.decode([self._codes[slot]])[:, :, 0].astype(bool)

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        request = FrameRequest(SYNC_FPS, SYNC_SIZE, gray=True, start=start, end=end).slots()
        stop = len(self._codes) if request.stop is None else min(request.stop, len(self._codes))
        parts = [resize_masks(self.masks(low, min(low + _DECODE_BATCH, stop)))
                 for low in range(request.first, stop, _DECODE_BATCH)]
        if not parts:
            return torch.zeros((0, 1, SYNC_SIZE, SYNC_SIZE), dtype=torch.uint8)
        return torch.cat(parts)

    @property
    def visible(self) -> np.ndarray:
        """``(T,)`` bool: the object has at least one pixel in the slot."""
        return np.asarray(self._visible, dtype=bool)

    def spans(self) -> list[Span]:
        """Where the object is visible, as time spans (consecutive visible slots joined)."""
        spans = []
        start = None
        for slot, seen in enumerate([*self._visible, False]):
            if seen and start is None:
                start = slot
            elif not seen and start is not None:
                spans.append(Span(start / SYNC_FPS, slot / SYNC_FPS))
                start = None
        return spans

    def stored_bytes(self) -> int:
        """Bytes held by the run-length codes (what the store costs)."""
        return sum(len(code["counts"]) for code in self._codes)
