"""Hydra plumbing of train.py and batch_eval.py: defaults written once (in the schemas), the
paths group wired into both, one-line errors with exit status 2, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from saganet.errors import UserInputError
from saganet.evaluation.batch_config import BatchEvalConfig, batch_eval_config
from saganet.hydra_config import (
    RunDirRecord,
    check_run_dir,
    hydra_quoted,
    invocation_output_subdir,
    rename_overrides,
)
from saganet.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
ABSENT = object()
CONFIG = REPO / "config"
# Primary config -> (its schema, the groups it composes: folder -> package).
SCHEMAS: dict[str, tuple[type, dict[str, str]]] = {
    "train.yaml": (TrainConfig, {"model": "model", "lora": "model", "data": "data",
                                 "experiment": "", "eval/dataset": "eval.datasets.urmp"}),
    "eval/batch_eval.yaml": (BatchEvalConfig, {"eval/dataset": "dataset"}),
}


def _package(path: Path, default: str) -> str:
    """The package a config file writes to (its ``# @package`` header, else ``default``)."""
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            package = line.split()[-1]
            return "" if package == "_global_" else package
    return default


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _default_at(defaults: Any, key: str) -> Any:
    """The schema's default at a dotted key; ABSENT when it has none (or no such key)."""
    node = defaults
    for part in key.split("."):
        if not OmegaConf.is_dict(node) or part not in node or OmegaConf.is_missing(node, part):
            return ABSENT
        node = node[part]
    return OmegaConf.to_container(node) if OmegaConf.is_config(node) else node


def _repeated_defaults(schema: type, files: list[tuple[Path, str]], root: Path = REPO
                       ) -> list[str]:
    """``file: key = value`` for every YAML value equal to the schema's default there."""
    defaults = OmegaConf.structured(schema)
    repeated = []
    for path, package in files:
        content = yaml.safe_load(path.read_text()) or {}
        content.pop("defaults", None)
        content.pop("hydra", None)
        for key, value in _leaves(content, package).items():
            if _default_at(defaults, key) == value:
                repeated.append(f"{path.relative_to(root)}: {key} = {value!r}")
    return repeated


@pytest.mark.parametrize("primary", sorted(SCHEMAS))
def test_no_yaml_file_repeats_a_schema_default(primary):
    schema, groups = SCHEMAS[primary]
    files = [(CONFIG / primary, "")]
    for group, package in groups.items():
        files += [(path, _package(path, package))
                  for path in sorted((CONFIG / group).glob("*.yaml"))]
    assert len(files) > len(groups)
    assert _repeated_defaults(schema, files) == []


def test_the_check_finds_a_repeated_default(tmp_path):
    # The checker itself must be able to fail: a file that repeats TrainConfig.seed.
    copy = tmp_path / "train.yaml"
    copy.write_text("seed: 14159265\nlog:\n  interval: 20\n  t_bins: 3\n")
    found = _repeated_defaults(TrainConfig, [(copy, "")], root=tmp_path)
    assert found == ["train.yaml: seed = 14159265", "train.yaml: log.interval = 20"]


def test_batch_eval_composes_with_the_paths_group():
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from saganet.evaluation.batch_config import register_batch_eval_schema

    register_batch_eval_schema()
    with initialize_config_dir(config_dir=str(CONFIG / "eval"), version_base="1.3"):
        cfg = compose(config_name="batch_eval", overrides=["dataset=sms", "paths.data_dir=/d",
                                                           "paths.output_dir=/o"],
                      return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        config = batch_eval_config(cfg)
    assert config.dataset.root == "/d/sms/data"
    assert config.dataset.metadata == "/d/sms/memmaps/sms-test.tsv"
    assert config.run_dir == "/o/eval" and config.output_dir == Path("/o/eval/sms")
    assert (config.duration, config.cfg_strength, config.num_steps) == (5.0, 4.5, 25)


def test_batch_eval_model_is_a_key_not_the_training_model_group():
    # The reference's command line: batch_eval.py duration_s=5 dataset=urmp model=small_44k_sa
    from hydra import compose, initialize_config_dir

    from saganet.evaluation.batch_config import register_batch_eval_schema

    register_batch_eval_schema()
    with initialize_config_dir(config_dir=str(CONFIG / "eval"), version_base="1.3"):
        cfg = compose(config_name="batch_eval", overrides=rename_overrides(
            ["duration_s=5", "dataset=urmp", "model=small_44k_sa", "num_workers=8"],
            {"duration_s": "duration"}))
    assert (cfg.model, cfg.duration, cfg.num_workers) == ("small_44k_sa", 5.0, 8)


def test_reference_override_names_are_renamed():
    argv = ["duration_s=5", "dataset=urmp", "model=small_44k_sa", "x.duration_s=1"]
    assert rename_overrides(argv, {"duration_s": "duration"}) == [
        "duration=5", "dataset=urmp", "model=small_44k_sa", "x.duration_s=1"]


@pytest.mark.parametrize("argv", [["duration_s=2", "duration=3"],
                                  ["duration=3", "dataset=urmp", "duration_s=2"]])
def test_both_names_of_one_setting_with_different_values_are_refused(argv):
    # Hydra keeps the later override: one of the two values would be dropped silently.
    with pytest.raises(UserInputError, match=r"^duration_s=2 and duration=3 set the same "
                                             r"setting .*; give one of them$"):
        rename_overrides(argv, {"duration_s": "duration"})
    assert rename_overrides(["duration_s=2", "duration=2"], {"duration_s": "duration"}) == [
        "duration=2", "duration=2"]


def test_run_dir_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    read_only = {tmp_path / "locked"}
    (tmp_path / "locked").mkdir()
    # Simulated: the tests may run as root, whom file modes do not stop.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) not in read_only
                        and real_access(path, mode))
    check_run_dir(tmp_path / "new" / "run")  # made by Hydra: fine
    with pytest.raises(UserInputError, match=r"locked: run_dir is a folder this user cannot "
                                             r"write to$"):
        check_run_dir(tmp_path / "locked", "run_dir")
    with pytest.raises(UserInputError, match=r"locked/a/b: run_dir cannot be created: "
                                             r".*locked is not writable$"):
        check_run_dir(tmp_path / "locked" / "a" / "b", "run_dir")


def test_run_dir_clean_up_keeps_anything_the_run_wrote(tmp_path):
    run = tmp_path / "output" / "exp"
    record = RunDirRecord(run, tmp_path)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("x")
    (run / "train_rank0.log").write_text("log")
    (run / "ema_snapshots").mkdir()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "state_000000001.pth").write_bytes(b"s")
    assert not record.clean_up(["train_rank*.log"])
    assert (run / "checkpoints" / "state_000000001.pth").is_file()
    (run / "checkpoints" / "state_000000001.pth").unlink()
    assert record.clean_up(["train_rank*.log"])
    assert list(tmp_path.iterdir()) == []  # output/ was created for the run: gone as well
    existed = RunDirRecord(run, run)
    run.mkdir(parents=True)
    assert not existed.clean_up(["train_rank*.log"]) and run.is_dir()


def test_failure_on_an_existing_run_removes_only_its_own_hydra_files(tmp_path):
    run = tmp_path / "run"
    earlier = [run / ".hydra" / "config.yaml", run / "train_rank0.log",
               run / "checkpoints" / "state_000000001.pth"]
    for path in earlier:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("earlier run")
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - 60))
    started = time.time()
    own = run / ".hydra" / "resume-1"
    own.mkdir()
    (own / "config.yaml").write_text("this invocation")
    (run / "train_rank0.log").write_text("appended by this invocation")
    assert not RunDirRecord(run, run, None, started).clean_up(["train_rank*.log"])
    assert RunDirRecord(run, run, own, started).clean_up(["train_rank*.log"])
    assert not own.exists() and all(path.is_file() for path in earlier)
    # A file of its own (a training state written before the failure) keeps the record.
    own.mkdir()
    (run / "checkpoints" / "state_000000002.pth").write_text("this invocation")
    assert not RunDirRecord(run, run, own, started).clean_up(["train_rank*.log"])
    assert own.is_dir()


@pytest.mark.slow
def test_failed_command_on_an_existing_run_leaves_no_resume_folder(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("earlier run")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "state_000000001.pth").write_text("earlier run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = _run("train.py", "experiment=debug", "device=cpu", "data=urmp",
                  "paths.data_dir=missing", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("train.py: error: missing/")
    after = sorted(p.relative_to(run) for p in run.rglob("*") if not p.name.endswith(".log"))
    assert after == before


def test_each_invocation_of_a_run_dir_writes_hydra_files_of_its_own(tmp_path):
    run = tmp_path / "run"
    assert invocation_output_subdir(run, ".hydra", 0) == ".hydra"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("first")
    for number in (1, 2):
        subdir = invocation_output_subdir(run, ".hydra", 0)
        assert subdir == f".hydra/resume-{number}"
        (run / subdir).mkdir()
        (run / subdir / "config.yaml").write_text("later")
    # Other ranks write none (they would race rank 0 for the folder), as does a program
    # configured without them.
    assert invocation_output_subdir(run, ".hydra", 1) is None
    assert invocation_output_subdir(run, None, 0) is None


@pytest.mark.parametrize("folder", [".hydra/resume-1", "with space/resume-2", "a,b=c/resume-1",
                                    "back\\slash/resume-1", "it's/resume-3", "ends in\\",
                                    "quote\\'d", "[x]/resume-1"])
def test_quoted_override_values_read_back_unchanged(folder: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(
        f"hydra.output_subdir={hydra_quoted(folder)}")
    assert override.value() == folder


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("script", "args", "message"), [
    ("train.py", ["seed=abc"], "train.py: error: Error merging override seed=abc: Value 'abc'"),
    ("train.py", ["experiment=nope"], "train.py: error: In 'train': Could not find "
                                      "'experiment/nope'; Available options in 'experiment': "),
    # These two fail inside the run, after Hydra made the run directory (and import torch).
    pytest.param("train.py", ["experiment=debug", "data=urmp", "paths.data_dir=missing"],
                 "train.py: error: missing/urmp/memmaps/urmp-test: feature memmap folder not "
                 "found", marks=pytest.mark.slow),
    pytest.param("batch_eval.py", ["paths.data_dir=missing"],
                 "batch_eval.py: error: missing/urmp/data: dataset root is not a folder",
                 marks=pytest.mark.slow),
    ("batch_eval.py", ["foo=1"], "batch_eval.py: error: Could not override 'foo': Key 'foo' not "
                                    "in 'BatchEvalConfig'"),
    # Non-finite or huge values used to fail only when the NaN audio was written.
    ("batch_eval.py", ["cfg_strength=nan"],
     "batch_eval.py: error: cfg_strength must be a finite number from -1000 to 1000, got nan"),
    ("batch_eval.py", ["cfg_strength=1e308"],
     "batch_eval.py: error: cfg_strength must be a finite number from -1000 to 1000, got 1e+308"),
    ("batch_eval.py", ["duration=inf"],
     "batch_eval.py: error: duration must be a positive number of seconds, got inf"),
    ("batch_eval.py", ["duration_s=2", "duration=3"],
     "batch_eval.py: error: duration_s=2 and duration=3 set the same setting"),
])
def test_user_errors_are_one_line_exit_2_and_leave_nothing(tmp_path, script, args, message):
    result = _run(script, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no output/<exp>/.hydra, no log, no empty folders


@pytest.mark.slow
# One mistake found before Hydra starts, one after (with the run directory made).
@pytest.mark.parametrize("mistake", ["seed=abc", "batch_size"])
def test_a_configuration_error_under_torchrun_is_reported_once(tmp_path, mistake):
    ranks = 2
    override = f"batch_size={ranks + 1}" if mistake == "batch_size" else mistake
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
         "--standalone", str(REPO / "train.py"), "experiment=debug", "device=cpu", override,
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(ours) == 1, result.stderr[-3000:]
    if mistake == "batch_size":
        assert f"batch_size {ranks + 1} is not divisible by the {ranks} ranks" in ours[0]
    # torchrun names rank 0, which printed the line, as the root cause.
    cause = result.stderr.split("Root Cause")[-1]
    assert "rank      : 0 " in cause and "exitcode  : 2 " in cause, result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("run_dir", "problem"), [
    ("taken", "taken: run_dir exists and is not a folder"),
    ("taken/eval", "taken/eval: run_dir cannot be created: taken is not a folder"),
])
def test_run_dir_hydra_cannot_make_is_one_line_before_hydra_starts(tmp_path, run_dir, problem):
    (tmp_path / "taken").write_text("keep me")
    result = _run("batch_eval.py", f"run_dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [f"batch_eval.py: error: {problem}"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.slow
def test_missing_cuda_names_the_hydra_override(tmp_path):
    # An empty CUDA_VISIBLE_DEVICES hides every GPU, so CUDA is missing on any machine.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, str(REPO / "batch_eval.py"), "device=cuda"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("batch_eval.py: error: device 'cuda': CUDA is not available")
    assert last.endswith("; use device=cpu") and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_search_path_folder_that_does_not_exist_is_named(tmp_path):
    # Hydra skips such a folder silently, so its options were reported as not found in
    # config/ ("Could not find 'model/deeper'"), with no word of the folder.
    missing = tmp_path / "my_configs"
    result = _run("train.py", "model=deeper", f"hydra.searchpath=[file://{missing}]",
                  cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"train.py: error: {missing}: hydra.searchpath folder not found"]
    assert list(tmp_path.iterdir()) == []


def test_a_misspelt_key_is_not_answered_with_a_plus_that_fails_too(tmp_path):
    # Hydra's hint "To append to your config use +modle=debug" led to a second refusal (the
    # schema has no such field); the line names the key and the section that lacks it.
    result = _run("train.py", "modle=debug", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "train.py: error: Could not override 'modle': Key 'modle' not in 'TrainConfig'"]


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg", "job", "--resolve"], ["-m"],
                                   ["--multirun"]])
def test_hydra_flags_do_not_skip_the_one_line_errors(tmp_path, flags):
    # Hydra's own flags used to make preflight step aside: the docs' --cfg job printed Hydra's
    # multi-line message and its HYDRA_FULL_ERROR hint for a misspelt experiment.
    result = _run("train.py", "experiment=debg", *flags, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("train.py: error: In 'train': Could not find 'experiment/debg'")
    assert list(tmp_path.iterdir()) == []


def test_every_value_of_a_sweep_is_checked(tmp_path):
    result = _run("train.py", "-m", "experiment=debug", "seed=1,abc", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[0].startswith(
        "train.py: error: Error merging override seed=abc"), result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []


def test_print_config_still_prints_a_correct_config(tmp_path):
    result = _run("train.py", "experiment=debug", "seed=7", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = yaml.safe_load(result.stdout)
    assert printed["seed"] == 7
    assert list(tmp_path.iterdir()) == []


def test_a_config_that_resolves_only_when_run_is_one_line_with_resolve(tmp_path):
    # run_dir is ${hydra:runtime.output_dir}, which Hydra sets only when the run starts: its
    # --resolve printed a traceback.
    result = _run("train.py", "experiment=debug", "--cfg", "job", "--resolve", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: --cfg job --resolve: ")
    assert "run_dir" in lines[0] or "runtime.output_dir" in lines[0]
    assert lines[0].endswith("print with --cfg job alone")
