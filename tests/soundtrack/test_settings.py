"""The settings every result records in its files (``saganet.soundtrack.settings``): what they
hold, per file, and that reading them tells saganet's own record from anything else."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from saganet.errors import UserInputError
from saganet.example import SyntheticScene
from saganet.media.masks import MaskVideo
from saganet.media.output import write_flac
from saganet.soundtrack import SoundObject, SoundtrackRequest, write_soundtrack
from saganet.soundtrack.settings import SETTINGS_TAG, read_settings
from tests.soundtrack.test_render import OPTIONS, models, read_flac, write_clip  # noqa: F401

SR = 44100


def test_every_file_records_its_request(models, tmp_path: Path) -> None:  # noqa: F811
    scene = SyntheticScene(width=64, height=36, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    names = list(masks)
    # Non-ASCII prompts, an explicit negative prompt for the first object, the others'
    # prompts as negative prompt for the rest.
    objects = tuple(SoundObject(name, MaskVideo(path), f"{name} \u266a sonido",
                                "noise" if k == 0 else None)
                    for k, (name, path) in enumerate(masks.items()))
    request = SoundtrackRequest(video, objects, tmp_path / "out" / "deeper",
                                negatives_from_others=True)
    seed = 11
    result = write_soundtrack(models, request, options=OPTIONS, seed=seed)
    files = result.outputs.all()
    assert len(files) == len(names) + 2  # the MP4, one stem per object, the mix
    for path in files:
        record = read_settings(path)
        assert record is not None, path
        assert record["video"] == video.name  # the name only: no folder leaks
        assert str(tmp_path) not in str(record)
        # Built here, not loaded: nothing to name.
        assert (record["variant"], record["checkpoint"]) == (None, None)
        assert record["device"] == models.device.type
        assert record["precision"] == str(models.dtype).removeprefix("torch.")
        assert record["pan"] == request.pan
        with av.open(str(path)) as container:
            assert record["sample_rate"] == container.streams.audio[0].rate
        assert (record["start"], record["duration"]) == (result.segment.start,
                                                         result.segment.duration)
        assert (record["cfg_strength"], record["num_steps"], record["method"]) == (
            OPTIONS.cfg_strength, OPTIONS.num_steps, OPTIONS.method)
        assert record["join"] == request.join and record["overlap"] == request.overlap
        assert [o["name"] for o in record["objects"]] == names
        assert [o["prompt"] for o in record["objects"]] == [o.prompt for o in objects]
        assert [o["negative_prompt"] for o in record["objects"]] == [
            request.negative_prompt(o) for o in objects]
        assert [o["masks"] for o in record["objects"]] == [{"video": masks[n].name}
                                                          for n in names]
        assert [o["seed"] for o in record["objects"]] == [seed + k for k in range(len(names))]
    # A stem's file names its object; the mix and the MP4 hold them all.
    for name, path in result.outputs.stems.items():
        assert read_settings(path)["object"] == name
    assert "object" not in read_settings(result.outputs.mix)
    assert "object" not in read_settings(result.outputs.video)


def test_no_record_on_request_and_the_same_samples(models, tmp_path: Path) -> None:  # noqa: F811
    scene = SyntheticScene(width=64, height=36, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    objects = tuple(SoundObject(name, MaskVideo(path), name) for name, path in masks.items())
    results = {}
    for record in (True, False):
        request = SoundtrackRequest(video, objects, tmp_path / str(record),
                                    record_settings=record)
        results[record] = write_soundtrack(models, request, options=OPTIONS).outputs
    for path in results[False].all():
        assert read_settings(path) is None, path
    for recorded, plain in zip(results[True].all(), results[False].all(), strict=True):
        assert read_settings(recorded) is not None
        if recorded.suffix == ".flac":
            np.testing.assert_array_equal(read_flac(recorded), read_flac(plain))


def test_only_saganets_record_is_read(tmp_path: Path) -> None:
    audio = torch.zeros(1, SR // 10)
    foreign = {"plain.flac": None, "other.flac": "recorded live, take 3",
               "json.flac": '{"seed": 1}', "list.flac": "[1, 2]"}
    for name, comment in foreign.items():
        write_flac(tmp_path / name, audio, SR,
                   tags=None if comment is None else {SETTINGS_TAG: comment})
        assert read_settings(tmp_path / name) is None, name
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    for path in (text, tmp_path / "missing.flac"):
        with pytest.raises(UserInputError, match="cannot read the file's tags") as info:
            read_settings(path)
        assert os.fspath(path) in str(info.value)
