"""``python -m saganet.batch``: job planning from CSV / folders, and a run that continues past a
broken job."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from saganet.batch import _request, build_parser, jobs_from_csv, jobs_from_dir, main
from saganet.errors import UserInputError
from tests.evaluation.test_batch_eval import write_video


def test_csv_columns_by_name_with_optional_ones(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("output,mask,video,prompt\n"
                     "duet/a,m1.mp4,clips/v1.mp4,violin\n"
                     ",m2.mp4,/abs/v2.mp4,\n")
    out = tmp_path / "out"
    first, second = jobs_from_csv(table, out, default_negative="noise")
    (violin,), (unnamed,) = first.objects, second.objects
    assert (first.video, violin.mask) == (tmp_path / "clips/v1.mp4", tmp_path / "m1.mp4")
    assert first.output == out / "duet/a.flac"
    assert (violin.name, violin.prompt, violin.negative_prompt) == ("violin", "violin", "noise")
    assert second.video == Path("/abs/v2.mp4") and second.output == out / "v2.flac"
    assert unnamed.prompt is None and unnamed.name


def test_the_output_is_the_file_the_job_writes(tmp_path):
    # "a.FLAC" was reported (and compared with other jobs' outputs) as a.FLAC while the job
    # wrote a.flac.
    table = tmp_path / "jobs.csv"
    outputs = ["upper.FLAC", "plain.flac", "bare"]
    table.write_text("video,mask,output\n" + "".join(f"v.mp4,m.mp4,{o}\n" for o in outputs))
    args = build_parser().parse_args(["--csv", str(table)])
    for job in jobs_from_csv(table, tmp_path / "out"):
        assert job.output == _request(job, args).outputs().mix


def test_csv_row_with_several_objects(tmp_path):
    table = tmp_path / "jobs.csv"
    masks, names, prompts = ["a.mp4", "b.mp4", "c.mp4"], ["x", "y", "z"], ["p", "q", "r"]
    table.write_text("video,mask,name,prompt,negative_prompt\n"
                     f"v.mp4,{';'.join(masks)},{';'.join(names)},{';'.join(prompts)},hiss\n")
    (job,) = jobs_from_csv(table, tmp_path / "out")
    assert [o.mask for o in job.objects] == [tmp_path / m for m in masks]
    assert [o.name for o in job.objects] == names
    assert [o.prompt for o in job.objects] == prompts
    # One value in a column with several masks applies to every object.
    assert all(o.negative_prompt == "hiss" for o in job.objects)
    table.write_text(f"video,mask,prompt\nv.mp4,{';'.join(masks)},{';'.join(prompts[:2])}\n")
    with pytest.raises(UserInputError, match=f"{len(masks)} mask"):
        jobs_from_csv(table, tmp_path / "out")


def test_one_prompt_for_several_objects_names_them_apart(tmp_path):
    table = tmp_path / "jobs.csv"
    masks, prompt = ["a.mp4", "b.mp4", "c.mp4"], "violin"
    table.write_text(f"video,mask,prompt\nv.mp4,{';'.join(masks)},{prompt}\n")
    (job,) = jobs_from_csv(table, tmp_path / "out")
    names = [o.name for o in job.objects]
    assert len(set(names)) == len(masks) and all(prompt in name for name in names)
    assert all(o.prompt == prompt for o in job.objects)
    # The request the job runs as accepts them (it refuses two objects of one name).
    args = build_parser().parse_args(["--csv", str(table)])
    assert [o.name for o in _request(job, args).objects] == names


def test_csv_usage_errors(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("video,prompt\nv.mp4,x\n")
    with pytest.raises(UserInputError, match="mask"):
        jobs_from_csv(table, tmp_path)
    table.write_text("video,mask\na/v.mp4,m.mp4\nb/v.mp4,m.mp4\n")
    with pytest.raises(UserInputError, match="two jobs"):
        jobs_from_csv(table, tmp_path)


def test_repeated_or_misspelt_columns_are_refused(tmp_path, caplog):
    # Read as they were, a repeated column kept its last cell and a misspelt one was dropped:
    # every job ran silently with another prompt or none.
    table = tmp_path / "jobs.csv"
    for column, header in [("prompt", "video,mask,prompt,prompt"),
                           ("promt", "video,mask,promt"),
                           ("negative prompt", "video,mask,negative prompt"),
                           ("Output", "video,mask,Output")]:
        cells = ["v.mp4", "m.mp4", *["violin"] * (header.count(",") - 1)]
        table.write_text(f"{header}\n{','.join(cells)}\n")
        with pytest.raises(UserInputError, match=f"column\\(s\\) {column} ") as caught:
            jobs_from_csv(table, tmp_path / "out")
        assert caught.value.path == str(table)
    # An unnamed column (a trailing comma) holds nothing and stays harmless; a column of the
    # user's own (no near miss of ours) is not read, with a warning.
    table.write_text("video,mask,prompt,,notes\nv.mp4,m.mp4,violin,,second take\n")
    with caplog.at_level(logging.WARNING):
        (job,) = jobs_from_csv(table, tmp_path / "out")
    assert job.objects[0].prompt == "violin"
    assert [r.getMessage() for r in caplog.records if "notes" in r.getMessage()]


def test_csv_errors_name_the_line_of_the_file(tmp_path):
    table = tmp_path / "jobs.csv"
    # Blank lines and a quoted line break come before the broken row.
    lines = ["video,mask,prompt", "", "a.mp4,m.mp4,\"one", "two\"", "", "b.mp4,,x"]
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError, match=f"line {len(lines)}: video and mask"):
        jobs_from_csv(table, tmp_path / "out")
    # A comma in an unquoted prompt would shift the output into the wrong column.
    lines = ["video,mask,prompt,output", "a.mp4,m.mp4,\"violin, bowed\",x", "",
             "b.mp4,m.mp4,violin, bowed,y"]
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError, match=f"line {len(lines)}: more cells"):
        jobs_from_csv(table, tmp_path / "out")
    table.write_text("\n".join(lines[:-1]) + "\n")
    (job,) = jobs_from_csv(table, tmp_path / "out")
    assert job.objects[0].prompt == "violin, bowed" and job.output.stem == "x"


def test_jobs_writing_one_file_are_refused(tmp_path, capsys):
    # One job's stem file is another's mix: <out>_<name>.flac.
    table = tmp_path / "jobs.csv"
    names = ["violin", "trumpet"]
    table.write_text("video,mask,name,output\n"
                     f"a.mp4,{';'.join(f'{n}.mp4' for n in names)},{';'.join(names)},duet\n"
                     f"b.mp4,m.mp4,,duet_{names[-1]}\n")
    out = tmp_path / "out"
    assert main(["--csv", str(table), "--variant", "debug", "--offline", "--weights_dir",
                 str(tmp_path / "weights"), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"two jobs write {out / f'duet_{names[-1]}.flac'}" in err
    assert not out.exists()


@pytest.mark.parametrize("read", ["video", "mask"])
def test_a_job_writing_another_jobs_input_is_refused(tmp_path, capsys, read):
    # With --overwrite the first job replaced the second one's video (or mask), which then
    # made its sound from the first job's output.
    inputs = {name: tmp_path / f"{name}.mp4" for name in ("a", "a_mask", "b", "b_mask")}
    for path in inputs.values():
        path.write_bytes(b"x")
    victim = inputs["b" if read == "video" else "b_mask"]
    table = tmp_path / "jobs.csv"
    table.write_text(f"video,mask,output\na.mp4,a_mask.mp4,{victim.stem}\n"
                     "b.mp4,b_mask.mp4,c\n")
    before = {path: path.read_bytes() for path in inputs.values()}
    assert main(["--csv", str(table), "--variant", "debug", "--offline", "--weights_dir",
                 str(tmp_path / "weights"), "--output_dir", str(tmp_path), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{table}: the job of a.mp4 would write {victim}, which the job of b.mp4 reads" in err
    assert {path: path.read_bytes() for path in inputs.values()} == before
    assert sorted(tmp_path.iterdir()) == sorted([table, *inputs.values()])


def test_an_output_folder_under_a_file_is_refused_before_the_models_load(
        tmp_path, capsys, monkeypatch):
    # It failed every job after the models had loaded, each with mkdir's "File exists".
    import saganet.pipeline

    def no_load(*args, **kwargs):
        raise AssertionError("the models were loaded")

    monkeypatch.setattr(saganet.pipeline, "load_models", no_load)
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask\nv.mp4,v_mask.mp4\n")
    base = ["--csv", str(table), "--variant", "debug"]
    for out in (blocker, blocker / "sub"):
        assert main([*base, "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"python -m saganet.batch: error: {out}: cannot create the output "
                       f"folder: {blocker} is not a folder")
    # A job whose own output lies under a file fails alone, also before any model loads.
    table.write_text(f"video,mask,output\nv.mp4,v_mask.mp4,{blocker / 'x'}\n")
    assert main([*base, "--output_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {tmp_path / 'v.mp4'}: {blocker}: cannot create the output folder: " \
           f"{blocker} is not a folder" in err
    assert blocker.read_text() == "a file" and not (tmp_path / "out").exists()


def test_input_dir_pairs_videos_with_masks(tmp_path):
    for name in ("a.mp4", "a_mask.mp4", "b.mp4", "c_mask.mp4", "d.mp4", "d_mask_x.mp4",
                 "d_mask_y.mp4"):
        (tmp_path / name).write_bytes(b"x")
    jobs, unpaired = jobs_from_dir(tmp_path, tmp_path / "out", "cello")
    described = [(j.video.name, [(o.name, o.mask.name, o.prompt) for o in j.objects],
                  j.output.name) for j in jobs]
    assert described == [
        ("a.mp4", [("cello", "a_mask.mp4", "cello")], "a.flac"),
        ("d.mp4", [("x", "d_mask_x.mp4", "cello"), ("y", "d_mask_y.mp4", "cello")], "d.flac")]
    assert unpaired == [tmp_path / "b.mp4"]


def test_input_dir_pairs_by_exact_names(tmp_path):
    # video -> its masks (object name, file): names with glob characters, "_mask" inside a
    # word, upper-case suffixes, and a video whose name is another one's prefix.
    layout = {
        "my_masked_ball.mp4": [("object", "my_masked_ball_mask.mp4")],
        "take[1].mp4": [("x", "take[1]_mask_x.mp4")],
        "take1.mp4": [("y", "take1_mask_y.mp4"), ("z", "take1_mask_z.mp4")],
        "clip.MP4": [("object", "clip_mask.MP4")],
    }
    for video, masks in layout.items():
        for name in [video, *(mask for _, mask in masks)]:
            (tmp_path / name).write_bytes(b"x")
    jobs, unpaired = jobs_from_dir(tmp_path, tmp_path / "out", None)
    assert unpaired == []
    assert {j.video.name: [(o.name, o.mask.name) for o in j.objects] for j in jobs} == layout


def test_input_dir_pairs_folders_of_mask_images(tmp_path):
    for name in ("e.mp4", "f.v2.mp4", "g.mp4"):
        (tmp_path / name).write_bytes(b"x")
    # Folders of mask images under a mask's names; a folder named like a video is no mask.
    for name in ("e_mask", "f.v2_mask_bow", "f.v2_mask_body", "g", "h_mask"):
        (tmp_path / name).mkdir()
    jobs, unpaired = jobs_from_dir(tmp_path, tmp_path / "out", None)
    assert {j.video.name: sorted((o.name, o.mask.name) for o in j.objects) for j in jobs} == {
        "e.mp4": [("object", "e_mask")],
        "f.v2.mp4": [("body", "f.v2_mask_body"), ("bow", "f.v2_mask_bow")]}
    assert unpaired == [tmp_path / "g.mp4"]
    assert all(o.mask_id is None for j in jobs for o in j.objects)


def test_unreadable_csv_is_a_usage_error(tmp_path, capsys):
    assert main(["--csv", str(tmp_path / "none.csv"), "--variant", "debug"]) == 2
    assert "cannot read the jobs file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A folder with debug weights (``weights/``), ``v.mp4`` and its ``v_mask.mp4``."""
    from saganet.debug_weights import write_debug_weights

    folder = tmp_path_factory.mktemp("media")
    write_debug_weights(folder / "weights")
    write_video(folder / "v.mp4", 1.2, seed=0)
    write_video(folder / "v_mask.mp4", 1.2, seed=0, mask=True)
    return folder


def _debug_run(table: Path, weights: Path, out: Path) -> list[str]:
    return ["--csv", str(table), "--variant", "debug", "--weights_dir", str(weights),
            "--device", "cpu", "--duration", "1.0", "--num_steps", "2", "--output_dir", str(out)]


def test_a_broken_job_is_reported_and_the_others_run(media, tmp_path, capsys):
    table = tmp_path / "jobs.csv"
    table.write_text(f"video,mask,prompt\nmissing.mp4,{media}/v_mask.mp4,violin\n"
                     f"{media}/v.mp4,{media}/v_mask.mp4,violin\n")
    args = _debug_run(table, media / "weights", tmp_path / "out")
    assert main(args) == 1
    printed = capsys.readouterr()
    err = printed.err
    failed = [line for line in err.replace("\r", "\n").splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "missing.mp4" in failed[0] and "file not found" in failed[0]
    assert "1 ok, 1 failed" in err
    assert (tmp_path / "out" / "v.flac").is_file() and (tmp_path / "out" / "v.mp4").is_file()
    # Every file the job wrote is on stdout, one per line, as the demo prints its.
    assert sorted(printed.out.split()) == sorted(str(p) for p in (tmp_path / "out").iterdir())

    table.write_text(f"video,mask\n{media}/v.mp4,{media}/v_mask.mp4\n")
    assert main(args) == 0  # finished jobs are skipped without loading the models
    assert "0 ok, 0 failed, 1 skipped" in capsys.readouterr().err


@pytest.mark.parametrize("budget", [None, "0"], ids=["default", "no-cache"])
def test_jobs_of_one_video_share_its_features(media, tmp_path, monkeypatch, budget):
    """Jobs of the same video and mask with other prompts compute its CLIP frames and
    Synchformer features once, in the first job; with ``--feature_cache_mb 0`` every job
    computes its own."""
    from saganet import pipeline
    from tests.soundtrack.test_feature_cache import Counts

    prompts = ["violin", "cello", "flute"]
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask,prompt,output\n" + "".join(
        f"{media}/v.mp4,{media}/v_mask.mp4,{p},{p}\n" for p in prompts))
    load_models, counts = pipeline.load_models, []

    def counted(*args, **kwargs):
        models = load_models(*args, **kwargs)
        counts.append(Counts(monkeypatch, models))
        return models

    monkeypatch.setattr(pipeline, "load_models", counted)
    flags = [] if budget is None else ["--feature_cache_mb", budget]
    assert main(_debug_run(table, media / "weights", tmp_path / "out") + flags) == 0
    (count,) = counts
    images, clips = count.take()
    # One window of one object: in the first job only, or in every job without a cache.
    assert clips == (1 if budget is None else len(prompts)) and images > 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.flac")) == sorted(
        f"{p}.flac" for p in prompts)


@pytest.mark.parametrize("budget", ["-1", "nan", "lots"])
def test_a_bad_feature_cache_budget_is_one_usage_error(tmp_path, capsys, budget):
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask\nv.mp4,v_mask.mp4\n")
    with pytest.raises(SystemExit) as stop:
        main(["--csv", str(table), "--feature_cache_mb", budget])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--feature_cache_mb" in last and budget in last


def test_ctrl_c_is_one_line_and_the_shells_status(tmp_path, monkeypatch, capsys):
    import signal

    import saganet.batch

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(saganet.batch, "run", interrupted)
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask\nv.mp4,v_mask.mp4\n")
    assert main(["--csv", str(table), "--variant", "debug"]) == 128 + signal.SIGINT
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("python -m saganet.batch: interrupted")
    assert not any("Traceback" in line for line in lines)


def test_a_job_with_unusable_objects_fails_alone(media, tmp_path, capsys):
    table = tmp_path / "jobs.csv"
    bad = ["a/b", "x;x"]  # a name no file can take; two objects of one name
    rows = [f"{media}/v.mp4,{';'.join([f'{media}/v_mask.mp4'] * len(names.split(';')))},"
            f"{names},bad{k}" for k, names in enumerate(bad)]
    table.write_text("video,mask,name,output\n" + "\n".join(rows)
                     + f"\n{media}/v.mp4,{media}/v_mask.mp4,,good\n")
    out = tmp_path / "out"
    assert main(_debug_run(table, media / "weights", out)) == 1
    err = capsys.readouterr().err
    failed = [line for line in err.replace("\r", "\n").splitlines() if "FAILED" in line]
    assert len(failed) == len(bad) and all("v.mp4" in line for line in failed)
    assert f"1 ok, {len(bad)} failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["good.flac", "good.mp4"]


def test_end_before_start_is_one_usage_error(media, tmp_path, capsys):
    table = tmp_path / "jobs.csv"
    table.write_text(f"video,mask\n{media}/v.mp4,{media}/v_mask.mp4\n")
    args = _debug_run(table, media / "weights", tmp_path / "out")
    assert main([*args, "--start", "1", "--end", "0.5"]) == 2
    assert "--end (0.5 s) must come after --start (1 s)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_as_a_module_its_log_lines_name_it(tmp_path):
    """`python -m saganet.batch` runs the module as ``__main__``: its log lines must still say
    ``saganet.batch``, not ``__main__``. Jobs whose outputs exist are skipped without loading
    any model, so this needs no weights."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    out.mkdir()
    for path in (tmp_path / "v.mp4", tmp_path / "v_mask.mp4", out / "v.flac", out / "v.mp4"):
        path.touch()
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask\nv.mp4,v_mask.mp4\n")
    done = subprocess.run(
        [sys.executable, "-m", "saganet.batch", "--csv", str(table), "--output_dir", str(out),
         "--variant", "debug", "--device", "cpu"],
        capture_output=True, text=True, cwd=root, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    skipped = [line for line in done.stderr.splitlines() if "skipped: outputs exist" in line]
    assert len(skipped) == 1 and "saganet.batch:" in skipped[0], done.stderr


def test_original_sound_goes_to_every_job(tmp_path, capsys):
    """``--original_sound`` reaches each job's request; with ``--skip_video_composite`` (no
    MP4 to put it in) it is a usage error before any job runs."""
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask\na.mp4,a_mask.mp4\nb.mp4,b_mask.mp4\n")
    for flags, wanted in (([], False), (["--original_sound"], True)):
        args = build_parser().parse_args(["--csv", str(table), *flags])
        jobs = jobs_from_csv(table, tmp_path / "out")
        assert len(jobs) == table.read_text().count("\n") - 1
        assert [_request(job, args).original_sound for job in jobs] == [wanted] * len(jobs)
    with pytest.raises(SystemExit) as stop:
        main(["--csv", str(table), "--original_sound", "--skip_video_composite"])
    assert stop.value.code == 2
    assert "--original_sound" in capsys.readouterr().err.strip().splitlines()[-1]


def test_no_settings_and_sample_rate_go_to_every_job(tmp_path):
    """``--no_settings`` and ``--sample_rate`` reach each job's request."""
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask\na.mp4,a_mask.mp4\nb.mp4,b_mask.mp4\n")
    jobs = jobs_from_csv(table, tmp_path / "out")
    assert len(jobs) == table.read_text().count("\n") - 1
    for flags, wanted in (([], True), (["--no_settings"], False)):
        args = build_parser().parse_args(["--csv", str(table), *flags])
        assert [_request(job, args).record_settings for job in jobs] == [wanted] * len(jobs)
    # --sample_rate likewise: every job writes at the rate.
    for flags, wanted in (([], None), (["--sample_rate", "48000"], 48000)):
        args = build_parser().parse_args(["--csv", str(table), *flags])
        assert [_request(job, args).sample_rate for job in jobs] == [wanted] * len(jobs)


def test_wav_outputs(media, tmp_path, capsys):
    """``--wav``: each job writes ``.wav`` files; an ``output`` named ``.flac`` writes the
    ``.wav`` of that name; a rerun skips the finished job."""
    table = tmp_path / "jobs.csv"
    table.write_text(f"video,mask,output\n{media}/v.mp4,{media}/v_mask.mp4,take.flac\n"
                     f"{media}/v.mp4,{media}/v_mask.mp4,plain\n")
    out = tmp_path / "out"
    assert [job.output.name for job in jobs_from_csv(table, out, suffix=".wav")] == [
        "take.wav", "plain.wav"]
    args = [*_debug_run(table, media / "weights", out), "--wav", "--skip_video_composite"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["plain.wav", "take.wav"]
    capsys.readouterr()
    assert main(args) == 0
    assert "0 ok, 0 failed, 2 skipped" in capsys.readouterr().err


def test_csv_mask_ids(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("video,mask,mask_id,name\n"
                     "v.mp4,frames;frames;m.mp4,1;2;,a;b;c\n"
                     "w.mp4,frames,,\n")
    first, second = jobs_from_csv(table, tmp_path / "out")
    assert [o.mask_id for o in first.objects] == [1, 2, None]
    assert [o.mask for o in first.objects] == [tmp_path / "frames"] * 2 + [tmp_path / "m.mp4"]
    assert second.objects[0].mask_id is None
    for bad in ["0", "x", "1.5", "-2", "²"]:
        table.write_text(f"video,mask,mask_id\nv.mp4,frames,{bad}\n")
        with pytest.raises(UserInputError, match="line 2: mask_id") as caught:
            jobs_from_csv(table, tmp_path / "out")
        assert "\n" not in str(caught.value)


def test_a_folder_of_mask_images_runs_as_its_mask_video(media, tmp_path, capsys):
    """A job whose mask is a folder of label images (one per video frame) writes the samples
    of the job with the same masks as a lossless mask video; its id is the job's ``mask_id``."""
    import av
    import numpy as np
    from PIL import Image

    from saganet.media.mask_frames import MaskFrames
    from saganet.media.output import write_mask_video
    from tests.videos import read_audio

    with av.open(str(media / "v_mask.mp4")) as container:
        masks = np.stack([f.to_ndarray(format="gray") > 127 for f in container.decode(video=0)])
    write_mask_video(tmp_path / "lossless.mp4", masks)
    folder = tmp_path / "labels"
    folder.mkdir()
    for number, mask in enumerate(masks):
        labels = mask.astype(np.uint8) * 3
        # Another object (id 5) where the mask is empty: reading every non-zero pixel would
        # hear it too.
        labels[:2, :2] = np.where(labels[:2, :2] == 0, 5, labels[:2, :2])
        Image.fromarray(labels).save(folder / f"{number:04d}.png")
    table = tmp_path / "jobs.csv"
    table.write_text(f"video,mask,mask_id,output\n{media}/v.mp4,lossless.mp4,,video\n"
                     f"{media}/v.mp4,labels,3,folder\n")
    jobs = jobs_from_csv(table, tmp_path / "out")
    args = _debug_run(table, media / "weights", tmp_path / "out")
    (masked,) = _request(jobs[1], build_parser().parse_args(args)).objects
    assert isinstance(masked.masks, MaskFrames) and masked.masks.object_id == 3
    assert main([*args, "--skip_video_composite"]) == 0
    expected, _ = read_audio(tmp_path / "out" / "video.flac")
    got, _ = read_audio(tmp_path / "out" / "folder.flac")
    np.testing.assert_array_equal(got, expected)
