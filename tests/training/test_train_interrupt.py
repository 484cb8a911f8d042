"""Ctrl-C during ``train.py``: the run stops at the end of the step, saves a training state,
says where in one line (no traceback) and exits with 130; the same command then resumes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.shared import ctrl_c_once

REPO = Path(__file__).resolve().parents[2]
ARGS = ["experiment=debug", "num_iterations=500", "log.interval=1", "log.val_interval=0",
        "eval.enabled=false", "checkpoint.state_interval=400", "checkpoint.weights_interval=400"]


def _logged(run_dir: Path, pattern: str):
    log = run_dir / "train_rank0.log"
    return lambda: log.is_file() and re.search(pattern, log.read_text())


@pytest.mark.slow
def test_ctrl_c_saves_a_state_and_says_where(tmp_path):
    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", *ARGS]
    status, stderr = ctrl_c_once("train.py", args, tmp_path, _logged(run_dir, r"step 2: loss"),
                                 timeout=600)
    assert status == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    found = re.fullmatch(r"train\.py: interrupted at step (\d+); saved the training state to "
                         r"(\S+) \(run the same command again to resume\)", last)
    assert found, last
    step, state = int(found[1]), Path(found[2])
    assert step >= 2 and state == run_dir / "checkpoints" / f"state_{step:09d}.pth"
    assert state.is_file()

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    resumed = subprocess.run([sys.executable, str(REPO / "train.py"), *args,
                              f"stop_after={step + 1}"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {state} at step {step}" in (run_dir / "train_rank0.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_before_training_starts_is_one_line_and_leaves_nothing(tmp_path, signum):
    run_dir = tmp_path / "run"
    # Logged once the configuration is valid, before the models and data are built.
    status, stderr = ctrl_c_once("train.py", [f"hydra.run.dir={run_dir}", *ARGS], tmp_path,
                                 _logged(run_dir, "CPU threads"), signum=signum)
    assert status == 130, stderr[-3000:]
    assert stderr.strip().splitlines() == [
        "train.py: interrupted before training started; nothing saved"]
    assert list(tmp_path.iterdir()) == []


def test_a_second_ctrl_c_while_saving_abandons_the_save_in_one_line(tmp_path, monkeypatch):
    from saganet import dist
    from saganet.training.loop import Trainer, TrainingInterruptedError, _StopRequestedError
    from tests.training.test_train_config import load

    trainer = Trainer(load("experiment=debug", "eval.enabled=false",
                           f"hydra.run.dir={tmp_path}"), dist.init("cpu"))

    def first_ctrl_c(*args: object) -> bool:
        raise _StopRequestedError

    def second_ctrl_c() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_step", first_ctrl_c)
    monkeypatch.setattr(trainer, "save_state", second_ctrl_c)
    with pytest.raises(TrainingInterruptedError,
                       match=rf"^interrupted at step {trainer.step}; no training state saved"):
        trainer.run()


@pytest.mark.slow
def test_sigterm_to_torchrun_saves_a_state_of_every_rank(tmp_path):
    """A scheduler ends a job with SIGTERM (torchrun passes it to its workers, then kills them
    30 s later): the ranks stop together after the step and save a state, as for Ctrl-C, that
    holds both ranks' generators and log windows. (Resuming such a state is the Ctrl-C test's,
    and resuming under torchrun is test_train_run's: one more torchrun here cost a minute.)"""
    import torch

    from saganet.training.checkpoint import load_state

    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", *ARGS]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", str(REPO / "train.py"), *args], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        ready = _logged(run_dir, r"step 2: loss")
        while not ready():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    found = re.search(r"train\.py: interrupted at step (\d+); saved the training state to (\S+) ",
                      stderr)
    assert found, stderr[-3000:]
    step, state = int(found[1]), Path(found[2])
    assert state == run_dir / "checkpoints" / f"state_{step:09d}.pth" and state.is_file()
    assert stderr.count("train.py: interrupted") == 1  # rank 0 alone says it
    saved = load_state(state)
    assert saved.step == step and len(saved.rng) == len(saved.log_window) == 2
    noise = [rank["generators"]["noise"] for rank in saved.rng]
    assert not torch.equal(*noise)  # each rank's own generator


def test_ctrl_c_arriving_twice_at_once_is_one_press_and_still_saves(tmp_path):
    """Under torchrun one Ctrl-C reaches each rank twice (the terminal signals the process
    group and torchrun passes its own on): that is one press, not "stop at once"."""
    from saganet import dist
    from saganet.training import loop
    from tests.training.test_train_config import load

    trainer = loop.Trainer(load("experiment=debug", "eval.enabled=false",
                                f"hydra.run.dir={tmp_path}"), dist.init("cpu"))
    with trainer._ctrl_c_stops_after_the_step():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # torchrun's copy, a moment later
        assert trainer._interrupted
        time.sleep(loop.SAME_PRESS_SECONDS + 0.1)
        # A press after that window is a second one: stop at once.
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
