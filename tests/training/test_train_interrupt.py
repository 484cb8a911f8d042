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

REPO = Path(__file__).resolve().parents[2]
ARGS = ["experiment=debug", "num_iterations=500", "log.interval=1", "log.val_interval=0",
        "eval.enabled=false", "checkpoint.state_interval=400", "checkpoint.weights_interval=400"]


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and re.search(pattern, path.read_text()):
            return
        if proc.poll() is not None:
            pytest.fail(f"train.py ended early:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"{pattern!r} not in {path} after {timeout} s")


@pytest.mark.slow
def test_ctrl_c_saves_a_state_and_says_where(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "train.py"), f"hydra.run.dir={run_dir}", *ARGS]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run_dir / "train_rank0.log", r"step 2: loss", proc, timeout=600)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    found = re.fullmatch(r"train\.py: interrupted at step (\d+); saved the training state to "
                         r"(\S+) \(run the same command again to resume\)", last)
    assert found, last
    step, state = int(found[1]), Path(found[2])
    assert step >= 2 and state == run_dir / "checkpoints" / f"state_{step:09d}.pth"
    assert state.is_file()

    resumed = subprocess.run([*command, f"stop_after={step + 1}"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {state} at step {step}" in (run_dir / "train_rank0.log").read_text()


@pytest.mark.slow
def test_ctrl_c_before_training_starts_is_one_line_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), f"hydra.run.dir={run_dir}",
                             *ARGS], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        # Logged once the configuration is valid, before the models and data are built.
        log = run_dir / "train_rank0.log"
        deadline = time.monotonic() + 300
        while not (log.is_file() and "CPU threads" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "no start-up log line"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines() == [
        "train.py: interrupted before training started; nothing saved"]
    assert list(tmp_path.iterdir()) == []
