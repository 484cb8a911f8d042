"""The shared check of user-given durations and times."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest

from saganet.errors import UserInputError, check_seconds
from saganet.media.output import write_video_with_audio
from saganet.soundtrack.request import SoundObject, SoundtrackRequest


@pytest.mark.parametrize("value", [2, 2.5, np.float32(0.25), np.int64(3), Fraction(1, 3), 0, -1.0])
def test_real_numbers_become_plain_floats(value: object) -> None:
    result = check_seconds(value, "start")
    assert type(result) is float
    assert result == float(value)


@pytest.mark.parametrize("value", ["2", None, True, math.inf, -math.inf, math.nan, [2.0],
                                   10**400])
def test_other_values_name_the_field(value: object) -> None:
    with pytest.raises(UserInputError, match=r"^overlap must be a number of seconds, got "):
        check_seconds(value, "overlap")


@pytest.mark.parametrize("value", [0, -0.5, np.float64(-1)])
def test_positive_refuses_zero_and_below(value: object) -> None:
    with pytest.raises(UserInputError, match=r"^duration must be a positive number of seconds"):
        check_seconds(value, "duration", positive=True)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("duration", math.inf, "duration must be a positive number of seconds, got inf"),
    ("duration", 0, "duration must be a positive number of seconds, got 0"),
    ("overlap", math.nan, "overlap must be a number of seconds, got nan"),
    ("start", "1", "start must be a number of seconds, got '1'"),
])
def test_request_times_are_checked(field: str, value: object, message: str) -> None:
    objects = (SoundObject("violin", "violin_mask.mp4"),)
    with pytest.raises(UserInputError, match=f"^{message}$"):
        SoundtrackRequest("duet.mp4", objects, "out", **{field: value})


@pytest.mark.parametrize(("start", "message"), [
    ("1", "start must be a number of seconds, got '1'"),
    (math.nan, "start must be a number of seconds, got nan"),
    (-0.5, "start must be a non-negative number of seconds, got -0.5"),
])
def test_video_writer_times_are_checked_before_any_file(tmp_path, start: object,
                                                         message: str) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        write_video_with_audio(tmp_path / "absent.mp4", np.zeros(441, np.float32), 44_100, out,
                               1.0, start=start)
    assert not out.exists()
