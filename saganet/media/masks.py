"""Masks of one object as the model takes them, whatever they come from.

The model reads an object's masks on the 25 fps grid of its video (slot ``k`` at ``k / 25`` s
after the first frame, FFmpeg ``fps``-filter semantics), squash-resized to 224x224, as uint8
gray ``(T, 1, 224, 224)``. A :class:`MaskSource` hands out any time range of those: a mask
video file (:class:`MaskVideo`), a folder of mask images, one per frame, as video object
segmentation writes them (:class:`~saganet.media.mask_frames.MaskFrames`), or masks tracked in
memory (``saganet.segment``); the last two use :func:`saganet.media.video.resize_masks` so that
all give equal inputs for the same masks. :func:`mask_source` opens either kind of path.
Consumers ask for one window at a time, so a long video is never held in memory whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from saganet.errors import UserInputError
from saganet.media.mask_frames import MaskFrames
from saganet.media.video import (
    SYNC_FPS,
    SYNC_SIZE,
    SequentialReader,
    VideoInfo,
    empty_mask_hint,
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

    def empty_hint(self) -> str:
        """What to add when the masks read empty (an alpha channel: see
        :func:`~saganet.media.video.empty_mask_hint`)."""
        return empty_mask_hint(self.info)

    def close(self) -> None:
        """Close the file (a later read reopens it)."""
        self._reader.close()


# The masks that come from the user's files, as opposed to ones tracked in memory.
MaskFiles = (MaskVideo, MaskFrames)


def mask_source(path: str | os.PathLike[str], video: str | os.PathLike[str],
                object_id: int | None = None) -> MaskVideo | MaskFrames:
    """The masks at ``path``: a mask video, or a folder of mask images (one per frame of
    ``video``, timed by its frame rate).

    Args:
        path: a mask video file or a folder of mask images.
        video: the video the masks belong to.
        object_id: the object's id in a folder of label images (None: every non-zero pixel).

    Raises:
        UserInputError: an object id for a mask video, or a video that cannot be read.
    """
    if Path(path).is_dir():
        return MaskFrames(path, probe_video(video).fps, object_id)
    if object_id is not None:
        raise UserInputError("an object id (--mask_id) picks an object in a folder of label "
                             "images, and this is a mask video", path)
    return MaskVideo(path)
