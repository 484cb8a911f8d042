"""Video features kept from one generation to the next.

In the web app (or a notebook) one video is generated again and again with another prompt,
seed, guidance strength or number of steps. CLIP's image features depend on the video's frames
alone and the Synchformer's on the frames and one object's masks, and on a CPU they are about
90 % of a window's time (at official size, 613 and 301 of 1006 CPU-s for a 5 s clip). A
:class:`FeatureCache` given to :func:`~saganet.soundtrack.write_soundtrack` keeps them, so
that the next generation of the same video and masks starts with the text and the sampling.

What a feature is kept under: the video by its resolved path, inode, size and modification
and status-change times (a file rewritten in place is another video, also one whose
modification time was set back); a CLIP frame by its slot on the video's
8 fps grid (the same frame in every window and time range that holds it); a window's
Synchformer features by its 25 fps slots and a digest of the object's masks there (tracking
the object again with other clicks gives other masks). Features hold for one set of models in
one dtype and on one device: given other models, the cache empties. The least recently used
features go first once the cache holds more than its budget.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from saganet.models import SAGANetModels

# 512 MB: about 1,000 windows of 5 s (Synchformer features of one object and the CLIP frames)
# at official size, fp32. The commands' --feature_cache_mb default (saganet.cli) is the same.
DEFAULT_MAX_BYTES = 512 * 10**6

VideoKey = tuple[str, int, int, int, int]


def video_key(path: str | os.PathLike) -> VideoKey:
    """What identifies a video file's contents without reading them: its resolved path,
    inode, size, and modification and status-change times (ns; the latter changes with every
    write and cannot be set back)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def masks_digest(masks: torch.Tensor) -> bytes:
    """A digest of a window's masks (any dtype, any device)."""
    data = masks.detach().to("cpu").contiguous()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.digest()


class FeatureCache:
    """CLIP and Synchformer features of videos, kept across generations (see the module).

    Thread-safe only as far as its users serialise their generations (the app does: one
    generation at a time holds the models).

    Args:
        max_bytes: most bytes of features kept; the least recently used go first.

    Attributes:
        hits: features found here since the cache was made.
        misses: features looked for and not found.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._models: weakref.ref[SAGANetModels] | None = None
        self._layout: tuple[torch.device, torch.dtype] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes of the features kept."""
        return self._bytes

    def clear(self) -> None:
        """Forget every feature."""
        self._entries.clear()
        self._bytes = 0

    def bind(self, models: SAGANetModels) -> None:
        """Use the cache with ``models``: features of other models (or of these in another
        dtype or on another device) are forgotten."""
        layout = (models.device, models.dtype)
        if self._models is None or self._models() is not models or self._layout != layout:
            self.clear()
            self._models = weakref.ref(models)
            self._layout = layout

    def get(self, key: Hashable) -> torch.Tensor | None:
        """The feature kept under ``key`` (on the CPU), or None."""
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: torch.Tensor) -> None:
        """Keep a copy of ``value`` on the CPU (the features are small; device memory is
        the models')."""
        if value.nbytes > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._entries[key] = value.detach().to("cpu", copy=True)
        self._bytes += value.nbytes
        while self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.nbytes
