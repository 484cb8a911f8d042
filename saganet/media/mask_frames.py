"""Masks from a folder of per-frame mask images, as video object segmentation writes them.

Video object segmentation data sets (DAVIS, YouTube-VOS, MOSE) and the trackers that run on
them (XMem, Cutie, DEVA, SAM 2's own scripts) store a video's masks as one lossless image per
frame, named by the frame's number (``00000.png``, ``00005.png``), usually as *label* images:
a palette PNG whose pixel values are object ids (0 the background, 1 the first object, ...).
:class:`MaskFrames` reads such a folder as the masks of one object, so results of any VOS
method reach the model without being re-encoded as a mask video.

Timing: the number in a file's name is the index of the video frame it belongs to (the last
run of digits in the name), shown at ``number / fps`` with ``fps`` the video's frame rate; the
25 fps model grid takes frames with FFmpeg's ``fps``-filter rule, as from a mask video (each
frame holds until the next numbered one, so sparse annotations, e.g. every 5th frame, are held
in between). Slots before the first numbered frame are empty, and the masks end one frame
after the last.

Values: with ``object_id`` the object is the pixels equal to it; without, every non-zero
pixel (RGB images: any non-zero channel). Either way the model gets the object white on black,
resized exactly as masks tracked in memory are (:func:`saganet.media.video.resize_masks`), so
a folder of 0/255 images reads as the same masks as the lossless mask video of the same frames.
"""

from __future__ import annotations

import logging
import math
import os
import re
from bisect import bisect_right
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from saganet.errors import UserInputError
from saganet.media.video import (
    SYNC_FPS,
    SYNC_SIZE,
    VideoInfo,
    resize_masks,
    round_near,
    slot_bound,
)
from saganet.runtime import available_cores

logger = logging.getLogger(__name__)

# Lossless formats only: JPEG's ringing around a mask's edge turns background pixels into
# non-zero ones and object ids into their neighbours.
IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
_LOSSY_SUFFIXES = (".jpg", ".jpeg")
# Image modes whose pixel values are labels (object ids or 0/255 gray); "LA" and "PA" carry
# opacity in a second channel, which is ignored.
_LABEL_MODES = ("1", "L", "P", "LA", "PA", "I", "I;16", "I;16B", "I;16L")
_COLOUR_MODES = ("RGB", "RGBA")
# More distinct values than this in one image are not object ids but a soft mask's greys
# (DAVIS and YouTube-VOS frames hold a handful of objects; MOSE at most a few dozen).
_MOST_IDS = 64
# Threads that decode images at once (more gain little: each read is a few windows' frames).
_MAX_THREADS = 8
# The rate a float frame rate is read at: NTSC rates such as 29.97 are 30000/1001 exactly.
_RATE_DENOMINATOR = 1_000_000


def _frame_number(path: Path) -> int | None:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


class MaskFrames:
    """A folder of mask images, one per video frame, as the masks of one object.

    Args:
        folder: the folder (``Annotations/480p/bear`` in DAVIS); images are ``.png``,
            ``.bmp`` or ``.tif``, named by frame number; other files are ignored.
        fps: the video's frame rate (image ``n`` is shown at ``n / fps``).
        object_id: the object's value in label images (None: every non-zero pixel).
    """

    def __init__(self, folder: str | os.PathLike[str], fps: float,
                 object_id: int | None = None) -> None:
        self.path = Path(folder)
        if not (math.isfinite(fps) and fps > 0):
            raise UserInputError(f"the video's frame rate must be a positive number to time "
                                 f"mask images, got {fps}", self.path)
        if object_id is not None and (isinstance(object_id, bool) or
                                      not isinstance(object_id, int) or object_id < 1):
            raise UserInputError(f"object_id must be a whole number of at least 1 (0 is the "
                                 f"background), got {object_id!r}", self.path)
        self.fps = fps
        self.object_id = object_id
        self._rate = Fraction(fps).limit_denominator(_RATE_DENOMINATOR)
        self._files: list[Path] | None = None
        self._slots: list[int] = []  # the grid slot each file starts at, ascending
        self._end_slot = 0  # one past the last slot the masks cover
        self._size: tuple[int, int] | None = None  # (width, height) of the first image
        self._cache: dict[int, torch.Tensor] = {}  # file index -> its resized mask
        self.ids_seen: set[int] = set()
        self._warned_ids = False

    @property
    def name(self) -> str:
        return str(self.path)

    def _listing(self) -> list[Path]:
        """The images in frame order (listed once; raises UserInputError for a bad folder)."""
        if self._files is not None:
            return self._files
        if not self.path.is_dir():
            what = "is not a folder" if self.path.exists() else "not found"
            raise UserInputError(f"mask image folder {what}", self.path)
        try:
            entries = sorted(p for p in self.path.iterdir() if not p.name.startswith("."))
            images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        except OSError as err:
            raise UserInputError(f"cannot list the mask images ({err.strerror})",
                                 self.path) from None
        if not images:
            if any(p.suffix.lower() in _LOSSY_SUFFIXES for p in entries):
                raise UserInputError("holds JPEG images only: mask images must be lossless "
                                     "(PNG), JPEG's compression marks pixels around the object",
                                     self.path)
            raise UserInputError(f"holds no mask images ({', '.join(IMAGE_SUFFIXES)})",
                                 self.path)
        numbered: dict[int, Path] = {}
        for image in images:
            number = _frame_number(image)
            if number is None:
                raise UserInputError("its name holds no frame number: mask images are named "
                                     "by the number of their video frame (00012.png)", image)
            if number in numbered:
                raise UserInputError(f"is frame {number}, as {numbered[number].name} is: one "
                                     "image per frame", image)
            numbered[number] = image
        numbers = sorted(numbered)
        scale = SYNC_FPS / self._rate  # frame numbers -> grid slots
        self._slots = [round_near(n * scale) for n in numbers]
        self._end_slot = round_near((numbers[-1] + 1) * scale)
        self._files = [numbered[n] for n in numbers]
        return self._files

    @property
    def duration(self) -> float:
        """Seconds from the video's first frame to the end of the last image's frame."""
        self._listing()
        return self._end_slot / SYNC_FPS

    @property
    def info(self) -> VideoInfo:
        """The folder described as a video (its first image's size; raises UserInputError)."""
        files = self._listing()
        if self._size is None:
            self._size = self._decode(0)[0]
        width, height = self._size
        return VideoInfo(path=self.path, duration=self.duration, fps=self.fps, width=width,
                         height=height, rotation=0, codec=files[0].suffix.lower().lstrip("."),
                         pix_fmt=None, num_frames=len(files), has_audio=False)

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        """uint8 ``(T, 1, 224, 224)`` masks of the slots ``k`` with ``start <= k / 25 < end``,
        0 or 255 (fewer when the masks end earlier)."""
        self._listing()
        first = slot_bound(start, Fraction(SYNC_FPS))
        stop = self._end_slot
        if end is not None:
            stop = min(stop, slot_bound(end, Fraction(SYNC_FPS)))
        # The file that fills slot k is the last one starting at or before it (-1: none yet).
        sources = [bisect_right(self._slots, k) - 1 for k in range(first, stop)]
        wanted = set(sources) - {-1}
        self._cache = {i: m for i, m in self._cache.items() if i in wanted}
        for index, mask in self._load(sorted(wanted - self._cache.keys())):
            self._cache[index] = mask
        empty = torch.zeros((1, SYNC_SIZE, SYNC_SIZE), dtype=torch.uint8)
        masks = [self._cache[i] if i >= 0 else empty for i in sources]
        if not masks:
            return torch.empty((0, 1, SYNC_SIZE, SYNC_SIZE), dtype=torch.uint8)
        return torch.stack(masks)

    def _load(self, indices: list[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """Files ``indices`` as resized ``(1, 224, 224)`` masks, in order. PNG decoding (zlib,
        which releases the GIL) is most of the time: 8 ms for a 1080p label image, so images
        are decoded on several threads; sizes and ids are checked here, in file order."""
        if not indices:
            return
        with ThreadPoolExecutor(min(_MAX_THREADS, len(indices), available_cores())) as pool:
            for index, (size, ids, mask) in zip(indices, pool.map(self._decode, indices),
                                                strict=True):
                path = self._files[index]
                if self._size is None:
                    self._size = size
                elif size != self._size:
                    raise UserInputError(f"is {size[0]}x{size[1]} but {self._files[0].name} "
                                         f"is {self._size[0]}x{self._size[1]}: every mask "
                                         "image of a folder has one size", path)
                self._note_ids(ids)
                yield index, mask

    def _decode(self, index: int) -> tuple[tuple[int, int], np.ndarray, torch.Tensor]:
        """File ``index``: its ``(width, height)``, the object ids it holds (none for colour
        images) and its resized ``(1, 224, 224)`` mask."""
        path = self._files[index]
        try:
            with Image.open(path) as image:
                image.load()
                mode, size = image.mode, image.size
                pixels = np.asarray(image)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise UserInputError(f"cannot read the mask image ({err})", path) from None
        if mode in _COLOUR_MODES:
            if self.object_id is not None:
                raise UserInputError(f"is a colour ({mode}) image: an object id needs label "
                                     "images (palette or gray PNGs, values = object ids)", path)
            return size, np.empty(0, np.int64), resize_masks(pixels[None, ..., :3].any(-1))[0]
        if mode not in _LABEL_MODES:
            raise UserInputError(f"has image mode {mode}, which is not a mask (use palette, "
                                 "gray or RGB PNGs)", path)
        labels = pixels[..., 0] if pixels.ndim == 3 else pixels
        if labels.dtype == np.bool_:
            labels = labels.astype(np.uint8)
        if labels.dtype == np.uint8:
            ids = np.flatnonzero(np.bincount(labels.ravel(), minlength=256)[1:]) + 1
        else:
            ids = np.unique(labels[labels != 0])
        mask = labels == self.object_id if self.object_id is not None else labels != 0
        return size, ids, resize_masks(mask[None])[0]

    def _note_ids(self, ids: np.ndarray) -> None:
        """Record the ids an image holds; warn once when several are taken as one object."""
        self.ids_seen.update(int(i) for i in ids)
        if self.object_id is not None or len(ids) < 2 or self._warned_ids:
            return
        self._warned_ids = True
        if len(ids) > _MOST_IDS:
            logger.warning("%s: a mask image holds %d values, too many for object ids: a soft "
                           "(grey) mask? Every non-zero pixel is taken as the object; store "
                           "masks as 0 and 255, or as label images", self.name, len(ids))
        else:
            logger.warning("%s: the mask images hold several object ids (%s), all taken as "
                           "one object; choose one with --mask_id (object_id in Python)",
                           self.name, ", ".join(str(int(i)) for i in ids))

    def empty_hint(self) -> str:
        """What to add when the masks read empty: the ids the images do hold."""
        if self.object_id is None or not self.ids_seen:
            return ""
        seen = ", ".join(str(i) for i in sorted(self.ids_seen)[:8])
        return f" (the mask images hold object ids {seen}, not {self.object_id})"

    def close(self) -> None:
        """Drop the masks kept for the next read."""
        self._cache = {}
