"""Masks from clicks, boxes or words: the objects a user points at, tracked through a video.

Typical use::

    from saganet.segment import object_prompt, track_objects
    violin = object_prompt("violin", clicks=["812,430@1.5"])
    tracking = track_objects("clip.mp4", [violin], progress=True)
    masks = tracking.objects["violin"]          # a MaskSource: masks.read(0.0, 5.0)
    tracking.write_mask_video("violin", "clip_mask.mp4")

``prompts`` parses what the user gives, ``models`` finds and loads SAM 2.1 / SAM 3 (through
Hugging Face ``transformers``, imported only when a model loads), ``grid`` streams the video on
the 25 fps model grid, ``session`` drives SAM 2 with bounded memory, ``text`` drives SAM 3,
``store`` keeps the masks compact, ``writers`` writes mask videos and previews, and
``tracking`` ties them together in :func:`track_objects`.

Names are imported on first use, so that ``python -m saganet.segment --help`` and prompt
parsing stay instant.
"""

from __future__ import annotations

from saganet.lazy import lazy_names

_EXPORTS = {
    "BoxPrompt": ".prompts",
    "ObjectPrompt": ".prompts",
    "PointPrompt": ".prompts",
    "PromptTime": ".prompts",
    "SegmenterCache": ".models",
    "object_prompt": ".prompts",
    "parse_box": ".prompts",
    "parse_point": ".prompts",
    "Span": ".store",
    "TrackedMasks": ".store",
    "Tracking": ".tracking",
    "track_objects": ".tracking",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_names(__name__, _EXPORTS)
