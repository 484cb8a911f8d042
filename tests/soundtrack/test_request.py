"""What a :class:`SoundtrackRequest` accepts, checked without opening any file."""

from __future__ import annotations

from pathlib import Path

import pytest

from saganet.errors import UserInputError
from saganet.soundtrack import SoundObject, SoundtrackRequest


def request(name: str, tmp_path: Path) -> SoundtrackRequest:
    return SoundtrackRequest(tmp_path / "clip.mp4", (SoundObject(name, tmp_path / "m.mp4"),),
                             tmp_path / "out")


@pytest.mark.parametrize("name", ["violin", "v2", "_x", "c++", "a.b-c", "violín", "小提琴"])
def test_file_safe_names_are_taken(name: str, tmp_path: Path) -> None:
    assert request(name, tmp_path).objects[0].name == name


@pytest.mark.parametrize("name", [
    "a b",  # spaces: the message says letters, digits and _ . + - only
    "a\n",  # "$" would match before the newline
    "a\nb", "a\tb", ".hidden", "-x", "+x", "a/b", "..", "",
])
def test_other_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not usable in file names"):
        request(name, tmp_path)
