"""``saganet-settings``: the command a result's recorded settings amount to makes the same
files again, and what cannot be remade (or read) is a one-line error."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

import demo
from saganet.commands.settings import main, remake_arguments
from saganet.errors import UserInputError
from saganet.example import SyntheticScene, synthetic_example
from saganet.media.output import write_flac
from saganet.soundtrack.settings import read_settings
from tests.test_demo import weights_dir  # noqa: F401 (the debug weights, written once)
from tests.videos import read_audio

SCENE = SyntheticScene(duration=2.0)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path):  # noqa: F811
    """Two takes of two objects, one from a mask video, one tracked from a click, with every
    recorded setting away from its default."""
    clip = synthetic_example(tmp_path_factory.mktemp("clip"), SCENE)
    assert {p.parent for p in clip.masks.values()} == {clip.video.parent}
    first, second = list(clip.masks)[:2]
    click_time = 0.6
    _, shapes = list(SCENE.frames())[round(click_time * SCENE.fps)]
    rows, cols = np.nonzero(shapes[second])
    click = f"{int(cols.mean())},{int(rows.mean())}@{click_time}"
    out = tmp_path_factory.mktemp("made")
    args = ["--variant", "debug", "--device", "cpu", "--weights_dir", str(weights_dir),
            "--output", str(out), "--video", str(clip.video), "--start", "0.4",
            "--duration", "1.2", "--num_steps", "2", "--cfg_strength", "3.5", "--seed", "9",
            "--takes", "2", "--pan", "--keep_hidden", "--mask_away_clip", "--join", "crossfade",
            "--overlap", "0.5", "--negatives_from_others", "--sample_rate", "48000",
            "--object", first, "--mask_video", str(clip.masks[first]), "--prompt", "violin",
            "--negative_prompt=-hiss", "--object", second, "--click", click, "--prompt",
            "trumpet"]
    assert demo.main(args) == 0
    return clip, out, (first, second)


def _command(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(list(args)) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    return shlex.split(line)


def test_the_command_makes_the_take_again(made, weights_dir: Path, tmp_path: Path,  # noqa: F811
                                          capsys: pytest.CaptureFixture[str]) -> None:
    clip, out, names = made
    stem = f"{clip.video.stem}_take2"
    take = out / f"{stem}.flac"
    command = _command(capsys, str(take), "--inputs", str(clip.video.parent))
    assert command[:2] == ["python", "demo.py"]
    again = tmp_path / "again"
    assert demo.main([*command[2:], "--weights_dir", str(weights_dir), "--output",
                      str(again), "--skip_video_composite"]) == 0
    capsys.readouterr()  # the demo's list of what it wrote
    remade = again / f"{clip.video.stem}.flac"
    # The same sound, stems and panned mix alike, and the same record: every setting made it
    # through the command.
    for part in ["", *(f"_{n}" for n in names)]:
        np.testing.assert_array_equal(read_audio(out / f"{stem}{part}.flac")[0],
                                      read_audio(again / f"{clip.video.stem}{part}.flac")[0])
    assert read_settings(remade) == read_settings(take)
    # An MP4 records the same, and --json prints the record itself.
    mp4 = _command(capsys, str(out / f"{stem}.mp4"), "--inputs", str(clip.video.parent))
    assert mp4 == command
    assert main([str(take), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == read_settings(take)


def test_names_alone_without_inputs(made, capsys: pytest.CaptureFixture[str]) -> None:
    clip, out, (first, _) = made
    command = _command(capsys, str(out / f"{clip.video.stem}_take1.flac"))
    assert command[command.index("--video") + 1] == clip.video.name
    assert command[command.index("--mask_video") + 1] == clip.masks[first].name
    # A value that starts with "-" is attached, or demo.py would read it as a flag.
    assert "--negative_prompt=-hiss" in command
    assert command[command.index("--seed") + 1] == "9"
    record = read_settings(out / f"{clip.video.stem}_take1.flac")
    [model] = {o["masks"]["tracked"]["segment_model"] for o in record["objects"]
               if "tracked" in o["masks"]}
    assert command[command.index("--segment_model") + 1] == model


def test_files_without_settings_fail_with_one_line(made, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    clip, out, _ = made
    good = out / f"{clip.video.stem}_take1.flac"
    plain = write_flac(tmp_path / "plain.flac", np.zeros(4410, np.float32), 44100)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    for path, problem in ((plain, "no saganet settings"), (broken, "cannot read")):
        assert main([str(good), str(path)]) == 2
        captured = capsys.readouterr()
        # Nothing printed for the good file either: a listing is whole or absent.
        assert captured.out == ""
        [line] = captured.err.strip().splitlines()
        assert line.startswith(f"saganet-settings: error: {path}: ") and problem in line


def test_what_demo_cannot_do_is_named(made) -> None:
    clip, out, _ = made
    record = read_settings(out / f"{clip.video.stem}_take1.flac")
    remake_arguments(record)
    tracked = next(o for o in record["objects"] if "tracked" in o["masks"])
    cases = {
        "not loaded by name": lambda r: r.update(variant=None),
        "method 'adaptive'": lambda r: r.update(method="adaptive"),
        "float16 on cpu": lambda r: r.update(precision="float16"),
        "bfloat16 on mps": lambda r: r.update(precision="bfloat16", device="mps"),
        "given from Python": lambda r: r["objects"][0].update(masks=None),
        "do not follow": lambda r: r["objects"][-1].update(seed=r["objects"][0]["seed"]),
        "incomplete or malformed \\(KeyError: 'sample_rate'\\)": lambda r: r.pop("sample_rate"),
        "incomplete or malformed \\(IndexError": lambda r: r.update(objects=[]),
        "incomplete or malformed \\(TypeError": lambda r: r["objects"][0].update(masks=3),
        "several models \\(": lambda r: r["objects"].append(
            {**tracked, "name": "third", "seed": r["objects"][-1]["seed"] + 1,
             "masks": {"tracked": {**tracked["masks"]["tracked"], "segment_model": "large"}}}),
    }
    for problem, change in cases.items():
        changed = copy.deepcopy(record)
        change(changed)
        with pytest.raises(UserInputError, match=problem):
            remake_arguments(changed)
    # What demo.py sets by device: the flag only where the default differs.
    for device, precision, flag in (("cuda", "float32", "--full_precision"),
                                    ("cpu", "bfloat16", "--cpu_bf16"),
                                    ("cuda", "bfloat16", None), ("cpu", "float32", None)):
        arguments = remake_arguments({**record, "device": device, "precision": precision})
        present = {"--full_precision", "--cpu_bf16"} & set(arguments)
        assert present == ({flag} if flag else set()), (device, precision)


def test_a_mask_image_folder_is_given_back_with_its_id(made) -> None:
    clip, out, _ = made
    record = read_settings(out / f"{clip.video.stem}_take1.flac")
    first = record["objects"][0]
    for object_id, expected in ((4, ["--mask_id", "4"]), (None, [])):
        changed = copy.deepcopy(record)
        changed["objects"][0]["masks"] = {"frames": "Annotations", "object_id": object_id}
        arguments = remake_arguments(changed, inputs="/data")
        at = arguments.index(first["name"])
        assert arguments[at + 1: at + 3] == ["--mask_video", "/data/Annotations"]
        assert arguments[at + 3: at + 3 + len(expected)] == expected
        assert arguments.count("--mask_id") == len(expected) // 2
