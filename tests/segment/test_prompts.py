"""Parsing of clicks, boxes and times, objects, and the command line's object groups."""

from __future__ import annotations

import pytest

from saganet.errors import UserInputError
from saganet.segment.__main__ import build_parser, objects_from_args
from saganet.segment.prompts import (
    ObjectPrompt,
    PointPrompt,
    PromptTime,
    box_text,
    check_unique_names,
    object_prompt,
    parse_box,
    parse_point,
    point_text,
    prompt_flags,
)


@pytest.mark.parametrize(("text", "x", "y", "time"), [
    ("812,430", 812.0, 430.0, PromptTime(0.0)),
    (" 12.5 , 7 ", 12.5, 7.0, PromptTime(0.0)),
    ("3,4@1.5", 3.0, 4.0, PromptTime(1.5)),
    ("3,4@.25", 3.0, 4.0, PromptTime(0.25)),
    ("3,4@f37", 3.0, 4.0, PromptTime(None, 37)),
    ("0,0@F0", 0.0, 0.0, PromptTime(None, 0)),
])
def test_parse_point(text, x, y, time):
    point = parse_point(text)
    assert (point.x, point.y, point.time, point.positive) == (x, y, time, True)
    assert parse_point(text, positive=False).positive is False


@pytest.mark.parametrize("text", ["812", "1,2,3", "a,b", "1,2@", "1,2@-1", "1,2@fx",
                                  "1,2@f-3", "1,2@1s", "nan,2", "inf,2", ""])
def test_parse_point_rejects(text):
    with pytest.raises(UserInputError):
        parse_point(text)


def test_parse_box_sorts_corners_and_keeps_time():
    box = parse_box("40,30,10,5@f9")
    assert (box.x0, box.y0, box.x1, box.y1) == (10.0, 5.0, 40.0, 30.0)
    assert box.time == PromptTime(None, 9)


@pytest.mark.parametrize("text", ["812,430", "12.5,7@0.1", "3,4@f37", "0.1,1e-07@1e+20",
                                  "-3,4.5@0.3333333333333333"])
def test_point_and_box_text_parse_back(text):
    point = parse_point(text)
    assert parse_point(point_text(point)) == point
    negative = parse_point(text, positive=False)
    assert parse_point(point_text(negative), positive=False) == negative
    box = parse_box(f"{text.split('@')[0]},900,950{text[len(text.split('@')[0]):]}")
    assert parse_box(box_text(box)) == box


def test_prompt_flags_name_only_the_prompts_given():
    obj = object_prompt("a", clicks=["1,2", "3.5,4@f2"], negative_clicks=["5,6@1.25"],
                        boxes=["40,30,10,5"])
    assert prompt_flags(obj) == {"click": ["1,2@0", "3.5,4@f2"],
                                 "negative_click": ["5,6@1.25"], "box": ["10,5,40,30@0"]}
    assert prompt_flags(object_prompt("b", text="a violin")) == {"segment_text": "a violin"}


@pytest.mark.parametrize("text", ["10,10,10,40", "1,5,9,5@2", "0,0,0,0"])
def test_zero_area_box_is_an_error(text):
    with pytest.raises(UserInputError, match="zero area"):
        parse_box(text)


def test_object_needs_a_usable_prompt():
    with pytest.raises(UserInputError, match="give a click"):
        ObjectPrompt("a")
    with pytest.raises(UserInputError, match="negative clicks alone"):
        object_prompt("a", negative_clicks=["1,2"])
    with pytest.raises(UserInputError, match="cannot be combined"):
        object_prompt("a", clicks=["1,2"], text="violin")
    with pytest.raises(UserInputError, match="empty"):
        object_prompt("a", text="  ")
    with pytest.raises(UserInputError, match="object name"):
        object_prompt("../x", clicks=["1,2"])
    # "$" matches before a final newline: the whole name must match.
    with pytest.raises(UserInputError, match="object name"):
        object_prompt("a\n", clicks=["1,2"])
    # One rule for every object name: a tracked object is sonified under its name, so what a
    # mask video's object may be called ("violín", "a+b") a tracked one may be too.
    for name in ("violín", "a+b", "_x"):
        assert object_prompt(name, clicks=["1,2"]).name == name
    with pytest.raises(UserInputError, match="not usable in file names"):
        object_prompt("a b", clicks=["1,2"])
    obj = object_prompt("a", clicks=["1,2"], negative_clicks=["3,4@f2"])
    assert obj.points == (PointPrompt(1, 2), PointPrompt(3, 4, False, PromptTime(None, 2)))


@pytest.mark.parametrize("second", ["violin", "Violin", "VIOLIN"])
def test_names_must_differ_case_aside(second):
    # The names become mask file names, one file for both on case-insensitive file systems.
    first = object_prompt("violin", clicks=["1,2"])
    with pytest.raises(UserInputError, match="two objects are called"):
        check_unique_names([first, object_prompt(second, clicks=["3,4"])])
    check_unique_names([first, object_prompt(second + "2", clicks=["3,4"])])


def test_the_message_names_the_two_names_that_clash():
    names = ["violin", "cello", "Cello", "VIOLIN"]
    objects = [object_prompt(name, clicks=["1,2"]) for name in names]
    # The first pair that is one file name: the cellos, which clash before the violins do.
    with pytest.raises(UserInputError, match=f"called {names[1]!r} and {names[2]!r};"):
        check_unique_names(objects)


def _objects(argv):
    args = build_parser().parse_args(["clip.mp4", "--output", "out", *argv])
    return objects_from_args(args.prompt_items or [])


def test_command_line_groups_prompts_by_object():
    objects = _objects(["--click", "1,2", "--object", "violin", "--click", "3,4@1",
                        "--negative_click", "5,6", "--box", "0,0,9,9@f3",
                        "--object", "voice", "--text", "singer"])
    # The one object before any --object is named as the demo names one: object1.
    assert [o.name for o in objects] == ["object1", "violin", "voice"]
    assert objects[0].points == (PointPrompt(1, 2),)
    assert [p.positive for p in objects[1].points] == [True, False]
    assert len(objects[1].boxes) == 1 and objects[1].boxes[0].time.frame == 3
    assert objects[2].text == "singer" and not objects[2].points


def test_an_unnamed_object_is_named_after_its_phrase():
    assert [o.name for o in _objects(["--text", "the violin", "--object", "bow",
                                      "--click", "1,2"])] == ["the_violin", "bow"]
    with pytest.raises(UserInputError, match="name"):
        _objects(["--object", "", "--click", "1,2"])


@pytest.mark.parametrize(("argv", "match"), [
    ([], "nothing to track"),
    (["--object", "a", "--click", "1,1", "--object", "a", "--click", "2,2"], "two objects"),
    (["--object", "a"], "give a click"),
    (["--text", "x", "--text", "y"], "one --text"),
])
def test_command_line_object_errors(argv, match):
    with pytest.raises(UserInputError, match=match):
        _objects(argv)
