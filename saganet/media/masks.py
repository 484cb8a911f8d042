"""Masks of one object as the model takes them, whatever they come from.

The model reads an object's masks on the 25 fps grid of its video (slot ``k`` at ``k / 25`` s
after the first frame, FFmpeg ``fps``-filter semantics), squash-resized to 224x224, as uint8
gray ``(T, 1, 224, 224)``. A :class:`MaskSource` hands out any time range of those: a mask
video file (:class:`MaskVideo`), or masks tracked in memory (``saganet.segment``), which use
:func:`saganet.media.video.resize_masks` so that both give equal inputs for the same masks.
Consumers ask for one window at a time, so a long video is never held in memory whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from saganet.media.video import (
    SYNC_FPS,
    SYNC_SIZE,
    SequentialReader,
    VideoInfo,
    probe_video,
    warn_if_dim_mask,
)


@runtime_checkable
class MaskSource(Protocol):
    """The masks of one object on the 25 fps model grid."""

    @property
    def name(self) -> str:
        """What the masks are called in messages (a file name, an object name)."""
        ...

    @property
    def duration(self) -> float | None:
        """Seconds the masks cover from time 0 (None: unknown)."""
        ...

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        """uint8 ``(T, 1, 224, 224)`` masks of the slots ``k`` with ``start <= k / 25 < end``
        (``end=None``: to the end); fewer when the masks end earlier."""
        ...


class MaskVideo:
    """A mask video file: non-zero pixels are the object; any size with the video's aspect
    ratio, any frame rate; time 0 is its first frame. Windows read in increasing order decode
    the file once (:class:`~saganet.media.video.SequentialReader`).

    Args:
        path: the mask video.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reader = SequentialReader(self.path, SYNC_FPS, SYNC_SIZE, gray=True)
        self._info: VideoInfo | None = None
        self._warned_dim = False

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def info(self) -> VideoInfo:
        """The mask video's metadata (read once; raises UserInputError if unreadable)."""
        if self._info is None:
            self._info = probe_video(self.path)
        return self._info

    @property
    def duration(self) -> float | None:
        return self.info.duration

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        masks = self._reader.read(start, end)
        if not self._warned_dim:
            self._warned_dim = warn_if_dim_mask(masks, self.name)
        return masks

    def close(self) -> None:
        """Close the file (a later read reopens it)."""
        self._reader.close()
