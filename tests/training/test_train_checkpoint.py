"""Atomic files, training states (round trip, retention) and RNG capture."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from saganet.errors import UserInputError
from saganet.state_dict import atomic_save
from saganet.training.checkpoint import (
    RNGState,
    TrainingState,
    latest_state,
    list_states,
    load_state,
    remove_after,
    save_state,
    save_weights_file,
    state_dir,
)
from saganet.training.ema import SNAPSHOT_DIR, snapshot_steps
from saganet.training.evaluation import EVAL_DIR, recorded_steps

if TYPE_CHECKING:
    from saganet.training.loop import Trainer

REPO = Path(__file__).resolve().parents[2]
# Saves `path` from another process that SIGKILLs itself in the middle of writing it.
KILLED_SAVE = """
import os, signal, sys
import torch
from saganet.state_dict import atomic_save

class DiesWhileSaved:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)

atomic_save({"w": torch.zeros(1000), "later": DiesWhileSaved()}, sys.argv[1])
"""


def _killed_save(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not path.exists()


def _state(step: int) -> TrainingState:
    return TrainingState(step=step, modules={"network": {"w": torch.full((2,), float(step))}},
                         trainable={"network": ["w"]},
                         optimizer={"state": {}, "param_groups": []},
                         scheduler={"last_epoch": step, "base_lrs": []}, epoch=1,
                         batches_in_epoch=3,
                         rng=[RNGState.capture({}).to_dict()], config={"betas": (0.9, 0.95)})


def resumed_trainer(run_dir: Path, resume: str | Path, *overrides: str) -> Trainer:
    """A debug-experiment trainer in ``run_dir``, resuming as ``checkpoint.resume`` says."""
    from saganet import dist
    from saganet.training.loop import Trainer
    from tests.training.test_train_config import load

    cfg = load("experiment=debug", f"checkpoint.resume={resume}", "eval.enabled=false",
               f"hydra.run.dir={run_dir}", *overrides)
    return Trainer(cfg, dist.init("cpu"))


def test_atomic_save_replaces_without_leftovers(tmp_path):
    path = tmp_path / "sub" / "file.pth"
    atomic_save({"a": torch.ones(1)}, path)
    atomic_save({"a": torch.zeros(1)}, path)
    assert torch.load(path, weights_only=True)["a"].item() == 0.0
    assert [p.name for p in path.parent.iterdir()] == ["file.pth"]


def test_atomic_save_failure_keeps_old_file(tmp_path):
    path = tmp_path / "file.pth"
    atomic_save({"a": torch.ones(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["a"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["file.pth"]


def test_state_round_trip_and_retention(tmp_path):
    for step in (4, 8, 12):
        save_state(_state(step), tmp_path, keep_last=2)
    assert [s for s, _ in list_states(tmp_path)] == [8, 12]
    loaded = load_state(latest_state(tmp_path))
    assert loaded.step == 12 and loaded.epoch == 1 and loaded.batches_in_epoch == 3
    assert torch.equal(loaded.modules["network"]["w"], torch.full((2,), 12.0))
    assert loaded.config == {"betas": (0.9, 0.95)}


def test_latest_state_of_empty_run(tmp_path):
    assert latest_state(tmp_path) is None


def test_rng_state_restores_every_source(tmp_path):
    gen = torch.Generator().manual_seed(5)
    saved = RNGState.capture({"noise": gen})
    first = (torch.rand(3), np.random.rand(2), random.random(), torch.rand(2, generator=gen))
    path = atomic_save(saved.to_dict(), tmp_path / "rng.pth")
    RNGState.from_dict(torch.load(path, weights_only=True)).restore({"noise": gen})
    second = (torch.rand(3), np.random.rand(2), random.random(), torch.rand(2, generator=gen))
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]
    assert torch.equal(first[3], second[3])
    with pytest.raises(KeyError, match="other"):
        saved.restore({"other": torch.Generator()})


def test_a_fresh_run_refuses_a_folder_holding_another_run(tmp_path):
    from saganet import dist
    from saganet.training.evaluation import METRICS_FILE
    from saganet.training.loop import Trainer
    from tests.training.test_train_config import load

    def trainer(run_dir, *overrides: str) -> Trainer:
        cfg = load("experiment=debug", "checkpoint.resume=never", f"hydra.run.dir={run_dir}",
                   *overrides)
        return Trainer(cfg, dist.init("cpu"))

    first = trainer(tmp_path / "states", "eval.enabled=false")
    first.step = first.cfg.checkpoint.state_interval
    first.save_state()
    # Another run starting over here would later resume from the old state: refused.
    with pytest.raises(UserInputError, match=r"resume=never.*training states"):
        trainer(tmp_path / "states", "eval.enabled=false")
    assert list_states(tmp_path / "states")[-1][0] == first.step

    # Its evaluations would count as done at the same steps: refused too.
    evaluated = trainer(tmp_path / "evaluations")
    step_dir = evaluated.evaluator.step_dir(evaluated.cfg.log.eval_interval)
    step_dir.mkdir(parents=True)
    (step_dir / METRICS_FILE).write_text('{"splits": {}}')
    with pytest.raises(UserInputError, match=r"resume=never.*evaluations"):
        trainer(tmp_path / "evaluations")


def test_a_weights_file_given_as_a_state_is_a_user_error(tmp_path):
    weights = atomic_save({"network": {"w": torch.zeros(2)}, "config": {}}, tmp_path / "w.pth")
    tensor = atomic_save(torch.zeros(3), tmp_path / "t.pth")
    for path in (weights, tensor):
        with pytest.raises(UserInputError, match=r"not a saganet training state.*state_<step>"):
            load_state(path)


def test_resuming_drops_the_audit_rows_of_steps_taken_again(tmp_path):
    from saganet.training.loop import SAMPLE_IDS_DIR

    def trainer(resume: str) -> Trainer:
        return resumed_trainer(tmp_path, resume, "log.record_sample_ids=true")

    first = trainer("never")
    first.step = first.cfg.checkpoint.state_interval
    first.save_state()
    # The run went on past its last state before it was killed: those steps run again.
    rows = [f"{step}\tclip{step}_{i}\n" for step in range(first.step + 3)
            for i in range(first.cfg.batch_size)]
    first.ids_file.write_text("".join(rows))
    resumed = trainer("auto")
    assert resumed.step == first.step
    kept = (tmp_path / SAMPLE_IDS_DIR / "rank0.tsv").read_text().splitlines(keepends=True)
    assert kept == [row for row in rows if int(row.split("\t")[0]) < first.step]


def _epoch_ids(trainer: Trainer, epoch: int) -> list[str]:
    """The sample ids of ``epoch`` in the order a one-rank run of ``trainer`` draws them."""
    from saganet.training.data import ResumableDistributedSampler

    sampler = ResumableDistributedSampler(trainer.train_set, 1, 0, seed=trainer.cfg.seed,
                                          drop_last=True)
    sampler.set_epoch(epoch)
    return [trainer.train_set.sample_id(i) for i in sampler]


def _recorded_ids(trainer: Trainer) -> list[str]:
    return [row.split("\t")[1] for row in trainer.ids_file.read_text().splitlines()]


def test_a_resume_with_another_batch_size_goes_on_exactly_where_the_epoch_stopped(tmp_path,
                                                                                  caplog):
    """The state counts the epoch's samples: a resume with another batch size takes the
    epoch's next samples (the old rule, batches x the new batch, skipped or repeated some)."""
    import logging

    first = resumed_trainer(tmp_path, "never", "log.record_sample_ids=true", "stop_after=3")
    first.run()
    consumed = first.step * first.cfg.batch_size
    assert first.samples_in_epoch == consumed
    bigger = first.cfg.batch_size * 2
    resumed = resumed_trainer(tmp_path, "auto", "log.record_sample_ids=true", "stop_after=5",
                              f"batch_size={bigger}")
    assert resumed.samples_in_epoch == consumed
    resumed.run()
    order = _epoch_ids(resumed, 0)
    total = consumed + (resumed.step - first.step) * bigger
    assert total < len(order)  # still the first epoch
    assert _recorded_ids(resumed) == order[:total]

    # An older state (no sample count) goes on after batches x the new batch, and says so.
    path = latest_state(tmp_path)
    state = torch.load(path, weights_only=True)
    del state["samples_in_epoch"]
    atomic_save(state, path)
    with caplog.at_level(logging.WARNING, logger="saganet.training.loop"):
        older = resumed_trainer(tmp_path, "auto", f"batch_size={first.cfg.batch_size}")
    assert older.samples_in_epoch == state["batches_in_epoch"] * first.cfg.batch_size
    assert any("no sample count" in r.getMessage() and f"batch_size {bigger}" in r.getMessage()
               for r in caplog.records)


def test_resuming_from_a_state_broken_in_two_modules_names_both(tmp_path):
    from saganet.state_dict import CheckpointMismatchError

    trainer = partial(resumed_trainer, tmp_path)

    first = trainer("never")
    first.step = first.cfg.checkpoint.state_interval
    first.save_state()
    path = latest_state(tmp_path)
    state = load_state(path)
    dropped = {}
    for name in ("network", "synchformer"):
        module = dict(state.modules[name])
        dropped[name] = next(iter(module))
        del module[dropped[name]]
        state.modules[name] = module
    atomic_save(state.to_dict(), path)
    with pytest.raises(CheckpointMismatchError) as info:
        trainer("auto")
    first_line, *rest = str(info.value).splitlines()
    assert first_line.startswith(str(path)) and "2 of its parts" in first_line
    for name, key in dropped.items():
        assert any(f"['{name}']" in line for line in rest)
        assert any(f"1 missing key(s): {key}" in line for line in rest)


@pytest.mark.parametrize("kind", ["state", "weights"])
def test_the_next_save_removes_what_a_save_killed_mid_write_left(tmp_path, kind):
    folder = state_dir(tmp_path) if kind == "state" else tmp_path
    target = folder / ("state_000000004.pth" if kind == "state" else "exp_last.pth")
    _killed_save(target)
    left = [p.name for p in folder.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".{target.name}.")  # the kill's leftover
    other = folder / ".notes.txt"
    other.write_text("not ours")
    if kind == "state":
        save_state(_state(8), tmp_path, keep_last=2)
        expected = sorted([other.name, "state_000000008.pth"])
    else:
        save_weights_file({"w": torch.ones(2)}, target)
        expected = sorted([other.name, target.name])
    assert sorted(p.name for p in folder.iterdir()) == expected


def test_a_resume_keeps_the_state_but_takes_the_configured_optimiser_settings(tmp_path, caplog):
    from saganet.training.optim import lr_factor

    trainer = partial(resumed_trainer, tmp_path)

    first = trainer("never")
    assert first.train_step(next(iter(first.train_loader)), first.stats)
    first.save_state()
    def settings(run: Trainer) -> list[dict]:
        return [{k: v for k, v in group.items() if k != "params"}
                for group in run.optimizer.param_groups]

    assert settings(trainer("auto")) == settings(first)  # the same configuration: as saved

    # Resumed with a lower peak rate and another weight decay (e.g. after a loss spike).
    lr, decay = first.cfg.optim.lr / 4, first.cfg.optim.weight_decay * 10
    caplog.clear()
    lower = trainer("auto", f"optim.lr={lr}", f"optim.weight_decay={decay}")
    assert lower.step == first.step and lower.scheduler.last_epoch == first.step
    assert "initial_lr" in caplog.text and "weight_decay" in caplog.text
    for group in lower.optimizer.param_groups:
        assert group["initial_lr"] == lr and group["weight_decay"] == decay
        assert group["lr"] == pytest.approx(lr * lr_factor(first.step, lower.cfg.schedule))
    # The moments come from the state.
    for mine, theirs in zip(lower.params, first.params, strict=True):
        assert torch.equal(lower.optimizer.state[mine]["exp_avg"],
                           first.optimizer.state[theirs]["exp_avg"])
    assert lower.train_step(next(iter(lower.train_loader)), lower.stats)
    assert lower.lr == pytest.approx(lr * lr_factor(first.step, lower.cfg.schedule))


def test_resuming_from_a_state_older_than_the_run_is_refused(tmp_path):

    trainer = partial(resumed_trainer, tmp_path)

    first = trainer("never")
    interval = first.cfg.checkpoint.state_interval
    for step in (interval, 2 * interval):
        first.step = step
        first.save_state()
    (older, older_path), (newest, _) = list_states(tmp_path)
    assert trainer("auto").step == newest
    # Going on from the older state would leave the newer one to a later "auto" resume.
    with pytest.raises(UserInputError, match=rf"state of step {older}.*{newest:09d}"):
        trainer(older_path)
    assert [s for s, _ in list_states(tmp_path)] == [older, newest]
    (state_dir(tmp_path) / f"state_{newest:09d}.pth").rename(tmp_path / "aside.pth")
    assert trainer(older_path).step == older


def test_remove_after_takes_what_a_later_step_wrote_and_nothing_else(tmp_path: Path) -> None:
    # A run's evaluations (folders by step, beside the caches) and EMA snapshots (files
    # <k>.<step>.pt, beside ema.json), as an invocation killed after its state at step 2 left.
    steps = [1, 2, 3, 10]
    for step in steps:
        (tmp_path / EVAL_DIR / str(step)).mkdir(parents=True)
        (tmp_path / EVAL_DIR / str(step) / "metrics.json").write_text("{}")
        for k in (0, 1):
            (tmp_path / SNAPSHOT_DIR).mkdir(exist_ok=True)
            (tmp_path / SNAPSHOT_DIR / f"{k}.{step}.pt").write_bytes(b"")
    (tmp_path / EVAL_DIR / "cache").mkdir()
    (tmp_path / SNAPSHOT_DIR / "ema.json").write_text("{}")
    start = steps[1]
    later = [s for s in steps if s > start]

    removed = remove_after(recorded_steps(tmp_path), start)
    assert removed == [tmp_path / EVAL_DIR / str(s) for s in later]
    assert sorted(p.name for p in (tmp_path / EVAL_DIR).iterdir()) == sorted(
        ["cache", *(str(s) for s in steps if s <= start)])

    removed = remove_after(snapshot_steps(tmp_path), start)
    assert [p.name for p in removed] == [f"{k}.{s}.pt" for s in later for k in (0, 1)]
    assert sorted(p.name for p in (tmp_path / SNAPSHOT_DIR).iterdir()) == sorted(
        ["ema.json", *(f"{k}.{s}.pt" for s in steps if s <= start for k in (0, 1))])
    assert remove_after(snapshot_steps(tmp_path), start) == []


def test_an_epoch_without_a_loadable_sample_stops_the_run(tmp_path, monkeypatch):
    """Every sample failing to load is an error after one epoch of skipped batches, not an
    endless loop of warnings."""
    from saganet import dist
    from saganet.data.synthetic import SyntheticClips
    from saganet.training.loop import Trainer
    from tests.training.test_train_config import load

    cfg = load("experiment=debug", "eval.enabled=false", "log.val_interval=0",
               f"hydra.run.dir={tmp_path}")
    trainer = Trainer(cfg, dist.init("cpu"))
    monkeypatch.setattr(SyntheticClips, "__getitem__", lambda self, index: None)
    with pytest.raises(UserInputError, match="whole epoch") as err:
        trainer.run()
    batches = len(trainer.train_loader)
    assert f"({batches} batches)" in str(err.value)
    assert trainer.step == 0 and trainer.batches_in_epoch == batches


def test_validation_without_a_loaded_sample_has_no_loss(tmp_path, monkeypatch, caplog):
    """No validation sample loaded: no loss point (a 0 would pass for a real loss) and a
    warning; with samples, a finite loss over all of them."""
    from saganet import dist
    from saganet.data.synthetic import SyntheticClips
    from saganet.training.loop import Trainer
    from tests.training.test_train_config import load

    cfg = load("experiment=debug", "eval.enabled=false", "log.val_batches=0",
               f"hydra.run.dir={tmp_path}")
    trainer = Trainer(cfg, dist.init("cpu"))
    values = trainer.validate()
    assert math.isfinite(values["loss"]) and values["samples"] == len(trainer.val_set)
    monkeypatch.setattr(SyntheticClips, "__getitem__", lambda self, index: None)
    with caplog.at_level("WARNING"):
        values = trainer.validate()
    assert "loss" not in values
    assert values["samples"] == 0 and values["failed"] == len(trainer.val_set)
    assert any("no validation loss" in r.getMessage() for r in caplog.records)


def test_a_run_without_validation_needs_no_val_split(tmp_path, monkeypatch):
    """Data without a val split trains when validation is off; validation (or an evaluation
    of ``val``) asks for the split and names it missing."""
    from saganet import dist
    from saganet.training import data, loop
    from saganet.training.loop import Trainer
    from tests.training.test_train_config import load

    real_split = data.build_split
    asked = []

    def without_val(cfg, name, *args):
        asked.append(name)
        if name == "val":
            raise UserInputError(f"the {cfg.kind} data has no val split")
        return real_split(cfg, name, *args)

    monkeypatch.setattr(data, "build_split", without_val)
    monkeypatch.setattr(loop, "build_split", without_val)
    args = ["experiment=debug", "num_iterations=2", f"hydra.run.dir={tmp_path}"]
    trainer = Trainer(load(*args, "log.val_interval=0", "eval.enabled=false"), dist.init("cpu"))
    trainer.run()
    assert trainer.step == 2 and trainer.val_set is None and "val" not in asked
    with pytest.raises(UserInputError, match="no val split"):
        Trainer(load(*args, "log.val_interval=1", "eval.enabled=false"), dist.init("cpu"))
    with pytest.raises(UserInputError, match=r"evaluation split 'val'.*no val split"):
        Trainer(load(*args, "log.val_interval=0", "eval.during=[val]", "eval.after=[]"),
                dist.init("cpu"))


def _without(part: dict, key: str) -> dict:
    return {k: v for k, v in part.items() if k != key}


@pytest.mark.parametrize(("break_it", "problem"), [
    (lambda d: d.update(modules=_without(d["modules"], "synchformer")),
     r"no synchformer weights"),
    (lambda d: d.update(optimizer=_without(d["optimizer"], "state")), r"no optimizer\['state'\]"),
    (lambda d: d.update(rng=[{}]), r"no rng\[0\]\['torch_cpu'\]"),
    (lambda d: d.update(rng=[]), r"'rng' holds no rank"),
    (lambda d: d.pop("scheduler"), r"no 'scheduler'"),
    (lambda d: d.update(step="10"), r"'step' is a str"),
    (lambda d: d.update(samples_in_epoch=-4), r"'samples_in_epoch' is -4, not a count"),
    (lambda d: d.update(modules={**d["modules"], "network": [1]}), r"modules\['network'\] is a"),
    (lambda d: d["optimizer"].update(param_groups=[]), r"optimiser or scheduler state does not"),
    (lambda d: d["rng"][0].update(torch_cpu=torch.zeros(3)), r"random generator states of rank 0"),
])
def test_resuming_from_a_malformed_state_is_a_one_line_error(tmp_path, break_it, problem):
    # Each of these used to end in a KeyError or TypeError traceback deep in the resume.

    trainer = partial(resumed_trainer, tmp_path)

    first = trainer("never")
    first.step = first.cfg.checkpoint.state_interval
    first.save_state()
    path = latest_state(tmp_path)
    data = torch.load(path, weights_only=True)
    break_it(data)
    atomic_save(data, path)
    with pytest.raises(UserInputError, match=rf"malformed training state: .*{problem}") as info:
        trainer(str(path))
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_a_resume_with_other_settings_warns_once_listing_each(tmp_path, caplog):
    # A run resumed with another duration, batch size, seed or loss went on silently.
    import logging


    trainer = partial(resumed_trainer, tmp_path)

    first = trainer("never")
    first.step = first.cfg.checkpoint.state_interval
    first.save_state()
    cfg = first.cfg

    def differences() -> list[str]:
        return [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING and "settings differ" in record.message]

    caplog.clear()
    # Extending the run or logging, saving and evaluating otherwise: no warning.
    trainer("auto", f"num_iterations={cfg.num_iterations * 2}", "log.interval=7",
            "checkpoint.keep_last=5", "eval.num_steps=3", "data.num_workers=0")
    assert differences() == []
    caplog.clear()
    trainer("auto", f"seed={cfg.seed + 1}", f"batch_size={cfg.batch_size * 2}",
            "loss.t_mean=0.5", f"duration={cfg.duration * 2}", "optim.grad_clip=0.5",
            "data.synthetic_train_size=48", f"num_iterations={cfg.num_iterations * 2}")
    [warning] = differences()
    for change in (f"seed {cfg.seed} -> {cfg.seed + 1}",
                   f"batch_size {cfg.batch_size} -> {cfg.batch_size * 2}",
                   f"loss.t_mean {cfg.loss.t_mean} -> 0.5",
                   f"duration {cfg.duration} -> {cfg.duration * 2}",
                   f"optim.grad_clip {cfg.optim.grad_clip} -> 0.5",
                   f"data.synthetic_train_size {cfg.data.synthetic_train_size} -> 48"):
        assert change in warning
    assert "num_iterations" not in warning


def test_config_changes_list_architecture_entries_only_one_side_has():
    # The architecture mapping holds only what differs from the named size: an entry set on
    # one side only was left out, so {} -> {lora_alpha: ...} went unreported.
    from saganet.training.checkpoint import config_changes

    saved = {"seed": 1, "model": {"architecture": {"depth": 3}}}
    now = {"seed": 1, "model": {"architecture": {"lora_alpha": 8.0}}}
    changes = config_changes(saved, now)
    assert sorted(changes) == ["model.architecture.depth 3 -> (unset)",
                               "model.architecture.lora_alpha (unset) -> 8.0"]
    # Elsewhere a key on one side only is a state of another code version: not a change.
    assert config_changes({"seed": 1, "old": 2}, {"seed": 1, "new": 3}) == []


def test_a_resume_that_adds_an_architecture_entry_warns(tmp_path, caplog):
    import logging

    from saganet.model.config import NetworkConfig

    trainer = partial(resumed_trainer, tmp_path)
    first = trainer("never")
    first.step = first.cfg.checkpoint.state_interval
    first.save_state()
    alpha = NetworkConfig.__dataclass_fields__["lora_alpha"].default * 2
    caplog.clear()
    # lora_alpha keeps every shape, so the state loads and nothing else would say it changed.
    trainer("auto", f"++model.architecture.lora_alpha={alpha}")
    [warning] = [record.getMessage() for record in caplog.records
                 if record.levelno == logging.WARNING and "settings differ" in record.message]
    assert f"model.architecture.lora_alpha (unset) -> {alpha}" in warning
