"""``python -m saganet.evaluation`` end to end on generated files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from saganet.errors import UserInputError
from saganet.evaluation import evaluate_directories
from saganet.evaluation.__main__ import main
from saganet.evaluation.av_bench import INSTALL_COMMAND
from tests.evaluation.audio_files import tone, write_audio

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def audio_dirs(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for i, freq in enumerate((220.0, 440.0, 880.0)):
        write_audio(pred / f"clip{i}.flac", tone(freq, 1.0, 44100), 44100)
        write_audio(gt / f"clip{i}.wav", tone(freq * 1.1, 1.0, 16000), 16000)
    return pred, gt


def test_cli_melstats_writes_json_and_table(audio_dirs, tmp_path, capsys):
    pred, gt = audio_dirs
    out = tmp_path / "res" / "results.json"
    code = main([str(pred), str(gt), "--embedder", "melstats", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    expected = {"FD-melstats", "KL-melstats-softmax", "ISC-melstats-mean", "ISC-melstats-std"}
    assert set(report["metrics"]) == expected
    assert set(report["sources"]) == expected
    assert all(s.startswith("melstats:") for s in report["sources"].values())
    assert report["n_pred"] == 3 and report["n_gt"] == 3 and report["audio_length"] == 5.0
    assert report["feature_sources"] == ["melstats"]
    assert report["metrics"]["FD-melstats"] > 0
    table = capsys.readouterr().out
    assert "FD-melstats" in table and "melstats: built-in" in table


def test_cli_unpaired_files_exit_2(audio_dirs, capsys):
    pred, gt = audio_dirs
    write_audio(pred / "lonely.wav", tone(100.0, 0.5, 16000), 16000)
    assert main([str(pred), str(gt), "--embedder", "melstats"]) == 2
    err = capsys.readouterr().err
    assert "lonely" in err and "Traceback" not in err


def test_cli_without_av_bench_prints_install_command(audio_dirs, monkeypatch, capsys):
    pred, gt = audio_dirs
    monkeypatch.setitem(sys.modules, "av_bench", None)  # makes `import av_bench` fail
    assert main([str(pred), str(gt)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "not installed" in lines[0]
    assert lines[1].strip() == INSTALL_COMMAND
    assert not (pred / "metrics.json").exists()


def _run_module(args: list[str], *, block_av_bench: bool = False) -> subprocess.CompletedProcess:
    # The blocker runs the module the way `python -m` does, in a process where av_bench
    # cannot be imported even if it happens to be installed.
    code = (
        "import runpy, sys; sys.modules['av_bench'] = None; "
        "sys.argv = ['saganet.evaluation', *sys.argv[1:]]; "
        "runpy.run_module('saganet.evaluation', run_name='__main__', alter_sys=True)"
    )
    cmd = [sys.executable, "-c", code] if block_av_bench else [sys.executable, "-m"]
    cmd += [] if block_av_bench else ["saganet.evaluation"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_module_entry_point_end_to_end(audio_dirs, tmp_path):
    pred, gt = audio_dirs
    out = tmp_path / "m.json"
    proc = _run_module([str(pred), str(gt), "--embedder", "melstats", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "FD-melstats" in json.loads(out.read_text())["metrics"]


def test_module_entry_point_without_av_bench_exits_2(audio_dirs):
    pred, gt = audio_dirs
    proc = _run_module([str(pred), str(gt)], block_av_bench=True)
    assert proc.returncode == 2
    assert INSTALL_COMMAND in proc.stderr
    assert "Traceback" not in proc.stderr
    # The first line is what training's eval.features=av-bench shows too: no flag of this CLI.
    first = proc.stderr.splitlines()[0]
    assert "built-in melstats embedder" in first and "--embedder" not in first


def test_cli_keeps_an_existing_report_unless_told(audio_dirs, tmp_path, capsys):
    pred, gt = audio_dirs
    out = tmp_path / "report.json"
    args = [str(pred), str(gt), "--embedder", "melstats", "--out", str(out)]
    assert main(args) == 0
    first = out.read_text()
    out.write_text("{}")  # a report the user edited or kept from another run
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--overwrite" in err[0]
    assert out.read_text() == "{}"
    assert main([*args, "--overwrite"]) == 0
    assert json.loads(out.read_text()) == json.loads(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pred", "gt", out.name])


def test_cli_report_path_that_is_a_folder_is_refused_before_scoring(audio_dirs, tmp_path,
                                                                    monkeypatch, capsys):
    pred, gt = audio_dirs
    folder = tmp_path / "reports"
    folder.mkdir()

    def never(*args, **kwargs):
        raise AssertionError("scored although the report cannot be written")

    monkeypatch.setattr("saganet.evaluation.__main__.evaluate_directories", never)
    assert main([str(pred), str(gt), "--embedder", "melstats", "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "output is a folder" in err and "Traceback" not in err


@pytest.mark.parametrize("length", ["0", "-1", "nan", "inf"])
def test_cli_refuses_an_audio_length_that_is_not_positive(audio_dirs, capsys, length):
    # Zero or less cut every clip to nothing and "scored" the empty clips; nan and inf crashed.
    pred, gt = audio_dirs
    assert main([str(pred), str(gt), "--embedder", "melstats", "--audio_length", length]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--audio_length must be a positive number" in lines[0]
    assert not (pred / "metrics.json").exists()


@pytest.mark.parametrize("flag", ["--batch_size", "--gt_batch_size"])
@pytest.mark.parametrize("size", ["0", "-1"])
def test_cli_refuses_a_batch_size_below_one(audio_dirs, capsys, flag, size):
    # 0 crashed in range(); less gave no batch at all and wrote an empty report.
    pred, gt = audio_dirs
    with pytest.raises(SystemExit) as stop:
        main([str(pred), str(gt), "--embedder", "melstats", flag, size])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: must be at least 1" in err and "Traceback" not in err
    assert not (pred / "metrics.json").exists()


@pytest.mark.parametrize(("keywords", "match"), [
    ({"audio_length": 0.0}, "audio_length must be"),
    ({"audio_length": math.nan}, "audio_length must be"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"batch_size": -2}, "batch_size must be"),
])
def test_evaluate_directories_checks_its_numbers(audio_dirs, keywords, match):
    pred, gt = audio_dirs
    with pytest.raises(UserInputError, match=match):
        evaluate_directories(pred, gt, feature_sources=["melstats"], **keywords)


def test_cli_report_under_a_file_is_refused_before_scoring(audio_dirs, tmp_path, monkeypatch,
                                                           capsys):
    pred, gt = audio_dirs
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep")
    out = blocker / "reports" / "metrics.json"

    def never(*args, **kwargs):
        raise AssertionError("scored although the report cannot be written")

    monkeypatch.setattr("saganet.evaluation.__main__.evaluate_directories", never)
    assert main([str(pred), str(gt), "--embedder", "melstats", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and f"{blocker} is not a folder" in lines[0]
    assert blocker.read_text() == "keep"


def test_clips_shorter_than_their_ground_truth_are_noted(tmp_path, capsys):
    """Clips are truncated to --audio_length, never padded: 1 s generated clips scored against
    2 s of ground truth compared audio of unequal length, with no word of it."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    generated_s, true_s = 1.0, 2.0
    for i, freq in enumerate((220.0, 440.0, 880.0)):
        write_audio(pred / f"clip{i}.flac", tone(freq, generated_s, 44100), 44100)
        write_audio(gt / f"clip{i}.wav", tone(freq, true_s if i else generated_s, 16000), 16000)
    out = tmp_path / "metrics.json"
    assert main([str(pred), str(gt), "--embedder", "melstats", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    notes = [n for n in json.loads(out.read_text())["notes"] if "differ in length" in n]
    assert len(notes) == 1 and notes[0] in table
    assert notes[0].startswith("2 of 3 generated clips differ in length")
    assert f"clip1: {generated_s:.2f} s generated, {true_s:.2f} s true" in notes[0]
    assert f"an audio length of {generated_s:g} s keeps equal lengths" in notes[0]
    # Kept at the generated length, both sides are equal: no note.
    assert main([str(pred), str(gt), "--embedder", "melstats", "--audio_length",
                 str(generated_s), "--out", str(tmp_path / "equal.json")]) == 0
    notes = json.loads((tmp_path / "equal.json").read_text())["notes"]
    assert notes and not any("differ in length" in n for n in notes)


PLUGIN = '''
import numpy as np

from saganet.evaluation import AudioEmbedder, register_embedder


class Loudness(AudioEmbedder):
    name = "loudness"
    description = "RMS and peak of each clip"
    sample_rate = 16000

    def embed(self, waveforms):
        rows = [[float(np.sqrt(np.mean(w ** 2))), float(np.abs(w).max())] for w in waveforms]
        return {"embedding": np.asarray(rows, dtype=np.float64)}


register_embedder(Loudness.name, Loudness)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> Iterator[str]:
    """A module of the user's that registers an embedder; the registry is restored after."""
    from saganet.evaluation import embedders

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_metrics.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(embedders, "_REGISTRY", dict(embedders._REGISTRY))
    monkeypatch.delitem(sys.modules, "my_metrics", raising=False)
    yield "my_metrics"
    sys.modules.pop("my_metrics", None)


def test_cli_plugin_module_adds_its_embedder(audio_dirs, plugin, tmp_path):
    # register_embedder reached --embedder only from a module that library code imported.
    pred, gt = audio_dirs
    out = tmp_path / "metrics.json"
    code = main([str(pred), str(gt), "--plugin", plugin, "--embedder", "loudness",
                 "--out", str(out)])
    assert code == 0
    assert json.loads(out.read_text())["feature_sources"] == ["loudness"]


def test_cli_plugin_that_cannot_be_imported_is_one_line(audio_dirs, capsys):
    pred, gt = audio_dirs
    assert main([str(pred), str(gt), "--plugin", "no_such_metrics_module"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "python -m saganet.evaluation: error: --plugin 'no_such_metrics_module': cannot import "
        "it: No module named 'no_such_metrics_module'"]


def test_cli_unknown_embedder_is_one_line_naming_the_choices(audio_dirs, capsys):
    pred, gt = audio_dirs
    assert main([str(pred), str(gt), "--embedder", "loudnes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--embedder 'loudnes': unknown; choose av-bench, melstats" in err[0]
