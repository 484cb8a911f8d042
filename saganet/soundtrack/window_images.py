"""CLIP image features of a long video's windows, each frame encoded once.

:func:`~saganet.media.windows.read_windows` puts every window's 8 fps CLIP frames on the
video's one grid (``WindowFrames.clip_slots``), so two overlapping windows hold the same images
where they overlap. CLIP ViT-H/14 is most of a clip's cost on a CPU; with the default overlap of
1 s, 8 of a window's 40 frames were already encoded for the window before it, and a 30 s video
needs 240 images instead of 320. CLIP sees each image alone, so the features are those of
encoding every window's frames, up to the float rounding of other batch sizes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from saganet.media.windows import WindowFrames

if TYPE_CHECKING:
    # Only named in annotations: importing it imports open_clip (seconds).
    from saganet.features.clip import ClipEncoder
    from saganet.soundtrack.feature_cache import FeatureCache, VideoKey


class WindowImageEncoder:
    """Encodes windows' CLIP frames in time order, reusing the frames windows share.

    Args:
        clip: the CLIP encoder.
        chunk_size: images per CLIP pass (``None``: a window's new frames at once).
        cache: features kept from earlier generations, looked up (and filled) under
            ``video``; None: none.
        video: the video's key in ``cache``.

    Attributes:
        encoded: images that went through CLIP so far.
    """

    def __init__(self, clip: ClipEncoder, chunk_size: int | None = None,
                 cache: FeatureCache | None = None, video: VideoKey | None = None) -> None:
        if cache is not None and video is None:
            raise ValueError("a cache needs the video's key")
        self.clip = clip
        self.chunk_size = chunk_size
        self.cache, self.video = cache, video
        self.encoded = 0
        self._features: dict[int, torch.Tensor] = {}

    @torch.inference_mode()
    def __call__(self, frames: WindowFrames) -> torch.Tensor:
        """``(1, Tc, embed_dim)`` features of one window's CLIP frames.

        Windows must come with increasing starts (as ``read_windows`` yields them; windows may
        be skipped): features of slots before this window's first are dropped.
        """
        slots = frames.clip_slots
        first = min(slots)
        for slot in [s for s in self._features if s < first]:
            del self._features[slot]
        position = {slot: i for i, slot in enumerate(slots)}
        if self.cache is not None:
            self._take_cached(s for s in position if s not in self._features)
        new = [s for s in position if s not in self._features]
        if new:
            images = frames.clip_frames[[position[s] for s in new]]
            features = self.clip.encode_images(images[None], chunk_size=self.chunk_size)[0]
            self._features.update(zip(new, features, strict=True))
            self.encoded += len(new)
            if self.cache is not None:
                for slot, feature in zip(new, features, strict=True):
                    self.cache.put(("clip", self.video, slot), feature)
        return torch.stack([self._features[s] for s in slots])[None]

    def _take_cached(self, slots: Iterable[int]) -> None:
        """The features of those ``slots`` that the cache has, on CLIP's device (where the
        features of new frames come out)."""
        for slot in slots:
            feature = self.cache.get(("clip", self.video, slot))
            if feature is not None:
                self._features[slot] = feature.to(self.clip.device)
