"""SAGANet: segmentation-aware video-to-audio generation.

The names most scripts need are here, imported on first use (``import saganet`` stays cheap:
no torch until one of them is touched)::

    import saganet
    models = saganet.load_models("saganet_small", device="cuda")
    request = saganet.SoundtrackRequest(video="duet.mp4", output_dir="out", objects=(
        saganet.SoundObject("violin", saganet.MaskVideo("violin_mask.mp4"), prompt="violin"),))
    saganet.write_soundtrack(models, request, options=saganet.SamplingOptions(cfg_strength=7.0))

Each is the object of its module (``saganet.generate is saganet.inference.generate``); the
modules hold the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saganet.lazy import lazy_names

__version__ = "0.1.0"

if TYPE_CHECKING:
    from saganet.cancel import CancelToken
    from saganet.inference import GenerationBatch, SamplingOptions, generate
    from saganet.media.mask_frames import MaskFrames
    from saganet.media.masks import MaskVideo, mask_source
    from saganet.pipeline import load_clip, load_models
    from saganet.segment import object_prompt, track_objects
    from saganet.soundtrack import (
        FeatureCache,
        SoundObject,
        SoundtrackRequest,
        read_settings,
        write_soundtrack,
    )

# name -> the module that defines it
_EXPORTS = {
    "CancelToken": "saganet.cancel",
    "FeatureCache": "saganet.soundtrack",
    "GenerationBatch": "saganet.inference",
    "MaskFrames": "saganet.media.mask_frames",
    "MaskVideo": "saganet.media.masks",
    "SamplingOptions": "saganet.inference",
    "SoundObject": "saganet.soundtrack",
    "SoundtrackRequest": "saganet.soundtrack",
    "generate": "saganet.inference",
    "load_clip": "saganet.pipeline",
    "load_models": "saganet.pipeline",
    "mask_source": "saganet.media.masks",
    "object_prompt": "saganet.segment",
    "read_settings": "saganet.soundtrack",
    "track_objects": "saganet.segment",
    "write_soundtrack": "saganet.soundtrack",
}

__all__ = [
    "CancelToken",
    "FeatureCache",
    "GenerationBatch",
    "MaskFrames",
    "MaskVideo",
    "SamplingOptions",
    "SoundObject",
    "SoundtrackRequest",
    "__version__",
    "generate",
    "load_clip",
    "load_models",
    "mask_source",
    "object_prompt",
    "read_settings",
    "track_objects",
    "write_soundtrack",
]


__getattr__ = lazy_names(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
