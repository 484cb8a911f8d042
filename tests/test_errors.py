"""The shared check of user-given durations and times."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest

from saganet.errors import (
    MAX_CFG_STRENGTH,
    UserInputError,
    check_cfg_strength,
    check_seconds,
    check_time_range,
)
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


@pytest.mark.parametrize("value", [4.5, 0, -1, np.float32(7), MAX_CFG_STRENGTH,
                                   -MAX_CFG_STRENGTH])
def test_guidance_strengths_in_range_become_plain_floats(value: object) -> None:
    result = check_cfg_strength(value)
    assert type(result) is float and result == float(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, 1000.5, -2e3,
                                   10**400, "4.5", None, True])
def test_guidance_strengths_that_would_make_nan_audio_are_refused(value: object) -> None:
    with pytest.raises(UserInputError, match=r"^guidance must be a finite number from -1000 "
                                             r"to 1000, got "):
        check_cfg_strength(value, "guidance")


@pytest.mark.parametrize("value", [0, -0.5, np.float64(-1)])
def test_positive_refuses_zero_and_below(value: object) -> None:
    with pytest.raises(UserInputError, match=r"^duration must be a positive number of seconds"):
        check_seconds(value, "duration", positive=True)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("duration", math.inf, "duration must be a positive number of seconds, got inf"),
    ("duration", 0, "duration must be a positive number of seconds, got 0"),
    ("overlap", math.nan, "overlap must be a number of seconds, got nan"),
    ("start", "1", "start must be a non-negative number of seconds, got '1'"),
])
def test_request_times_are_checked(field: str, value: object, message: str) -> None:
    objects = (SoundObject("violin", "violin_mask.mp4"),)
    with pytest.raises(UserInputError, match=f"^{message}$"):
        SoundtrackRequest("duet.mp4", objects, "out", **{field: value})


@pytest.mark.parametrize(("start", "message"), [
    ("1", "start must be a non-negative number of seconds, got '1'"),
    (math.nan, "start must be a non-negative number of seconds, got nan"),
    (-0.5, "start must be a non-negative number of seconds, got -0.5"),
])
def test_video_writer_times_are_checked_before_any_file(tmp_path, start: object,
                                                         message: str) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        write_video_with_audio(tmp_path / "absent.mp4", np.zeros(441, np.float32), 44_100, out,
                               1.0, start=start)
    assert not out.exists()


@pytest.mark.parametrize(("start", "end", "duration", "expected"), [
    (0, None, None, (0.0, None)),
    (1.5, None, 2, (1.5, 2.0)),
    (1, 4, None, (1.0, 3.0)),
    (1, 4, 10, (1.0, 3.0)),  # the end takes the duration's place
])
def test_a_time_range_is_start_and_length(start, end, duration, expected) -> None:
    assert check_time_range(start, end, duration) == expected


@pytest.mark.parametrize(("start", "end", "duration", "message"), [
    (-0.5, None, None, "start must be a non-negative number of seconds, got -0.5"),
    (math.inf, None, None, "start must be a non-negative number of seconds, got inf"),
    (0, math.nan, None, "end must be a number of seconds, got nan"),
    (0, None, 0, "duration must be a positive number of seconds, got 0"),
    (0, 4, -1, "duration must be a positive number of seconds, got -1"),
    (2, 2, None, "end (2 s) must come after start (2 s)"),
    (2, 1.5, None, "end (1.5 s) must come after start (2 s)"),
])
def test_a_bad_time_range_is_named(start, end, duration, message) -> None:
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        check_time_range(start, end, duration)
    flags = message.replace("start", "--start").replace("end", "--end").replace(
        "duration", "--duration")
    with pytest.raises(UserInputError, match=f"^{re.escape(flags)}$"):
        check_time_range(start, end, duration, names=("--start", "--end", "--duration"))


@pytest.mark.parametrize(("start", "end"), [(-1.0, None), (3.0, 2.0), (0.0, math.inf)])
def test_the_app_the_tracker_and_the_commands_say_the_same(start, end) -> None:
    """One check behind every place a user gives a time range."""
    import argparse

    from saganet.app.options import GenerationOptions
    from saganet.cli import segment_duration
    from saganet.segment.grid import GridIndex
    from saganet.segment.tracking import _tracked_range

    with pytest.raises(UserInputError) as expected:
        check_time_range(start, end)
    message = str(expected.value)
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        GenerationOptions(start=start, end=end)
    index = GridIndex.__new__(GridIndex)  # the range is refused before the video is needed
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        _tracked_range(index, start, end)
    args = argparse.Namespace(start=start, end=end, duration=5.0)
    with pytest.raises(UserInputError, match=re.escape(message.replace("start", "--start")
                                                       .replace("end", "--end"))):
        segment_duration(args)
    if end is None:
        with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
            SoundtrackRequest("duet.mp4", (SoundObject("violin", "violin_mask.mp4"),), "out",
                              start=start)
