"""Where the shared data (``../shared``) is, and what a test does without it.

The shared folder (golden reference outputs, the duet example) sits beside the repository in
development and CI, but not in a user's clone. A test that needs it asks :func:`need`: without
the data it is skipped with the reason, except under CI (``CI=true``), where missing data is a
failure: CI must run every test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SAGANET_SHARED_DIR", REPO.parent / "shared")).resolve()
EXAMPLES = SHARED / "examples"
GOLDEN_DIR = Path(os.environ.get("SAGANET_GOLDEN_DIR", SHARED / "golden")).resolve()
DUET = EXAMPLES / "Vid_09_Jesus_tpt_vn_159092_164092.mp4"
VIOLIN = EXAMPLES / "Masks_02_vn_09_Jesus_159092_164092.mp4"
TRUMPET = EXAMPLES / "Masks_01_tpt_09_Jesus_159092_164092.mp4"


def in_ci() -> bool:
    """Whether the tests run under CI (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def need(*paths: Path) -> None:
    """Skip the calling test unless every path exists (fail instead under CI)."""
    missing = [str(p) for p in paths if not p.exists()]
    if not missing:
        return
    reason = f"shared data not present: {', '.join(missing)}"
    if in_ci():
        pytest.fail(f"{reason} (CI must provide ../shared)")
    pytest.skip(reason)


def wait_until(condition: Callable[[], object], seconds: float, poll: float = 0.01) -> bool:
    """Whether ``condition()`` became true within ``seconds`` (checked every ``poll`` s)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def ctrl_c_once(script: str, args: list[str], cwd: Path, ready: Callable[[], object],
                timeout: float = 300, signum: int = signal.SIGINT) -> tuple[int, str]:
    """Run one of the repository's scripts, press Ctrl-C (or send ``signum``) once ``ready()``
    is true, and return its exit status and standard error; the test fails if the script ends
    before that."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / script), *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"{script} ended early:\n{proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{script}: not ready to be interrupted after {timeout} s")
            time.sleep(0.05)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr
