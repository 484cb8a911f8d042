"""An app killed outright (SIGKILL) leaves its sessions' root in the temporary folder; the next
app started removes it, and nothing else there."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from saganet.app.session import ROOT_PREFIX, Sessions
from tests.killed import Holder

APP = ("from saganet.app.session import Sessions\n"
       "sessions = Sessions()\n"
       "folder = sessions.get('tab').folder / 'video-1'\n"
       "folder.mkdir(parents=True)\n"
       "(folder / 'clip.mp4').write_bytes(b'0' * 64)\n"
       "if True:\n    print(sessions.root, flush=True)\n")


# The same root without loading the app's modules (seconds): for the roots that are not the
# subject of a test.
ROOT = ("import tempfile\nfrom pathlib import Path\n"
        "from saganet.leftovers import make_owned_folder\n"
        f"root = make_owned_folder(Path(tempfile.gettempdir()), {ROOT_PREFIX!r})\n"
        "if True:\n    print(root, flush=True)\n")


def _app(holders: list[Holder], temporary: Path, code: str = APP) -> Holder:
    """A process running an app's sessions, with one session's file, in ``temporary``."""
    holder = Holder(code, env={**os.environ, "TMPDIR": str(temporary)})
    holders.append(holder)
    return holder


def _other_machine(name: str) -> str:
    """``name`` (a root) as an app on another machine (host, boot, pid namespace) names it."""
    pid, start, machine, rand = name.removeprefix(ROOT_PREFIX).split("-")
    return f"{ROOT_PREFIX}{pid}-{start}-{'0' * 12 if machine != '0' * 12 else '1' * 12}-{rand}"


def test_next_app_removes_the_roots_of_killed_apps_only(
        holders: list[Holder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    running = _app(holders, tmp_path, ROOT).path  # first: an app started later sweeps
    # Reproduce: an app killed outright leaves its whole root, session files included.
    killed = _app(holders, tmp_path).kill()
    assert killed.parent == tmp_path and any(killed.rglob("clip.mp4"))
    foreign = tmp_path / _other_machine(killed.name)
    foreign.mkdir()
    # Not an app root of ours, though named like one or tagged by the dead app.
    tag = killed.name.removeprefix(ROOT_PREFIX)
    others = [tmp_path / f"{ROOT_PREFIX}x1y2z3", tmp_path / f".notes.{tag}.part",
              tmp_path / "unrelated"]
    others[0].mkdir()
    for path in others[1:]:
        path.write_bytes(b"keep")
    before = sorted(tmp_path.iterdir())

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="saganet.leftovers"):
        sessions = Sessions()
    try:
        assert sessions.root.parent == tmp_path and sessions.root.name.startswith(ROOT_PREFIX)
        assert sorted(tmp_path.iterdir()) == sorted(
            [p for p in before if p != killed] + [sessions.root])
        removed = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert removed == [f"removed {killed}, left by a process that no longer runs"]
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and foreign.name in warned[0] and running.name not in warned[0]
    finally:
        sessions.close()
    assert not sessions.root.exists() and running.exists()


def test_a_given_root_is_used_as_it_is(tmp_path: Path, holders: list[Holder]) -> None:
    killed = _app(holders, tmp_path, ROOT).kill()
    sessions = Sessions(tmp_path / "root")
    try:
        assert sessions.root == tmp_path / "root" and killed.exists()
    finally:
        sessions.close()
