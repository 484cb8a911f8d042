"""``python -m saganet.batch``: job planning from CSV / folders, and a run that continues past a
broken job."""

from __future__ import annotations

from pathlib import Path

import pytest

from saganet.batch import jobs_from_csv, jobs_from_dir, main
from saganet.errors import UserInputError
from tests.evaluation.test_batch_eval import write_video


def test_csv_columns_by_name_with_optional_ones(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("output,mask,video,prompt\n"
                     "duet/a,m1.mp4,clips/v1.mp4,violin\n"
                     ",m2.mp4,/abs/v2.mp4,\n")
    out = tmp_path / "out"
    first, second = jobs_from_csv(table, out, default_negative="noise")
    assert (first.video, first.mask) == (tmp_path / "clips/v1.mp4", tmp_path / "m1.mp4")
    assert first.outputs == (out / "duet/a.flac", out / "duet/a.mp4")
    assert (first.prompt, first.negative_prompt) == ("violin", "noise")
    assert second.video == Path("/abs/v2.mp4") and second.output == out / "v2.flac"
    assert second.prompt is None


def test_csv_usage_errors(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("video,prompt\nv.mp4,x\n")
    with pytest.raises(UserInputError, match="mask"):
        jobs_from_csv(table, tmp_path)
    table.write_text("video,mask\na/v.mp4,m.mp4\nb/v.mp4,m.mp4\n")
    with pytest.raises(UserInputError, match="two jobs"):
        jobs_from_csv(table, tmp_path)


def test_input_dir_pairs_videos_with_masks(tmp_path):
    for name in ("a.mp4", "a_mask.mp4", "b.mp4", "c_mask.mp4"):
        (tmp_path / name).write_bytes(b"x")
    jobs, unpaired = jobs_from_dir(tmp_path, tmp_path / "out", "cello")
    assert [(j.video.name, j.mask.name, j.output.name, j.prompt) for j in jobs] == [
        ("a.mp4", "a_mask.mp4", "a.flac", "cello")]
    assert unpaired == [tmp_path / "b.mp4"]


def test_unreadable_csv_is_a_usage_error(tmp_path, capsys):
    assert main(["--csv", str(tmp_path / "none.csv"), "--variant", "debug"]) == 2
    assert "cannot read the jobs file" in capsys.readouterr().err


def test_a_broken_job_is_reported_and_the_others_run(tmp_path, capsys):
    from saganet.debug_weights import write_debug_weights

    weights = tmp_path / "weights"
    write_debug_weights(weights)
    write_video(tmp_path / "v.mp4", 1.2, seed=0)
    write_video(tmp_path / "v_mask.mp4", 1.2, seed=0, mask=True)
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask,prompt\nmissing.mp4,v_mask.mp4,violin\nv.mp4,v_mask.mp4,violin\n")
    args = ["--csv", str(table), "--variant", "debug", "--weights_dir", str(weights),
            "--device", "cpu", "--duration", "1.0", "--num_steps", "2",
            "--output_dir", str(tmp_path / "out")]
    assert main(args) == 1
    err = capsys.readouterr().err
    failed = [line for line in err.replace("\r", "\n").splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "missing.mp4" in failed[0] and "file not found" in failed[0]
    assert "1 ok, 1 failed" in err
    assert (tmp_path / "out" / "v.flac").is_file() and (tmp_path / "out" / "v.mp4").is_file()

    table.write_text("video,mask\nv.mp4,v_mask.mp4\n")
    assert main(args) == 0  # finished jobs are skipped without loading the models
    assert "0 ok, 0 failed, 1 skipped" in capsys.readouterr().err
