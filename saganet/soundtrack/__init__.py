"""Soundtracks of whole videos: several objects, any length, one stem per object and a mix.

``plan`` cuts a video into windows, ``join`` joins them (joint sampling or crossfade), ``mix``
levels the mix, ``request`` says what to generate and ``render`` does it
(:func:`write_soundtrack`, the one path of ``demo.py``, ``python -m saganet.batch`` and the
web app).
"""

from saganet.soundtrack.render import (
    Segment,
    SoundtrackResult,
    check_outputs,
    resolve_segment,
    timed,
    write_soundtrack,
)
from saganet.soundtrack.request import SoundObject, SoundtrackOutputs, SoundtrackRequest

__all__ = [
    "Segment",
    "SoundObject",
    "SoundtrackOutputs",
    "SoundtrackRequest",
    "SoundtrackResult",
    "check_outputs",
    "resolve_segment",
    "timed",
    "write_soundtrack",
]
