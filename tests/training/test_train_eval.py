"""Evaluation during and after training: feature-source choice, parameter substitution, the
evaluator on the synthetic debug set (in process), and ``train.py experiment=debug`` with the
built-in embedder under one process and two (same metrics), resumed without recomputing."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from saganet import dist
from saganet.errors import UserInputError
from saganet.evaluation.audio import read_audio
from saganet.training.evaluation import (
    BUILTIN_EMBEDDER,
    METRICS_FILE,
    PAPER_METRICS,
    choose_feature_source,
    substituted_parameters,
)
from saganet.training.loop import Trainer
from tests.evaluation.test_batch_eval import make_urmp
from tests.training.test_train_config import load
from tests.training.test_train_run import run

REPO = Path(__file__).resolve().parents[2]


def test_feature_source_falls_back_to_the_builtin_embedder_and_says_why():
    cpu = torch.device("cpu")
    auto = choose_feature_source("auto", cpu)
    assert auto.name == BUILTIN_EMBEDDER and "CUDA" in auto.fallback_reason
    assert "not comparable" in auto.description
    chosen = choose_feature_source(BUILTIN_EMBEDDER, cpu)
    assert chosen.name == BUILTIN_EMBEDDER and chosen.fallback_reason is None
    with pytest.raises(UserInputError, match="av-bench"):
        choose_feature_source("av-bench", cpu)
    with pytest.raises(UserInputError, match=r"unknown eval\.features"):
        choose_feature_source("passt", cpu)


def test_substituted_parameters_are_restored():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    before = net[0].weight.detach().clone()
    other = torch.full_like(before, 0.5)
    with substituted_parameters({"network": net}, {"network/0/weight": other}):
        assert torch.equal(net[0].weight, other)
    assert torch.equal(net[0].weight, before)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory) -> Trainer:
    run_dir = tmp_path_factory.mktemp("run")
    cfg = load("experiment=debug", "eval.num_clips=3", "eval.batch_size=2", "eval.num_steps=2",
               "data.synthetic_test_size=2", f"hydra.run.dir={run_dir}")
    return Trainer(cfg, dist.init("cpu"))


class _Scalars:
    """Records what would go to TensorBoard."""

    def __init__(self) -> None:
        self.logged: dict[str, dict[str, float]] = {}

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        self.logged[f"{prefix}@{step}"] = dict(values)


def test_evaluation_writes_clips_metrics_and_is_not_repeated(trainer):
    evaluator = trainer.evaluator
    assert evaluator is not None and sorted(evaluator.splits) == ["test", "val"]
    scalars = _Scalars()
    trainer.step = 7
    trainer.evaluate(scalars, ["val"])
    folder = evaluator.step_dir(7)
    val = evaluator.splits["val"]
    stems = [val.stem(i) for i in val.indices]
    assert len(stems) == 3  # eval.num_clips of the 8 validation clips
    assert sorted(p.stem for p in (folder / "val").glob("*.flac")) == sorted(stems)
    recorded = json.loads((folder / METRICS_FILE).read_text())
    entry = recorded["splits"]["val"]
    assert recorded["step"] == 7 and entry["clips"] == 3 and entry["error"] is None
    assert set(entry["metrics"]) == {"FD-melstats", "KL-melstats-softmax", "ISC-melstats-mean",
                                     "ISC-melstats-std"}
    assert all(math.isfinite(v) for v in entry["metrics"].values())
    assert set(entry["skipped"]) == set(PAPER_METRICS)  # named, with the reason
    assert "CUDA" in entry["skipped"]["DeSync"] and BUILTIN_EMBEDDER in entry["features"]
    assert scalars.logged == {"eval/val@7": entry["metrics"]}
    # The ground truth of the synthetic set is its latents through the run's codec.
    truth, rate = read_audio(val.gt_audio_dir / f"{stems[0]}.flac")
    assert rate == evaluator.codec.sampling_rate and truth.shape[1] > 0

    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    again = _Scalars()
    trainer.evaluate(again, ["val"])
    assert again.logged == {} and {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == mtimes

    # The same step with other weights (e.g. an EMA) gives other audio: the generation uses
    # the weights it is given, and the live ones come back afterwards.
    live = {n: p.detach().clone() for n, p in trainer.core.network.named_parameters()}
    first = read_audio(folder / "val" / f"{stems[0]}.flac")[0]
    name = next(n for n, p in trainer.core.network.named_parameters() if p.requires_grad
                and n.endswith("lora_B"))
    bumped = {f"network/{name.replace('.', '/')}":
              torch.full_like(trainer.core.network.get_parameter(name), 0.05)}
    evaluator.evaluate(8, ["val"], trainer.core.network, trainer.core.synchformer, bumped, "x")
    other = read_audio(evaluator.step_dir(8) / "val" / f"{stems[0]}.flac")[0]
    assert not torch.equal(torch.from_numpy(first), torch.from_numpy(other))
    for n, p in trainer.core.network.named_parameters():
        assert torch.equal(p, live[n]), n


def test_the_evaluation_loader_takes_at_most_this_processs_share_of_cores(trainer, monkeypatch):
    # data.num_workers (8 for SMS) on a 2-core machine: the training loader was capped, the
    # evaluation loader started all 8 (and torch warned about it).
    from saganet import runtime
    from saganet.training import evaluation

    workers = []

    class Recording(evaluation.DataLoader):
        def __init__(self, *args, **kwargs) -> None:
            workers.append(kwargs.get("num_workers", 0))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(runtime, "available_cores", lambda: 1)
    monkeypatch.setattr(evaluation, "DataLoader", Recording)
    monkeypatch.setattr(trainer.evaluator, "num_workers", 8)
    trainer.step = 11
    trainer.evaluate(_Scalars(), ["val"])
    assert workers == [runtime.loader_workers(8)] and workers[0] < 8


def test_the_test_set_goes_through_the_batch_evaluation_with_the_weights_file(tmp_path):
    root = tmp_path / "urmp"
    table = make_urmp(root, clips=3)
    cfg = load("experiment=debug", "eval.after=[urmp]", "eval.during=[]", "eval.num_steps=2",
               f"eval.datasets.urmp.root={root}", f"eval.datasets.urmp.metadata={table}",
               f"paths.weights_dir={tmp_path / 'weights'}", f"hydra.run.dir={tmp_path / 'run'}")
    trainer = Trainer(cfg, dist.init("cpu"))
    assert trainer.evaluator is not None and list(trainer.evaluator.datasets) == ["urmp"]
    trainer.step = 5
    trainer.save_weights()
    scalars = _Scalars()
    trainer.evaluate(scalars, ["urmp"], final=True)
    folder = trainer.evaluator.step_dir(5)
    entry = json.loads((folder / METRICS_FILE).read_text())["splits"]["urmp"]
    stems = sorted(p.stem for p in (folder / "urmp").glob("*.flac"))
    assert len(stems) == 3 and entry["clips"] == 3 and entry["error"] is None
    assert entry["weights"] == "debug_last.pth"
    assert sorted(p.stem for p in (folder / "urmp-ground_truth").glob("*.flac")) == stems
    manifest = json.loads((folder / "urmp" / "manifest.json").read_text())
    assert manifest["checkpoint"] == str(tmp_path / "run" / "debug_last.pth")
    assert set(scalars.logged["eval/urmp@5"]) == set(entry["metrics"]) and entry["metrics"]


def test_unconfigured_or_broken_splits_fail_before_training(tmp_path):
    cfg = load("experiment=debug", "eval.after=[urmp]", "paths.data_dir=nowhere",
               f"hydra.run.dir={tmp_path}")
    with pytest.raises(UserInputError, match=r"evaluation dataset 'urmp': nowhere/urmp/data"):
        Trainer(cfg, dist.init("cpu"))
    cfg = load("experiment=debug", "eval.after=[holdout]", f"hydra.run.dir={tmp_path}")
    with pytest.raises(UserInputError, match=r"evaluation split 'holdout'.*eval\.enabled=false"):
        Trainer(cfg, dist.init("cpu"))
    cfg = load("experiment=debug", "eval.features=av-bench", f"hydra.run.dir={tmp_path}")
    with pytest.raises(UserInputError, match=r"eval\.features=av-bench"):
        Trainer(cfg, dist.init("cpu"))


def test_a_split_smaller_than_a_batch_fails_before_the_evaluator_and_base_weights(tmp_path,
                                                                                  monkeypatch):
    """Both may download gigabytes first (codec, av-benchmark, MMAudio and Synchformer)."""
    def not_yet(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached before the batch check")

    monkeypatch.setattr(Trainer, "_build_evaluator", not_yet)
    monkeypatch.setattr("saganet.training.loop.load_base_weights", not_yet)
    cfg = load("experiment=debug", "data.synthetic_train_size=1", f"hydra.run.dir={tmp_path}")
    with pytest.raises(UserInputError, match="1 training samples give no batch of 2"):
        Trainer(cfg, dist.init("cpu"))


def test_a_run_that_ends_in_the_warm_up_says_so(tmp_path, caplog):
    """A shortened run keeping the recipe's 2500 warm-up steps never trained at optim.lr."""
    cfg = load("experiment=debug", "num_iterations=4", "eval.enabled=false",
               f"hydra.run.dir={tmp_path}")
    with caplog.at_level(logging.WARNING, logger="saganet.training.loop"):
        Trainer(cfg, dist.init("cpu"))
    assert ("schedule.warmup_steps=5 is not shorter than num_iterations=4: the run ends in the "
            "warm-up, its last step at 0.667 x optim.lr") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="saganet.training.loop"):
        Trainer(load("experiment=debug", "num_iterations=6", "eval.enabled=false",
                     f"hydra.run.dir={tmp_path}"), dist.init("cpu"))
    assert "warm-up" not in caplog.text


# ----------------------------------------------------------------------------------------------
# train.py end to end

STEPS, INTERVAL = 4, 2
EVAL_ARGS = ["experiment=debug", f"num_iterations={STEPS}", f"log.eval_interval={INTERVAL}",
             "log.val_interval=0", "log.interval=1", f"checkpoint.state_interval={INTERVAL}",
             "checkpoint.keep_last=3", "eval.num_clips=3", "eval.num_steps=2",
             "data.synthetic_test_size=2",
             # One clip per generation call: one and two ranks then run the very same
             # computations (batches of other compositions round differently in the last bit).
             "eval.batch_size=1",
             # No learning: the weights, hence the metrics, are the same with one or two
             # ranks (whose training noise differs), so the comparison isolates evaluation.
             "optim.lr=0"]


def _train(run_dir: Path, nproc: int, *extra: str) -> None:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable])
    run([*launcher, str(REPO / "train.py"), f"hydra.run.dir={run_dir}", *EVAL_ARGS, *extra])


def _metrics(run_dir: Path) -> dict[int, dict[str, dict[str, float]]]:
    out = {}
    for path in sorted((run_dir / "eval").glob(f"*/{METRICS_FILE}")):
        content = json.loads(path.read_text())
        out[content["step"]] = {name: entry["metrics"]
                                for name, entry in content["splits"].items()}
    return out


def _tensorboard(run_dir: Path) -> dict[tuple[str, int], float]:
    values = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag.startswith("eval/"):
                    values[value.tag, event.step] = value.tensor.float_val[0]
    return values


@pytest.mark.slow
def test_debug_run_evaluates_at_interval_and_end_on_one_and_two_ranks_and_resumes(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    _train(single, 1)
    metrics = _metrics(single)
    assert sorted(metrics) == list(range(INTERVAL, STEPS + 1, INTERVAL))
    assert all(sorted(metrics[step]) == ["val"] for step in metrics if step < STEPS)
    assert sorted(metrics[STEPS]) == ["test", "val"]  # the test split after the last step
    for splits in metrics.values():
        for values in splits.values():
            assert "FD-melstats" in values and all(math.isfinite(v) for v in values.values())
    board = _tensorboard(single)
    assert board[("eval/test/FD-melstats", STEPS)] == pytest.approx(
        metrics[STEPS]["test"]["FD-melstats"])
    log = (single / "train_rank0.log").read_text()
    assert "built-in weight-free embedder 'melstats'" in log

    _train(double, 2)
    assert _metrics(double) == metrics  # same clips, same seeds: same numbers
    assert sorted(p.name for p in (double / "eval" / f"{STEPS:09d}" / "test").glob("*.flac")) \
        == sorted(p.name for p in (single / "eval" / f"{STEPS:09d}" / "test").glob("*.flac"))

    # Resume from the state before the last evaluation (as after a kill before the last
    # state): steps 3 and 4 run again, and so does the evaluation at 4, which scored the
    # steps taken before; the evaluation at 2, before the state, is not run again.
    (single / "checkpoints" / f"state_{STEPS:09d}.pth").unlink()
    kept = {p: p.stat().st_mtime_ns for p in (single / "eval" / f"{INTERVAL:09d}").rglob("*")}
    last = single / "eval" / f"{STEPS:09d}" / METRICS_FILE
    last.write_text(last.read_text().replace('"weights": "current"', '"weights": "killed"'))
    _train(single, 1)
    assert {p: p.stat().st_mtime_ns
            for p in (single / "eval" / f"{INTERVAL:09d}").rglob("*")} == kept
    assert '"killed"' not in last.read_text()
    assert _metrics(single) == metrics  # no learning (optim.lr=0): the same numbers
    log = (single / "train_rank0.log").read_text()
    assert f"resumed from {single / 'checkpoints' / f'state_{INTERVAL:09d}.pth'}" in log
    assert f"{last.parent}: evaluated after step {INTERVAL}" in log
    assert "already evaluated" not in log


def test_eval_plugins_make_a_user_embedder_a_feature_source(tmp_path, monkeypatch):
    from saganet.evaluation import embedders
    from tests.evaluation.test_eval_cli import PLUGIN

    (tmp_path / "run_metrics.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(embedders, "_REGISTRY", dict(embedders._REGISTRY))
    monkeypatch.delitem(sys.modules, "run_metrics", raising=False)
    cpu = torch.device("cpu")
    try:
        with pytest.raises(UserInputError, match=r"unknown eval\.features"):
            choose_feature_source("loudness", cpu)
        source = choose_feature_source("loudness", cpu, plugins=("run_metrics",))
        assert source.name == "loudness" and "RMS" in source.description
        with pytest.raises(UserInputError,
                           match=r"^eval\.plugins 'nope_metrics': cannot import"):
            choose_feature_source("loudness", cpu, plugins=("nope_metrics",))
    finally:
        sys.modules.pop("run_metrics", None)
