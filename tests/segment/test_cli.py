"""``python -m saganet.segment`` end to end on the shared duet video, its errors (one line, exit
status 2, nothing written) and its import cost (no transformers unless a model loads)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from saganet.media.masks import MaskVideo
from saganet.media.video import SYNC_FPS, probe_video
from saganet.segment.__main__ import main
from tests.videos import write_video

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300, check=False)


def test_cli_on_the_duet_video(tmp_path, sam2_folder, duet_video, capsys, caplog):
    """Writes the masks and prints where each object is visible, on stdout only: the same
    lines logged to stderr too would show every object twice in a terminal."""
    caplog.set_level(logging.INFO)
    video = duet_video
    info = probe_video(video)
    out = tmp_path / "masks"
    end = 1.0
    click = f"{info.width * 0.7:g},{info.height / 2:g}@{end / 2}"
    status = main([str(video), "--output", str(out), "--model", str(sam2_folder), "--offline",
                   "--end", str(end), "--preview", "--object", "violin", "--click", click,
                   "--object", "trumpet", "--box", "200,300,700,800@f10",
                   "--negative_click", "50,50@f10"])
    assert status == 0
    printed = capsys.readouterr().out
    names = {f"{video.stem}_violin_mask.mp4", f"{video.stem}_trumpet_mask.mp4",
             f"{video.stem}_preview.mp4"}
    assert {p.name for p in out.iterdir()} == names
    for name in ("violin", "trumpet"):
        path = out / f"{video.stem}_{name}_mask.mp4"
        assert str(path) in printed and f"{name}: visible" in printed
        assert not [r for r in caplog.records if f"{name}: visible" in r.getMessage()]
        mask_info = probe_video(path)
        assert (mask_info.width, mask_info.height) == (info.width, info.height)
        masks = MaskVideo(path).read()
        assert masks.shape[0] == round(end * SYNC_FPS)
        assert set(np.unique(masks.numpy())) <= set(range(256)) and masks.any()
    with av.open(str(out / f"{video.stem}_preview.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == round(end * SYNC_FPS)


@pytest.fixture
def small_video(tmp_path) -> Path:
    frames = [np.full((24, 32, 3), 10 * i, np.uint8) for i in range(8)]
    return write_video(tmp_path / "small.mp4", frames, fps=25)


@pytest.mark.parametrize(("argv", "match"), [
    (["--click", "40,5"], "outside the 32x24 frame"),
    (["--click", "5,5@9"], "past the end of the video"),
    (["--box", "5,5,5,20"], "zero area"),
    (["--text", "violin"], "request access"),
    (["--click", "5,5", "--model", "giant"], "unknown segmentation model"),
    (["--click", "5,5", "--end", "nan"], "--end must be"),
    (["--click", "5,5", "--start", "inf"], "--start must be"),
    # Named as demo.py names them (docs/generation.md: "so each says the same").
    (["--click", "5,5", "--start", "0.2", "--end", "0.1"],
     "--end (0.1 s) must come after --start (0.2 s)"),
    (["--click", "5,5", "--device", "gpu0"], "unknown device 'gpu0'"),
])
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, small_video, capsys, argv, match):
    out = tmp_path / "out"
    status = main([str(small_video), "--output", str(out), "--weights_dir", str(tmp_path / "w"),
                   "--offline", *argv])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m saganet.segment: error: ")
    assert match in lines[0]
    assert not out.exists()


def test_cli_missing_device_names_the_flag(tmp_path, small_video, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status = main([str(small_video), "--output", str(tmp_path / "out"), "--weights_dir",
                   str(tmp_path / "w"), "--offline", "--click", "5,5", "--device", "cuda"])
    assert status == 2
    assert capsys.readouterr().err.strip().endswith("; use --device cpu")


def test_cli_object_never_found(tmp_path, small_video, sam2_absent_folder, capsys):
    out = tmp_path / "out"
    status = main([str(small_video), "--output", str(out), "--model", str(sam2_absent_folder),
                   "--click", "5,5"])
    assert status == 2
    assert "not found in any frame" in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_to_overwrite_before_tracking(tmp_path, small_video):
    out = tmp_path / "out"
    out.mkdir()
    existing = out / f"{small_video.stem}_object1_mask.mp4"
    existing.write_bytes(b"keep")
    status = main([str(small_video), "--output", str(out), "--model", "giant", "--click", "5,5"])
    assert status == 2
    assert existing.read_bytes() == b"keep"


@pytest.mark.parametrize("case", ["name too long", "folder under a file"])
def test_cli_refuses_unwritable_outputs_before_tracking(tmp_path, small_video, monkeypatch,
                                                        capsys, case):
    def never(*args, **kwargs):
        raise AssertionError("tracked although the outputs cannot be written")

    monkeypatch.setattr("saganet.segment.tracking.track_objects", never)
    out, name = tmp_path / "out", "violin"
    if case == "name too long":
        # One byte more than this file system takes in the mask file's name.
        limit = os.pathconf(tmp_path, "PC_NAME_MAX")
        name = "v" * (limit + 1 - len(f"{small_video.stem}__mask.mp4"))
        expected = f"{small_video.stem}_{name}_mask.mp4"
    else:
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"keep")
        out = blocker / "masks"
        expected = str(out)
    status = main([str(small_video), "--output", str(out), "--object", name, "--click", "5,5"])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m saganet.segment: error: ")
    assert expected in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [small_video.name, *(["blocker"] if case != "name too long" else [])])


def test_help_and_prompt_errors_do_not_import_transformers(small_video):
    code = ("import sys\n"
            "from saganet.segment.__main__ import main\n"
            "import saganet.segment\n"
            f"status = main([{str(small_video)!r}, '--output', 'x', '--click', '99,1'])\n"
            "assert status == 2, status\n"
            "assert 'transformers' not in sys.modules\n")
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    result = _run("-m", "saganet.segment", "--help")
    assert result.returncode == 0 and "--object NAME" in result.stdout
