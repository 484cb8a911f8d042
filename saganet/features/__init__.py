"""Conditioning feature extractors: segmentation-aware Synchformer, focal crop, CLIP.

``ClipEncoder`` and ``tiny_clip`` are imported on first use: open_clip takes seconds to import
and most callers (training on cached CLIP features, the Synchformer tests) never need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saganet.features.checkpoint import load_mmaudio_synchformer, load_saganet_synchformer
from saganet.features.config import SYNCHFORMER_SIZES, SynchformerConfig
from saganet.features.focal_crop import focal_crop, focal_crop_boxes
from saganet.features.segments import encode_sync, encode_sync_plain, num_sync_windows
from saganet.features.synchformer import Synchformer, SynchformerWithContext
from saganet.lazy import lazy_names

if TYPE_CHECKING:
    from saganet.features.clip import ClipEncoder, tiny_clip

_LAZY = {"ClipEncoder": "saganet.features.clip", "tiny_clip": "saganet.features.clip"}

__all__ = [
    "SYNCHFORMER_SIZES",
    "ClipEncoder",
    "Synchformer",
    "SynchformerConfig",
    "SynchformerWithContext",
    "encode_sync",
    "encode_sync_plain",
    "focal_crop",
    "focal_crop_boxes",
    "load_mmaudio_synchformer",
    "load_saganet_synchformer",
    "num_sync_windows",
    "tiny_clip",
]

__getattr__ = lazy_names(__name__, _LAZY)
