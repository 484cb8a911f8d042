"""Helpers of the command lines (saganet.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from saganet.cli import ObjectArgs, attach_dash_values, begin, device_and_dtype, object_name
from saganet.segment.prompts import object_prompt
from saganet.soundtrack import SoundObject, SoundtrackRequest


@pytest.mark.parametrize(("prompt", "name"), [
    ("violin", "violin"),
    ("a violin, bowed", "a_violin_bowed"),
    (".22 rifle", "22_rifle"),
    ("../../etc/x", "etc_x"),
    ("-rf /", "rf"),
    ("+1 dog", "1_dog"),
    ("_x_", "x"),
    ("violín", "violin"),
    ("C++ code", "C_code"),
    ("line\nbreak\n", "line_break"),
    ("x" * 50, "x" * 40),
    ("a" * 39 + " b", "a" * 39),
    ("...", "object3"),
    ("小提琴", "object3"),
    ("  ", "object3"),
])
def test_a_name_from_a_prompt_is_always_usable(prompt: str, name: str, tmp_path: Path) -> None:
    """The user gave no name: whatever the prompt, the derived one passes the request's check
    and the tracker's."""
    derived = object_name(ObjectArgs(prompt=prompt), 2)
    assert derived == name
    SoundtrackRequest(tmp_path / "v.mp4", (SoundObject(derived, tmp_path / "m.mp4"),), tmp_path)
    object_prompt(derived, clicks=["1,2"])


def test_a_given_name_is_kept() -> None:
    assert object_name(ObjectArgs(name="cello", prompt="violin"), 0) == "cello"
    assert object_name(ObjectArgs(), 1) == "object2"


def test_an_object_without_prompt_is_named_after_the_phrase_it_is_found_by() -> None:
    assert object_name(ObjectArgs(segment_text="the violin", clicks=[]), 0) == "the_violin"
    assert object_name(ObjectArgs(prompt="cello", segment_text="the violin"), 0) == "cello"
    # A prompt that leaves nothing gives way to the phrase.
    assert object_name(ObjectArgs(prompt="...", segment_text="bow"), 4) == "bow"


@pytest.mark.parametrize("value", ["-1,5", "-3,4,5,6@f2", "-.5,2@1.5"])
def test_a_point_left_of_the_frame_reaches_the_checks(value: str) -> None:
    """argparse took ``--click -1,5`` for an unknown option and said only "expected one
    argument"; the value must reach the check that says it is outside the frame."""
    from saganet.commands.demo import build_parser as demo_parser
    from saganet.segment.__main__ import build_parser as segment_parser

    args = begin(segment_parser(), ["v.mp4", "--output", "o", "--click", value,
                                    "--negative_click", value, "--box", value])
    assert args.prompt_items == [("click", value), ("negative_click", value), ("box", value)]
    args = begin(demo_parser(), ["--variant", "debug", "--click", value, "--box", value])
    assert args.objects[0].clicks == [value] and args.objects[0].boxes == [value]


def test_only_point_values_are_attached() -> None:
    argv = ["--prompt", "-1,5", "--click", "-1,5", "--", "--click", "-2,5"]
    assert attach_dash_values(argv) == ["--prompt", "-1,5", "--click=-1,5", "--", "--click",
                                        "-2,5"]


def test_the_cache_rule_of_the_help_is_cache_dirs(tmp_path: Path, monkeypatch) -> None:
    """CACHE_DEFAULT, shown by every --weights_dir, says what cache_dir does without a folder."""
    from saganet.cli import CACHE_DEFAULT
    from saganet.weights import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SAGANET_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    found = [cache_dir()]
    monkeypatch.delenv("SAGANET_CACHE")
    found.append(cache_dir())
    monkeypatch.delenv("XDG_CACHE_HOME")
    found.append(cache_dir())
    assert found == [tmp_path / "own", tmp_path / "xdg" / "saganet",
                     tmp_path / "home" / ".cache" / "saganet"]
    assert CACHE_DEFAULT == "$SAGANET_CACHE, else $XDG_CACHE_HOME/saganet, else ~/.cache/saganet"


def test_every_weights_folder_option_gives_the_cache_rule() -> None:
    """The help of each command's --weights_dir (or the debug weights' folder) names
    $XDG_CACHE_HOME too; it once said only "$SAGANET_CACHE or ~/.cache/saganet"."""
    from saganet.cli import CACHE_DEFAULT
    from tests.test_docs_commands import _all_parsers, _entry_points, capture_parser

    helps = {}
    for entry in _entry_points():
        for parser in _all_parsers(capture_parser(entry)):
            for action in parser._actions:
                if "--weights_dir" in action.option_strings or action.dest == "directory":
                    helps[f"{entry.name} {parser.prog}"] = action.help
    assert len(helps) >= 7, helps  # demo, batch, app, segment, weights fetch/list, debug, latents
    wrong = {name: text for name, text in helps.items() if CACHE_DEFAULT not in text}
    assert not wrong, wrong


def test_the_help_states_the_defaults_the_docs_give() -> None:
    """`demo.py --help` (and `python -m saganet.batch --help`, which shares the sampling
    flags) says each value flag's default, as docs/generation.md's table does: a user reading
    only the help could not know the guidance strength, steps, seed or output folder."""
    import argparse

    from saganet.commands.demo import build_parser

    parser = build_parser()
    missing = {}
    for action in parser._actions:
        default = action.default
        if isinstance(default, bool) or default is None or default == argparse.SUPPRESS:
            continue
        shown = f"{default:g}" if isinstance(default, float | int) else str(default)
        if shown not in (action.help or "") or "default" not in action.help:
            missing[action.option_strings[0]] = (shown, action.help)
    assert not missing, missing


def test_commands_do_not_log_every_http_request(monkeypatch, caplog) -> None:
    """httpx logs each request at info (the app's own start-up checks, every weights file
    the hub client fetches): a command's log at info must not show them, but their warnings
    still."""
    import logging

    from saganet.commands.demo import build_parser

    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.NOTSET)
    caplog.set_level(logging.INFO)  # the root at info, as basicConfig sets it outside pytest
    begin(build_parser(), ["--variant", "debug"])
    httpx = logging.getLogger("httpx")
    assert not httpx.isEnabledFor(logging.INFO)
    assert httpx.isEnabledFor(logging.WARNING)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_missing_device_names_the_flag(monkeypatch, device: str) -> None:
    import torch

    from saganet.errors import UserInputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    args = argparse.Namespace(device=device, full_precision=False, cpu_bf16=False)
    with pytest.raises(UserInputError, match=r"; use --device cpu$"):
        device_and_dtype(args)


def test_the_feature_cache_default_of_the_help_is_the_cache_s() -> None:
    """FEATURE_CACHE_MB, the commands' --feature_cache_mb default, is kept apart from the
    cache's own default (which needs torch): they must not drift."""
    from saganet.cli import FEATURE_CACHE_MB
    from saganet.soundtrack.feature_cache import DEFAULT_MAX_BYTES

    assert FEATURE_CACHE_MB * 10**6 == DEFAULT_MAX_BYTES
