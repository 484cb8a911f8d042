"""Every benchmark script, and the GPU check, runs in its tiny mode and writes well-formed results.

The benchmarks measure at official sizes, far too slow for the suite; ``--tiny`` runs the same
code with the debug variant's sizes and short inputs (``benchmarks/sizes.py``). Each test runs
a script as a subprocess, the way a user or ``benchmarks/gpu_check.sh`` does, and checks its
JSON: every stage or step the script defines is there, with finite numbers. What each test
expects is read from the scripts' own definitions (stage tuples, tiny settings), not copied.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
# The scripts import each other as top-level modules: their folder is on the path while they
# are imported here (for their definitions), and only then.
sys.path.insert(0, str(BENCHMARKS))
try:
    import headroom
    import joined_decoding
    import long_form
    import pipeline
    import precision
    import sizes
    import synthetic_media
    import threads
    import tracking
finally:
    sys.path.remove(str(BENCHMARKS))

from saganet.features.segments import SEGMENT_STRIDE  # noqa: E402
from saganet.media.video import CLIP_FPS, CLIP_SIZE, SYNC_FPS, SYNC_SIZE  # noqa: E402

TIMEOUT_S = 1200


def _env(tmp_path: Path) -> dict[str, str]:
    """One thread per process (the tiny models' policy; several run at once under xdist),
    this checkout first on the path, the debug weights cached under ``tmp_path``."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
            "SAGANET_CACHE": str(tmp_path / "cache"), "SAGANET_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1"}


def run_script(tmp_path: Path, script: str, *args: str, tiny: bool = True) -> dict:
    """Run ``benchmarks/<script>`` with ``--tiny --json``; returns its JSON."""
    out = tmp_path / f"{Path(script).stem}.json"
    command = [sys.executable, str(BENCHMARKS / script), *args, "--json", str(out)]
    if tiny:
        command.append("--tiny")
    done = subprocess.run(command, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, (f"{script} exited with {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return json.loads(out.read_text())


@pytest.fixture
def refused(tmp_path: Path, monkeypatch, capsys):
    """``refused(script, *args)``: run ``benchmarks/<script> --tiny`` with a bad argument as its
    ``__main__``, in this process (a usage error needs no interpreter of its own; each started
    one imports torch again, seconds per case); it must stop at once as a usage error (exit 2,
    one ``<script>: error:`` line, no exception); returns that line."""
    import runpy

    for key in ("SAGANET_CACHE", "SAGANET_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, _env(tmp_path)[key])
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.chdir(REPO)

    def run(script: str, *args: str) -> str:
        path = BENCHMARKS / script
        monkeypatch.setattr(sys, "argv", [str(path), *args, "--tiny"])
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            runpy.run_path(str(path), run_name="__main__")
        stderr = capsys.readouterr().err
        assert stopped.value.code == 2, (script, args, stopped.value.code, stderr[-3000:])
        line = stderr.strip().splitlines()[-1]
        assert line.startswith(f"{script}: error: "), line
        return line

    return run


def test_a_refused_argument_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The same refusal from a real process, the way a user meets it (the other cases run the
    scripts in the test's own process)."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / "codec.py"), "--seconds", "0",
                           "--tiny"], cwd=REPO, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("codec.py: error: argument --seconds")


# Every script with a --json file (its usage names the flag).
JSON_SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py")
                      if "--json" in path.read_text() and path.name != "sizes.py")


@pytest.mark.parametrize("script", JSON_SCRIPTS)
def test_json_in_a_missing_folder_is_refused_before_the_run(tmp_path: Path, refused,
                                                            script: str) -> None:
    missing = tmp_path / "no such folder" / "out.json"
    line = refused(script, "--json", str(missing))
    assert "--json" in line and str(missing.parent) in line
    assert not missing.parent.exists()


def test_json_that_is_a_folder_is_refused_and_a_file_is_written_whole(tmp_path: Path,
                                                                      refused) -> None:
    line = refused("threads.py", "--json", str(tmp_path))
    assert "--json" in line and "folder" in line
    # What is written replaces an existing file in one step (no half file, no temporary left).
    out = tmp_path / "out.json"
    out.write_text("old")
    value = {"rows": [1.5, 2]}
    sizes.write_json(out, value)
    assert json.loads(out.read_text()) == value
    assert sorted(tmp_path.iterdir()) == [out]


# Every script with a --device option.
DEVICE_SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py")
                        if '"--device"' in path.read_text() and path.name != "sizes.py")


@pytest.mark.parametrize("script", DEVICE_SCRIPTS)
def test_a_device_this_machine_lacks_is_refused_before_the_run(tmp_path: Path, refused,
                                                                script: str) -> None:
    import torch

    # One past the last CUDA device: missing on every machine, with or without CUDA.
    missing = f"cuda:{torch.cuda.device_count()}"
    line = refused(script, "--device", missing, "--json", str(tmp_path / "out.json"))
    assert "--device" in line and missing in line
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(("script", "flag", "value"), [
    ("codec.py", "--seconds", "0"), ("codec.py", "--seconds", "nan"),
    ("codec.py", "--threads", "0"), ("sampling.py", "--batch-sizes", "0"),
    ("sampling.py", "--cfg", "nan"), ("pipeline.py", "--duration", "-1"),
    ("train_step.py", "--warmup", "-1")])
def test_a_count_or_length_out_of_range_is_refused(tmp_path: Path, refused, script: str,
                                                   flag: str, value: str) -> None:
    line = refused(script, flag, value, "--json", str(tmp_path / "out.json"))
    assert f"argument {flag}" in line and value in line
    assert not (tmp_path / "out.json").exists()


def test_more_threads_than_cores_are_taken_with_a_warning(capsys) -> None:
    import argparse

    from saganet.runtime import available_cores

    cores = available_cores()
    assert sizes.thread_count(str(cores)) == cores
    assert capsys.readouterr().err == ""
    # benchmarks/threads.py oversubscribes on purpose; elsewhere it is likely a mistake.
    assert sizes.thread_count(str(cores + 1)) == cores + 1
    warning = capsys.readouterr().err
    assert f"--threads {cores + 1}" in warning and f"{cores} core(s)" in warning
    with pytest.raises(argparse.ArgumentTypeError):
        sizes.thread_count("0")


def numbers(value: object) -> list[float]:
    """Every number in a JSON value (booleans are not numbers here)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    items = value.values() if isinstance(value, dict) else value
    return [n for item in items for n in numbers(item)]


def assert_finite(value: object) -> None:
    found = numbers(value)
    assert found, "no numbers"
    assert all(math.isfinite(n) for n in found), value


def assert_times(record: dict, *keys: str) -> None:
    """Time fields: finite and positive."""
    for key in keys:
        assert math.isfinite(record[key]) and record[key] > 0, (key, record)


# ------------------------------------------------------------------------------ fast scripts


def test_sampling_times_both_guidance_passes_per_batch(tmp_path: Path) -> None:
    batches = [1, 2]
    result = run_script(tmp_path, "sampling.py", "--batch-sizes", *map(str, batches))
    assert result["variant"] == sizes.Sizes(tiny=True).network
    assert result["steps"] == sizes.TINY_STEPS
    assert [row["batch"] for row in result["batches"]] == batches
    for row in result["batches"]:
        assert_times(row, "two_pass_s_per_clip", "batched_s_per_clip", "ratio")


def test_codec_times_vae_vocoder_and_the_parametrised_baseline(tmp_path: Path) -> None:
    result = run_script(tmp_path, "codec.py")
    assert_finite(result)
    assert_times(result, "audio_s", "vae_s", "vocoder_s", "baseline_audio_s",
                 "parametrised_vocoder_s", "folded_vocoder_s", "speed_up")
    assert result["total_s"] == pytest.approx(result["vae_s"] + result["vocoder_s"])
    assert result["baseline_audio_s"] < result["audio_s"]


def test_features_times_both_synchformers(tmp_path: Path) -> None:
    result = run_script(tmp_path, "features.py")
    assert result["frames"] == 16 + SEGMENT_STRIDE * (result["windows"] - 1)
    assert_times(result, "plain_s", "segmentation_aware_s", "ratio")


def test_train_step_times_both_settings(tmp_path: Path) -> None:
    result = run_script(tmp_path, "train_step.py")
    assert result["network"] == sizes.Sizes(tiny=True).network
    assert_times(result, "network_only_s_per_step", "with_synchformer_s_per_step", "ratio")


def test_clip_attention_paths_agree(tmp_path: Path) -> None:
    result = run_script(tmp_path, "clip_attention.py")
    assert_finite(result)
    for name in ("reference", "sdpa"):
        assert_times(result["per_image"][name], "best", "median")
    # SDPA and nn.MultiheadAttention compute the same attention: float rounding apart.
    assert result["relative_difference"] < 1e-4


def test_video_io_readers_agree(tmp_path: Path) -> None:
    result = run_script(tmp_path, "video_io.py")
    duration = result["duration"]
    expected = {"clip": [int(CLIP_FPS * duration), 3, CLIP_SIZE, CLIP_SIZE],
                "sync": [int(SYNC_FPS * duration), 3, SYNC_SIZE, SYNC_SIZE],
                "mask": [int(SYNC_FPS * duration), 1, SYNC_SIZE, SYNC_SIZE]}
    assert {name: t["shape"] for name, t in result["tensors"].items()} == expected
    assert all(t["max_difference"] < 1e-5 for t in result["tensors"].values())
    for reader in ("naive", "load_video_inputs"):
        assert_times(result[reader], "wall_s", "cpu_s")


def test_mask_frames_reads_the_masks_of_the_mask_video(tmp_path: Path) -> None:
    result = run_script(tmp_path, "mask_frames.py")
    assert result["same_masks"] is True
    assert result["frames"] > 0 and result["windows"] >= 1
    for reader in ("mask_video", "mask_frames", "conversion"):
        assert_times(result[reader], "wall_s", "cpu_s")


def test_synthetic_media_writes_clips_and_a_urmp_set(tmp_path: Path) -> None:
    seconds, objects, clips = 1.0, 2, 2
    script = str(BENCHMARKS / "synthetic_media.py")
    for args in (["clip", str(tmp_path / "clip"), "--seconds", str(seconds), "--objects",
                  str(objects)],
                 ["urmp", str(tmp_path / "urmp"), "--clips", str(clips), "--seconds",
                  str(seconds)]):
        subprocess.run([sys.executable, script, *args], cwd=REPO, env=_env(tmp_path),
                       check=True, capture_output=True, timeout=TIMEOUT_S)
    videos = [tmp_path / "clip" / "video.mp4",
              *(tmp_path / "clip" / f"mask_{k}.mp4" for k in range(objects))]
    for video in videos:
        with av.open(str(video)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames >= seconds * synthetic_media.FPS
    rows = (tmp_path / "urmp" / "metadata.tsv").read_text().splitlines()
    assert len(rows) == clips + 1
    header = rows[0].split("\t")
    for row in rows[1:]:
        fields = dict(zip(header, row.split("\t"), strict=True))
        for key, suffix in (("video_id", ".mp4"), ("mask_id", ".mp4"), ("audio_id", ".wav")):
            assert (tmp_path / "urmp" / f"{fields[key]}{suffix}").is_file()


# ------------------------------------------------------------------------------ slow scripts


def check_pipeline(result: dict, stages: tuple[str, ...], paths: tuple[str, ...],
                   one_path: frozenset[str] = frozenset()) -> None:
    """``benchmarks/pipeline.py``'s JSON: each duration has every stage in ``stages``, timed
    on every path in ``paths`` except ``one_path`` stages (the default path's only); finite
    numbers throughout; with both paths, their outputs compared."""
    assert_finite(result)
    assert set(paths) <= set(result)
    assert result["durations"]
    for line in result["durations"]:
        assert set(line["stages"]) == set(stages)
        for stage, times in line["stages"].items():
            expected = {"default"} if stage in one_path else set(paths)
            assert set(times) == expected, stage
            for value in times.values():
                assert value["wall_s"] >= 0 and value["peak_gib"] > 0
        assert set(line["peak_gib"]) == set(paths)
        if len(paths) > 1:
            assert "relative" in line["audio"]
        assert line.get("rss_ok", True)


@pytest.mark.slow
def test_headroom_counts_and_times_every_stage(tmp_path: Path) -> None:
    result = run_script(tmp_path, "headroom.py")
    assert set(result["stages"]) == set(headroom.STAGES)
    assert all(rate > 0 for rate in result["matmul_gflops"])
    for stage in result["stages"].values():
        assert_times(stage, "flops", "cpu_s", "bound_s", "headroom")
        assert 0 < stage["product_share"] <= 1


@pytest.mark.slow
def test_precision_compares_every_stage(tmp_path: Path) -> None:
    result = run_script(tmp_path, "precision.py")
    assert list(result["stages"]) == list(precision.STAGES)
    for stage in result["stages"].values():
        assert math.isfinite(stage["relative_rms"]) and stage["relative_rms"] < 0.5
        assert stage["cosine"] > 0.5
    assert_finite(result)


@pytest.mark.slow
def test_clip_load_loaders_hold_the_same_weights(tmp_path: Path) -> None:
    result = run_script(tmp_path, "clip_load.py")
    assert result["same_weights"]
    assert_finite(result)
    for loader in ("baseline", "saganet"):
        assert_times(result["loaders"][loader], "seconds", "weights_gib")


def test_regenerate_times_a_generation_again_with_and_without_the_cache(tmp_path: Path) -> None:
    result = run_script(tmp_path, "regenerate.py", "--objects", "2", "--repeats", "2")
    assert_finite(result)
    assert result["same_files"]
    assert [len(result["runs"][path]) for path in ("first", "baseline", "again")] == [1, 2, 2]
    for path in ("first", "baseline", "again"):
        assert_times(result["best"][path], "wall_s", "cpu_s")
    assert result["ratio"]["cpu_s"] > 0


def test_joined_decoding_measures_both_ways_per_length(tmp_path: Path) -> None:
    result = run_script(tmp_path, "joined_decoding.py")
    rows = result["lengths"]
    assert [row["seconds"] for row in rows] == list(joined_decoding.TINY_LENGTHS)
    for row in rows:
        assert_times(row, "per_window_s", "joined_s", "speed_up")
        assert row["windows"] >= 2  # a clip of several windows: there are overlaps to save
        # Joined, the overlaps are vocoded once.
        assert row["joined_frames"] < row["per_window_frames"]


@pytest.mark.slow
def test_long_form_measures_both_joins_and_lengths(tmp_path: Path) -> None:
    result = run_script(tmp_path, "long_form.py")
    assert [row["join"] for row in result["joins"]] == list(long_form.JOINS)
    assert all(row["windows"] >= 2 for row in result["joins"])  # there are seams to score
    assert result["lengths"]
    for row in [*result["joins"], *result["lengths"]]:
        assert_times(row, "wall_s", "s_per_audio_s", "peak_rss_mib")
        assert_finite(row)
    # Joint sampling makes neighbouring windows agree exactly where they overlap.
    joint = next(row for row in result["joins"] if row["join"] == "joint")
    assert joint["disagreement"] < 1e-6


@pytest.mark.slow
def test_tracking_streams_every_length_and_the_baseline(tmp_path: Path) -> None:
    result = run_script(tmp_path, "tracking.py")
    cases = result["cases"]
    assert sorted(c["seconds"] for c in cases if c["case"].startswith("track_objects")) == (
        sorted(tracking.TINY_LENGTHS))
    assert sum("baseline" in c["case"] for c in cases) == 1
    for case in cases:
        assert case["slots"] == round(case["seconds"] * tracking.FPS)
        assert_times(case, "peak_mib", "wall_s", "cpu_s")


@pytest.mark.slow
def test_gpu_check_dry_run_in_tiny_mode(tmp_path: Path) -> None:
    """gpu_check.sh with GPU_CHECK_TINY=1 on the CPU: every step it defines runs and passes,
    and the results file holds the benchmark tables and the files the steps wrote. This is
    also the test of benchmarks/pipeline.py (both paths with --warmup, --soundtrack, a subset
    of stages on one path) and of every workload of benchmarks/threads.py."""
    script = BENCHMARKS / "gpu_check.sh"
    names = re.findall(r"^\s*run_step (\w+) ", script.read_text(), flags=re.MULTILINE)
    results = tmp_path / "results.json"
    env = {**_env(tmp_path), "GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_TINY": "1",
           "GPU_CHECK_DEADLINE_S": str(TIMEOUT_S), "GPU_CHECK_LIMIT_SCALE": "10",
           "TMPDIR": str(tmp_path),
           "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(script), str(results)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S + 60)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(results.read_text())
    assert summary["tiny"] and summary["device"] == "cpu"
    steps = {step["name"]: step for step in summary["steps"]}
    assert list(steps) == names
    no_gpu = {name for name, step in steps.items() if step["status"] == "skipped (no GPU)"}
    assert no_gpu == {"nvidia_smi"}  # nothing to ask on a CPU dry run
    failed = {name: step["log_tail"][-2000:] for name, step in steps.items()
              if name not in no_gpu and step["status"] != "ok"}
    assert not failed, failed
    assert summary["all_ok"]
    written = re.findall(r'--json "\$WORK/(\w+)\.json"', script.read_text())
    assert sorted(summary["benchmarks"]) == sorted(written)
    tables = summary["benchmarks"]
    for table in tables.values():
        assert_finite(table)
    check_pipeline(tables["pipeline_5s"], pipeline.STAGES, pipeline.PATHS)
    check_pipeline(tables["pipeline_30s_soundtrack"], pipeline.SOUNDTRACK_STAGES,
                   pipeline.PATHS)
    compiled = re.search(r"pipeline_5s_compile .*?--paths (\S+) --stages (\S+)",
                         script.read_text(), flags=re.DOTALL)
    check_pipeline(tables["pipeline_5s_compile"], tuple(compiled[2].split(",")),
                   tuple(compiled[1].split(",")))
    # Every workload of benchmarks/threads.py, at tiny sizes.
    assert [row["workload"] for row in tables["threads"]["rows"]] == list(threads.WORKLOADS)
    assert all(summary["outputs"].get(folder) for folder in ("demo", "train", "eval"))
    assert not list(tmp_path.glob("saganet-gpu-check.*"))  # its work folder is removed


def test_gpu_check_prefers_python3(tmp_path: Path) -> None:
    """Without PYTHON, gpu_check.sh runs python3, the interpreter that the documented
    `python3 -m pip install --target` filled, even where another `python` comes first on the
    PATH (a system Python 2, another environment); the environment step names it and what
    torch.compile on CUDA needs (Triton, a C compiler, Python.h)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    other = bin_dir / "python"
    other.write_text("#!/bin/sh\necho 'not the check interpreter' >&2\nexit 3\n")
    other.chmod(0o755)
    python3 = bin_dir / "python3"  # a wrapper: a symlink would leave the virtual environment
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python3.chmod(0o755)
    results = tmp_path / "results.json"
    env = {**_env(tmp_path), "GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_STEPS": "environment",
           "TMPDIR": str(tmp_path), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHON", None)
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), str(results)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = {step["name"]: step for step in json.loads(results.read_text())["steps"]}
    log = steps["environment"]["log_tail"]
    assert steps["environment"]["status"] == "ok", log
    assert log.startswith(sys.executable)
    lines = log.splitlines()
    for start in ("torch ", "triton ", "C compiler "):
        assert any(line.startswith(start) for line in lines), (start, log)
    assert "| Python.h " in log
