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


@pytest.mark.parametrize("stem", ["sub/take", "../take", "..", "."])
def test_a_stem_with_folders_is_refused(stem: str, tmp_path: Path) -> None:
    """The stem names files in output_dir: a path in it failed once the work had started."""
    with pytest.raises(UserInputError, match="stem"):
        SoundtrackRequest(tmp_path / "clip.mp4", (SoundObject("v", tmp_path / "m.mp4"),),
                          tmp_path / "out", stem=stem)


@pytest.mark.parametrize("fields, words", [
    (dict(name=1), "name must be a string"),
    (dict(prompt=["violin"]), "prompt must be a string"),
    (dict(negative_prompt=3), "negative_prompt must be a string"),
])
def test_object_fields_of_another_type_are_refused(fields: dict, words: str,
                                                   tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=words):
        SoundObject(**{"name": "v", "masks": tmp_path / "m.mp4", **fields})


@pytest.mark.parametrize("objects", ["single", "strings"])
def test_objects_that_are_no_tuple_of_sound_objects_are_refused(objects: str,
                                                                tmp_path: Path) -> None:
    obj = SoundObject("v", tmp_path / "m.mp4")
    with pytest.raises(UserInputError, match="SoundObject"):
        SoundtrackRequest(tmp_path / "clip.mp4", obj if objects == "single" else ("v",),
                          tmp_path / "out")


def test_a_missing_negative_prompt_names_the_setting_for_python_and_the_command_line(
        tmp_path: Path) -> None:
    objects = (SoundObject("a", tmp_path / "a.mp4", "violin"), SoundObject("b", tmp_path / "b.mp4"))
    with pytest.raises(UserInputError) as info:
        SoundtrackRequest(tmp_path / "v.mp4", objects, tmp_path / "out", negatives_from_others=True)
    assert str(info.value).startswith("object 'b' has no prompt")
    assert "(--negatives_from_others; negatives_from_others=True from Python)" in str(info.value)


@pytest.mark.parametrize("audio_format", ["flac", "wav"])
def test_the_sound_files_are_of_the_format(audio_format: str, tmp_path: Path) -> None:
    objects = tuple(SoundObject(name, tmp_path / f"{name}.mp4") for name in ("a", "b"))
    outputs = SoundtrackRequest(tmp_path / "clip.mp4", objects, tmp_path / "out",
                                audio_format=audio_format).outputs()
    assert {p.suffix for p in [outputs.mix, *outputs.stems.values()]} == {f".{audio_format}"}
    assert len(outputs.stems) == len(objects)


def test_an_unknown_audio_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="unknown audio format 'mp3'"):
        SoundtrackRequest(tmp_path / "clip.mp4", (SoundObject("v", tmp_path / "m.mp4"),),
                          tmp_path / "out", audio_format="mp3")


def test_sample_rates_the_files_can_have(tmp_path: Path) -> None:
    import numpy as np

    from saganet.cli import OUTPUT_RATES as OFFERED
    from saganet.soundtrack.request import OUTPUT_RATES

    objects = (SoundObject("v", tmp_path / "m.mp4"),)
    assert OFFERED == OUTPUT_RATES  # --sample_rate's choices are the request's
    for rate in OUTPUT_RATES:
        request = SoundtrackRequest(tmp_path / "clip.mp4", objects, tmp_path / "out",
                                    sample_rate=np.int64(rate))
        # A plain int: the settings record holds it as JSON.
        assert type(request.sample_rate) is int and request.sample_rate == rate
    for bad in (1000, True, 44100.5, "48000"):
        with pytest.raises(UserInputError, match=f"sample rate {bad!r} is not one"):
            SoundtrackRequest(tmp_path / "clip.mp4", objects, tmp_path / "out",
                              sample_rate=bad)
