"""Soundtracks of whole videos: several objects, any length, one stem per object and a mix.

``plan`` cuts a video into windows, ``join`` joins them (joint sampling or crossfade), ``mix``
levels the mix, ``request`` says what to generate and ``render`` does it
(:func:`write_soundtrack`, the one path of ``demo.py``, ``python -m saganet.batch`` and the
web app); ``clip_pass`` computes CLIP's share first, for one-shot runs that load CLIP alone;
``window_images`` encodes each CLIP frame that overlapping windows share once, for both;
``feature_cache`` keeps CLIP's and the Synchformer's features of a video for the next call;
``settings`` records in every file how it was generated (:func:`read_settings` reads it).
"""

from saganet.soundtrack.clip_pass import ClipFeatures, encode_clip_features
from saganet.soundtrack.feature_cache import FeatureCache
from saganet.soundtrack.plan import check_long_enough
from saganet.soundtrack.render import (
    Segment,
    SoundtrackResult,
    check_output_folder,
    check_outputs,
    check_seed,
    plan_soundtrack,
    resolve_segment,
    timed,
    write_soundtrack,
)
from saganet.soundtrack.request import SoundObject, SoundtrackOutputs, SoundtrackRequest
from saganet.soundtrack.settings import read_settings

__all__ = [
    "ClipFeatures",
    "FeatureCache",
    "Segment",
    "SoundObject",
    "SoundtrackOutputs",
    "SoundtrackRequest",
    "SoundtrackResult",
    "check_long_enough",
    "check_output_folder",
    "check_outputs",
    "check_seed",
    "encode_clip_features",
    "plan_soundtrack",
    "read_settings",
    "resolve_segment",
    "timed",
    "write_soundtrack",
]
