"""The logged series of a run that was hard-killed (SIGKILL: no state saved, nothing flushed)
and resumed, or stopped with ``stop_after`` and resumed, is the series an uninterrupted run
logs: the same log points, each averaging the same steps, once each in TensorBoard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from saganet.training.ema import EMA_INFO_FILE, SNAPSHOT_DIR
from saganet.training.logger import LossStats, RunLogger
from tests.training.test_train_run import finish

REPO = Path(__file__).resolve().parents[2]
HARD_KILL = Path(__file__).resolve().with_name("hard_kill.py")
STEPS, LOG_EVERY, STATE_EVERY = 9, 3, 4
KILL_AT = 7   # after the log point at 6, whose window started before the state at 4
STOP_AT = 5   # between the state at 4 and the log point at 6
EVAL_EVERY = LOG_EVERY * (KILL_AT // LOG_EVERY)  # evaluated by the killed run after its state
ARGS = ["experiment=debug", f"num_iterations={STEPS}", f"log.interval={LOG_EVERY}",
        f"log.val_interval={LOG_EVERY}", f"log.eval_interval={EVAL_EVERY}", "eval.during=[val]",
        "eval.after=[]", "eval.num_clips=2", "eval.num_steps=2",
        f"checkpoint.state_interval={STATE_EVERY}", f"checkpoint.weights_interval={STEPS}"]


def launch(script: Path, run_dir: Path, args: list[str], nproc: int) -> subprocess.Popen:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([*launcher, str(script), *args, f"hydra.run.dir={run_dir}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run as TensorBoard shows it: ``(step, value)`` in order,
    with the points a restart purged left out."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


@pytest.mark.slow
# Two ranks only: the one-rank run takes the same code (rank 0 writes, the windows are summed
# over the ranks) and would add a minute to the suite.
@pytest.mark.parametrize("nproc", [2])
def test_resumed_runs_log_what_an_uninterrupted_run_logs(tmp_path, nproc):
    assert STATE_EVERY < EVAL_EVERY < KILL_AT < STEPS
    assert STATE_EVERY < STOP_AT < EVAL_EVERY
    run_dir = tmp_path / "run"
    code, output = finish(launch(HARD_KILL, run_dir, [str(KILL_AT), *ARGS], nproc))
    assert code != 0, output[-3000:]
    killed = series(run_dir)
    log_points = [s for s in range(LOG_EVERY, KILL_AT + 1, LOG_EVERY)]
    assert [s for s, _ in killed["train/loss"]] == log_points
    evaluated = [tag for tag in killed if tag.startswith("eval/val/")]
    assert evaluated and all([s for s, _ in killed[tag]] == [EVAL_EVERY] for tag in evaluated)
    assert [s.name for s in (run_dir / "checkpoints").iterdir()] == [f"state_{STATE_EVERY:09d}.pth"]

    # Resume from the state before the kill, stop cleanly in the middle of a log window, and
    # resume again to the end.
    for extra in ([f"stop_after={STOP_AT}"], []):
        code, output = finish(launch(REPO / "train.py", run_dir, [*ARGS, *extra], nproc))
        assert code == 0, output[-5000:]

    shown = series(run_dir)
    every_point = [*range(LOG_EVERY, STEPS + 1, LOG_EVERY)]
    every_point += [STEPS] if STEPS % LOG_EVERY else []
    # One point per log step, none from the stop, none twice (the loss by time-step bin only
    # where the window had samples in that bin).
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/samples", "val/loss"):
        assert [s for s, _ in shown[tag]] == every_point, tag
    reached = log_points[-1]
    for tag, points in shown.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)) and set(steps) <= set(every_point), (tag, steps)
        # The log points the killed run reached averaged uninterrupted steps: the resumed runs
        # log the same values there (every window, including the one cut by the kill).
        assert [p for p in points if p[0] <= reached] == killed.get(tag, []), tag


def _trainer(run_dir: Path, resume: str, *overrides: str, evaluate: bool = False):
    from saganet import dist
    from saganet.training.loop import Trainer
    from tests.training.test_train_config import load

    cfg = load("experiment=debug", f"checkpoint.resume={resume}",
               f"eval.enabled={str(evaluate).lower()}", f"hydra.run.dir={run_dir}", *overrides)
    return Trainer(cfg, dist.init("cpu"))


@pytest.mark.parametrize("resume", ["auto", "explicit"])
def test_a_resume_evaluates_again_the_steps_after_its_state(tmp_path, resume):
    """A killed invocation evaluated a step after its last state: that evaluation scored a
    course the resumed run does not take, so the resumed run evaluates the step again and
    TensorBoard shows its values; the evaluations up to the state stay as they are."""
    state_at, killed_at = 1, 2
    args = [f"num_iterations={killed_at + 1}", "log.interval=1", "log.val_interval=0",
            "log.eval_interval=1", f"checkpoint.state_interval={killed_at + 1}",
            "eval.during=[val]", "eval.after=[]", "eval.num_clips=2", "eval.num_steps=1"]
    killed = _trainer(tmp_path, "never", *args, evaluate=True)
    logger = RunLogger(tmp_path, True, killed_at)
    batches = iter(killed.train_loader)
    for step in range(1, killed_at + 1):
        if step > state_at:
            # The killed invocation's steps after its state took another course than the
            # resumed run's (another batch here; on a GPU, rounding may do it).
            next(batches)
        assert killed.train_step(next(batches), killed.stats) and killed.step == step
        killed.after_step(logger, killed.stats)
        if step == state_at:
            killed.save_state()
    logger.close()  # the kill: no state after step state_at
    evaluator = killed.evaluator
    state = tmp_path / "checkpoints" / f"state_{state_at:09d}.pth"
    assert [p.name for p in state.parent.iterdir()] == [state.name]
    abandoned = evaluator.recorded(killed_at)["splits"]["val"]["metrics"]
    kept = {p: p.stat().st_mtime_ns for step in range(1, state_at + 1)
            for p in evaluator.step_dir(step).rglob("*")}
    before = series(tmp_path)

    resumed = _trainer(tmp_path, "auto" if resume == "auto" else str(state), *args,
                       f"stop_after={killed_at}", evaluate=True)
    assert resumed.step == state_at
    resumed.run()

    redone = evaluator.recorded(killed_at)["splits"]["val"]["metrics"]
    assert redone != abandoned  # evaluated again
    assert {p: p.stat().st_mtime_ns for step in range(1, state_at + 1)
            for p in evaluator.step_dir(step).rglob("*")} == kept
    shown = series(tmp_path)
    for metric, value in redone.items():
        points = shown[f"eval/val/{metric}"]
        assert [s for s, _ in points] == [*range(1, killed_at + 1)], metric
        assert points[:state_at] == before[f"eval/val/{metric}"][:state_at], metric
        assert points[killed_at - 1][1] == pytest.approx(value), metric


def test_a_run_killed_before_its_first_state_evaluates_every_step_again(tmp_path):
    evaluated = tmp_path / "eval" / f"{1:09d}"
    evaluated.mkdir(parents=True)
    (evaluated / "metrics.json").write_text('{"step": 1, "splits": {}}')
    cache = tmp_path / "eval" / "cache"
    cache.mkdir()
    snapshot = tmp_path / SNAPSHOT_DIR / "0.1.pt"
    snapshot.parent.mkdir()
    snapshot.write_bytes(b"")
    (snapshot.parent / EMA_INFO_FILE).write_text("{}")
    trainer = _trainer(tmp_path, "auto")
    assert trainer.step == 0 and not evaluated.exists() and cache.is_dir()
    assert [p.name for p in snapshot.parent.iterdir()] == [EMA_INFO_FILE]


def _snapshots(run_dir: Path) -> dict[str, dict]:
    return {p.name: torch.load(p, weights_only=True)
            for p in (run_dir / SNAPSHOT_DIR).glob("*.pt")}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_a_resume_synthesises_the_ema_of_its_own_course_only(tmp_path, caplog):
    """A killed invocation snapshotted the EMA after its last state, up to a step the resumed
    run never reaches (it ends earlier): the resumed run's snapshots and synthesised EMA are
    an uninterrupted run's, and its EMA goes on from the state's."""
    state_at, end, killed_at = 1, 2, 4
    assert state_at < end < killed_at
    args = ["ema.enabled=true", "ema.snapshot_every=1", "log.interval=1", "log.val_interval=0",
            f"checkpoint.state_interval={killed_at + 1}"]
    straight_dir, run_dir = tmp_path / "straight", tmp_path / "run"
    _trainer(straight_dir, "never", *args, f"num_iterations={end}").run()
    straight = _snapshots(straight_dir)

    killed = _trainer(run_dir, "never", *args, f"num_iterations={killed_at}")
    batches = iter(killed.train_loader)
    for step in range(1, killed_at + 1):
        if step > state_at:
            next(batches)  # the killed invocation's course after its state is not retaken
        assert killed.train_step(next(batches), killed.stats) and killed.step == step
        if step == state_at:
            # The data position run() keeps.
            killed.batches_in_epoch = step
            killed.samples_in_epoch = step * killed.cfg.batch_size
            killed.save_state()
    written = {p.name for p in (run_dir / SNAPSHOT_DIR).glob("*.pt")}
    sigmas = range(len(killed.cfg.ema.sigma_rels))
    assert written == {f"{k}.{s}.pt" for k in sigmas for s in range(1, killed_at + 1)}

    resumed = _trainer(run_dir, "auto", *args, f"num_iterations={end}")
    assert resumed.step == state_at
    for k in sigmas:  # the EMA's running state (averages and step count) is the state's
        assert _same(resumed.ema.ema_models[k].state_dict(), straight[f"{k}.{state_at}.pt"])
    resumed.run()
    final = f"{resumed.cfg.exp_name}_ema_final.pth"
    assert _same(_flat(torch.load(run_dir / final, weights_only=True)),
                 _flat(torch.load(straight_dir / final, weights_only=True)))
    snapshots = _snapshots(run_dir)
    assert snapshots.keys() == straight.keys()
    assert all(_same(snapshots[name], straight[name]) for name in straight)
    removed = len(sigmas) * (killed_at - state_at)
    assert f"removed {removed} EMA snapshot(s) of steps after {state_at}" in caplog.text


def test_an_ema_switched_on_at_a_resume_counts_from_the_resumed_step(tmp_path, caplog):
    """A state written with the EMA off: the EMA starts at the state's step, from its weights,
    and its snapshots are named by the training steps they were taken at."""
    state_at, end = 2, 3
    first = _trainer(tmp_path, "never", "ema.enabled=false", f"num_iterations={state_at}",
                     f"checkpoint.state_interval={state_at}")
    first.run()
    resumed = _trainer(tmp_path, "auto", "ema.enabled=true", "ema.snapshot_every=1",
                       f"num_iterations={end}")
    assert resumed.step == state_at
    assert [int(m.step) for m in resumed.ema.ema_models] == [state_at] * len(
        resumed.cfg.ema.sigma_rels)
    assert f"the EMA restarts at step {state_at}" in caplog.text
    resumed.run()
    sigmas = range(len(resumed.cfg.ema.sigma_rels))
    assert {p.name for p in (tmp_path / SNAPSHOT_DIR).glob("*.pt")} == {
        f"{k}.{s}.pt" for k in sigmas for s in range(state_at + 1, end + 1)}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


def test_a_state_carries_the_unfinished_log_window(tmp_path, caplog):
    first = _trainer(tmp_path, "never")
    batches = iter(first.train_loader)
    steps = first.cfg.log.interval - 1  # a window the log has not closed yet
    assert steps >= 1
    for _ in range(steps):
        assert first.train_step(next(batches), first.stats)
    window = first.stats.state_dict()
    assert window["steps"] == steps and window["samples"] == steps * first.local_batch
    first.save_state()
    resumed = _trainer(tmp_path, "auto")
    assert resumed.step == steps and _same(resumed.stats.state_dict(), window)
    # A state of another log.t_bins: the window starts over, with a warning.
    bins = first.cfg.log.t_bins + 1
    caplog.clear()
    other = _trainer(tmp_path, "auto", f"log.t_bins={bins}")
    assert other.step == steps and other.stats.state_dict()["samples"] == 0
    assert "time-step bins" in caplog.text


def test_windows_of_several_ranks_add_up_to_their_reduction():
    per_rank = []
    generator = torch.Generator().manual_seed(0)
    for rank in range(3):
        stats = LossStats(t_bins=4)
        for _ in range(rank + 1):
            stats.add(torch.rand(2, generator=generator), torch.rand(2, generator=generator),
                      torch.rand((), generator=generator))
        stats.failed = rank
        per_rank.append(stats)
    merged = LossStats(t_bins=4)
    merged.load_windows([s.state_dict() for s in per_rank])
    totals = merged.state_dict()
    assert totals["steps"] == sum(s.steps for s in per_rank)
    assert totals["failed"] == sum(s.failed for s in per_rank)
    assert totals["loss_sum"] == pytest.approx(sum(s.loss_sum for s in per_rank))
    assert torch.allclose(totals["bin_sum"], sum(s.bin_sum for s in per_rank))
    assert totals["bin_count"].sum() == totals["samples"] == sum(s.samples for s in per_rank)
    merged.load_windows([])
    assert merged.state_dict()["samples"] == 0
