"""Masks of one object as the model takes them, whatever they come from.

The model reads an object's masks on the 25 fps grid of its video (slot ``k`` at ``k / 25`` s
after the first frame, FFmpeg ``fps``-filter semantics), squash-resized to 224x224, as uint8
gray ``(T, 1, 224, 224)``. A :class:`MaskSource` hands out any time range of those: a mask
video file (:class:`MaskVideo`), or masks tracked in memory (``saganet.segment``), which use
:func:`saganet.media.video.resize_masks` so that both give equal inputs for the same masks.
Consumers ask for one window at a time, so a long video is never held in memory whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from saganet.media.video import SYNC_FPS, SYNC_SIZE, read_frames


@runtime_checkable
class MaskSource(Protocol):
    """The masks of one object on the 25 fps model grid."""

    @property
    def name(self) -> str:
        """What the masks are called in messages (a file name, an object name)."""
        ...

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        """uint8 ``(T, 1, 224, 224)`` masks of the slots ``k`` with ``start <= k / 25 < end``
        (``end=None``: to the end); fewer when the masks end earlier."""
        ...


@dataclass(frozen=True)
class MaskVideo:
    """A mask video file: non-zero pixels are the object; any size with the video's aspect
    ratio, any frame rate; time 0 is its first frame.

    Args:
        path: the mask video.
    """

    path: Path

    @property
    def name(self) -> str:
        return str(self.path)

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        return read_frames(self.path, SYNC_FPS, SYNC_SIZE, gray=True, start=start, end=end)
