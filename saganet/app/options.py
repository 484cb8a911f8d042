"""The generation options of one request: time range, guidance, steps, seed, variant, whether
the MP4 also carries the video's own sound, whether the mix is stereo, the sound files' type
and rate, negative prompts from the other objects, and sound where an object is hidden.

The page's advanced options and the ``/generate`` endpoint's ``options`` mapping both become a
:class:`GenerationOptions`, checked once here, with the demo's defaults and meanings except
one: without a duration or an end the whole video is generated (the demo's default is 5 s).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from saganet.app.limits import Limits
from saganet.errors import UserInputError, check_cfg_strength, check_time_range
from saganet.soundtrack import check_seed
from saganet.soundtrack.request import AUDIO_FORMATS, OUTPUT_RATES


@dataclass(frozen=True)
class GenerationOptions:
    """What to generate and how (the demo's options of the same names).

    Args:
        start: seconds of the video to skip.
        duration: seconds to generate from ``start`` (None: to the end of the video).
        end: second to stop at (replaces ``duration``; None: not given).
        cfg_strength: classifier-free guidance strength.
        num_steps: Euler steps.
        seed: seed of the initial noise (object ``k`` uses ``seed + k``).
        variant: model variant (None: the one the app was started with).
        original_sound: the MP4 also carries the video's own sound as its last track.
        pan: a stereo mix, each object placed left to right where it is in the frame.
        audio_format: the sound files' type, ``flac`` or ``wav``.
        sample_rate: the files' sampling rate in Hz, one of
            :data:`~saganet.soundtrack.request.OUTPUT_RATES` (the model's: 44100).
        negatives_from_others: an object without a negative prompt takes the other objects'
            prompts as its negative prompt.
        keep_hidden: generate an object also where its mask is empty for a whole window
            (default: silent there).
    """

    start: float = 0.0
    duration: float | None = None
    end: float | None = None
    cfg_strength: float = 7.0
    num_steps: int = 25
    seed: int = 42
    variant: str | None = None
    original_sound: bool = False
    pan: bool = False
    audio_format: str = "flac"
    sample_rate: int = 44100
    negatives_from_others: bool = False
    keep_hidden: bool = False

    def __post_init__(self) -> None:
        check_time_range(self.start, self.end, self.duration)
        check_cfg_strength(self.cfg_strength, "guidance strength")
        if self.num_steps < 1:
            raise UserInputError(f"steps must be at least 1, got {self.num_steps}")
        # The objects are not known yet: the request checks seed + k for each when it runs.
        check_seed(self.seed, 1)
        if self.audio_format not in AUDIO_FORMATS:
            raise UserInputError(f"option audio_format must be one of "
                                 f"{', '.join(AUDIO_FORMATS)}, got {self.audio_format!r}")
        if isinstance(self.sample_rate, bool) or self.sample_rate not in OUTPUT_RATES:
            raise UserInputError(f"option sample_rate must be one of "
                                 f"{', '.join(map(str, OUTPUT_RATES))}, got {self.sample_rate!r}")

    @property
    def segment_duration(self) -> float | None:
        """Seconds generated from ``start`` (None: to the end of the video)."""
        return self.end - self.start if self.end is not None else self.duration

    def check(self, limits: Limits) -> None:
        """Raises UserInputError when the request asks for more steps than the app allows."""
        if self.num_steps > limits.max_steps:
            raise UserInputError(f"{self.num_steps} steps; this app allows at most "
                                 f"{limits.max_steps}")

    @classmethod
    def from_values(cls, **values: Any) -> GenerationOptions:
        """Options from loosely typed values (form fields, JSON): blank fields (None or "")
        take the defaults, numbers are converted, and wrong types are user errors.

        Raises:
            UserInputError: an unknown option or a value of the wrong type.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserInputError(f"unknown option(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(known)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            converted[name] = _convert(name, value)
        return cls(**converted)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> GenerationOptions:
        """Options from the ``/generate`` endpoint's ``options`` mapping (None: defaults).

        Raises:
            UserInputError: not a mapping, an unknown option or a value of the wrong type.
        """
        if values is None:
            return cls()
        if not isinstance(values, Mapping):
            raise UserInputError("options must be a JSON object, e.g. {\"num_steps\": 25}")
        return cls.from_values(**values)


_INTEGERS = ("num_steps", "seed", "sample_rate")
_SWITCHES = ("original_sound", "pan", "negatives_from_others", "keep_hidden")
_NAMES = ("variant", "audio_format")


def _convert(name: str, value: Any) -> Any:
    if name in _NAMES:
        if not isinstance(value, str):
            raise UserInputError(f"option {name} must be a name, got {value!r}")
        return value.strip()
    if name in _SWITCHES:
        # A switch: true or false only (bool("false") would be True).
        if not isinstance(value, bool):
            raise UserInputError(f"option {name} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool):
        raise UserInputError(f"option {name} must be a number, got {value!r}")
    if name in _INTEGERS:
        # Exactly, when written as one: through a float, a seed above 2^53 would change.
        try:
            return value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            pass  # "3.0", 3.0: a whole number written as a float, checked below
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"option {name} must be a number, got {value!r}") from None
    except OverflowError:
        # JSON carries whole numbers of any length; float() refuses those past its range.
        raise UserInputError(f"option {name} is too large a number (beyond "
                             f"{sys.float_info.max:.3g})") from None
    if name in _INTEGERS:
        if not number.is_integer():
            raise UserInputError(f"option {name} must be a whole number, got {value!r}")
        return int(number)
    return number
