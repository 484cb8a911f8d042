"""How a result was generated, recorded in its own files.

Every sound file and MP4 that :func:`~saganet.soundtrack.write_soundtrack` writes carries a
``comment`` tag (a Vorbis comment in FLAC, ``ICMT`` in WAV, ``©cmt`` in MP4) holding one JSON
object: saganet's version, the model, the video and its seconds, the sampler's settings and,
for every object, its name, prompt, negative prompt (as generated, after
``negatives_from_others``), where its masks came from (a mask video's file name, or the
clicks, boxes or phrase it was tracked from and the tracking model) and seed. A stem's file
also names its object. Takes, seeds and prompts tried in a session thus stay attached to the
files they made, in any player or ``ffprobe``, and :func:`read_settings` returns them as a
dict.

Only names are recorded, never folders: the files may be shared. The tag is left out with
``SoundtrackRequest(record_settings=False)`` (``--no_settings`` on the command line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.error

from saganet import __version__
from saganet.errors import UserInputError
from saganet.media.masks import MaskVideo

if TYPE_CHECKING:
    import torch

    from saganet.inference import SamplingOptions
    from saganet.soundtrack.request import SoundtrackRequest

# The tag that holds the settings, and the record's format (raised when a field changes
# meaning, so readers can tell).
SETTINGS_TAG = "comment"
SETTINGS_FORMAT = "saganet-settings-1"


def settings_record(request: SoundtrackRequest, *, start: float, duration: float,
                    options: SamplingOptions, seed: int, model: str | None,
                    dtype: torch.dtype) -> dict[str, Any]:
    """The record of one request, with the seconds it covered (its segment), the sampler's
    options, the seed of its first object (object ``k`` gets ``seed + k``), the model's name
    (None: unknown) and dtype."""
    return {
        "format": SETTINGS_FORMAT,
        "generator": f"saganet {__version__}",
        "model": model,
        "precision": str(dtype).removeprefix("torch."),
        "video": Path(request.video).name,
        "start": start,
        "duration": duration,
        "cfg_strength": options.cfg_strength,
        "num_steps": options.num_steps,
        "method": options.method,
        "join": request.join,
        "overlap": request.overlap,
        "silence_hidden": request.silence_hidden,
        "mask_away_clip": request.mask_away_clip,
        "objects": [{"name": o.name, "prompt": o.prompt,
                     "negative_prompt": request.negative_prompt(o), "masks": _masks(o.masks),
                     "seed": seed + k} for k, o in enumerate(request.objects)],
    }


def _masks(masks: object) -> dict[str, object] | None:
    """Where an object's masks came from: ``{"video": <mask video's file name>}``,
    ``{"tracked": <prompts and model>}`` for masks tracked by
    :func:`~saganet.segment.track_objects` (its ``origin``), None for other masks."""
    if isinstance(masks, MaskVideo):
        return {"video": masks.path.name}
    origin = getattr(masks, "origin", None)
    return None if origin is None else {"tracked": origin}


def settings_tags(record: dict[str, Any], object_name: str | None = None) -> dict[str, str]:
    """The tags that carry ``record``; ``object_name``: the file holds that object's stem."""
    if object_name is not None:
        record = {**record, "object": object_name}
    # ASCII (non-ASCII as \u escapes): WAV's INFO list has no declared text encoding.
    return {SETTINGS_TAG: json.dumps(record, ensure_ascii=True, separators=(",", ":"))}


def read_settings(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings a saganet result was generated with (see the module docstring), or None
    for a file without them (another program's, or written with ``record_settings=False``).

    Raises:
        UserInputError: the file cannot be read as audio or video.
    """
    try:
        with av.open(os.fspath(path)) as container:
            text = container.metadata.get(SETTINGS_TAG)
    except (av.error.FFmpegError, OSError) as err:
        raise UserInputError(f"cannot read the file's tags ({err})", path) from None
    if not text:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None  # another program's comment
    if not isinstance(record, dict) or record.get("format") != SETTINGS_FORMAT:
        return None
    return record
