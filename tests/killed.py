"""Processes killed with SIGKILL in the middle of their work, for the tests of what such a kill
leaves behind (:mod:`saganet.leftovers`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


class Holder:
    """A Python process that runs ``code``: a ``with`` block that prints one line (the path it
    made), then sleeps in the block until it is killed.

    Args:
        code: Python source ending in an indented block (4 spaces) that prints the path.
        env: the process's environment (default: this one's).
    """

    def __init__(self, code: str, env: dict[str, str] | None = None) -> None:
        script = f"{code}    __import__('time').sleep(600)\n"
        self.proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                     text=True, env=env)
        line = self.proc.stdout.readline().strip()
        assert line, "the holder process ended before it made anything"
        self.path = Path(line)

    def kill(self) -> Path:
        """SIGKILL, as the OOM killer or a power loss would; reaped (a zombie still runs)."""
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        assert self.proc.returncode == -9
        return self.path
