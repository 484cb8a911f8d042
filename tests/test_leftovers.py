"""What processes killed with SIGKILL leave (temporary files, work folders, lock files), and
its removal by a later run: only what is proven abandoned, never what a live process uses."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from saganet import leftovers
from saganet.fileio import exclusive, temporary_sibling
from saganet.leftovers import (
    Owner,
    machine_id,
    make_owned_folder,
    name_part,
    owner_of,
    owner_tag,
    remove_dead,
    remove_dead_once,
)
from tests.killed import Holder
from tests.shared import wait_until


def _temporary(holders: list[Holder], dest: Path, prelude: str = "") -> Holder:
    """A process that stages ``dest`` (an atomic write under way), after running ``prelude``."""
    holder = Holder(prelude + "from pathlib import Path\nfrom saganet.fileio import atomic_output\n"
                     f"with atomic_output(Path({str(dest)!r}), suffix='.mp4') as tmp:\n"
                     "    tmp.write_bytes(b'half')\n    print(tmp, flush=True)\n")
    holders.append(holder)
    return holder


def _work_folder(holders: list[Holder], folder: Path, name: str) -> Holder:
    """A process with a work folder in ``folder``, as the soundtrack writer makes one."""
    holder = Holder("from pathlib import Path\nfrom saganet.leftovers import owned_folder\n"
                     f"with owned_folder(Path({str(folder)!r}), '.{name}.work-') as work:\n"
                     "    (work / 'mix.npy').write_bytes(b'0' * 64)\n"
                     "    print(work, flush=True)\n")
    holders.append(holder)
    return holder


def _lock_holder(holders: list[Holder], lock: Path) -> Holder:
    holder = Holder("from saganet.fileio import exclusive\n"
                     f"with exclusive({str(lock)!r}):\n    print({str(lock)!r}, flush=True)\n")
    holders.append(holder)
    return holder


def _assert_held(lock: Path) -> None:
    """Someone holds ``lock``: nobody else can take it."""
    fd = os.open(lock, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def _foreign(tag: str) -> str:
    """``tag`` as another machine (another host, boot or pid namespace) would write it."""
    pid, start, machine, rand = tag.split("-")
    other = "0" * 12 if machine != "0" * 12 else "1" * 12
    return f"{pid}-{start}-{other}-{rand}"


# Start times from /proc (Linux), or from ps as where there is no /proc (macOS, the BSDs).
WITHOUT_PROC = "import saganet.leftovers\nsaganet.leftovers._has_proc = lambda: False\n"


@pytest.fixture(params=["proc", "ps"])
def start_times(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The code a holder runs first so that it reads start times as this process does."""
    if request.param == "proc":
        return ""
    if shutil.which("ps") is None:
        pytest.skip("no ps on this machine")
    monkeypatch.setattr(leftovers, "_has_proc", lambda: False)
    leftovers._own_start_time.cache_clear()
    request.addfinalizer(leftovers._own_start_time.cache_clear)
    return WITHOUT_PROC


def test_owner_of_tells_dead_alive_and_unknown(holders: list[Holder], tmp_path: Path,
                                               start_times: str) -> None:
    dead = _temporary(holders, tmp_path / "a.mp4", start_times).kill()
    live = _temporary(holders, tmp_path / "b.mp4", start_times).path
    mine = temporary_sibling(tmp_path / "c.flac")
    pid, start, machine, rand = owner_tag().split("-")
    assert int(pid) == os.getpid() and machine == machine_id()
    reused = f".d.flac.{pid}-{int(start) + 1}-{machine}-{rand}.part"  # same pid, younger
    assert owner_of(dead.name) is Owner.DEAD
    assert owner_of(live.name) is Owner.ALIVE
    assert owner_of(mine.name) is Owner.ALIVE
    assert owner_of(reused) is Owner.DEAD
    assert owner_of(f".e.flac.{_foreign(owner_tag())}.part") is Owner.UNKNOWN
    assert owner_of("a.mp4") is None and owner_of(".a.mp4.lock") is None


@pytest.mark.parametrize("name", ["x" * 255, "é" * 125 + ".flac", "short.flac"])
def test_temporaries_of_the_longest_names_fit(name: str, tmp_path: Path) -> None:
    """The final name may take all 255 bytes a name has; the temporaries beside it (a file,
    a work folder) still fit, and are still known as temporaries of this process."""
    final = tmp_path / name
    final.touch()  # a legal name
    temporary = temporary_sibling(final, ".part")
    temporary.touch()
    work = make_owned_folder(tmp_path, f".{name_part(name)}.work-")
    assert owner_of(temporary.name) is Owner.ALIVE and owner_of(work.name) is Owner.ALIVE
    assert temporary.name.startswith(f".{name}.") == (name == "short.flac")


def test_long_names_keep_apart_in_temporary_names() -> None:
    long = "a" * 300
    assert name_part(long) != name_part(long[:-1] + "b")
    assert name_part(long).startswith("a" * 80) and name_part("a" * 100) == "a" * 100


def test_only_what_dead_processes_left_is_removed(holders: list[Holder], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # A writer's first temporary sweeps its folder: the processes that make one start before
    # the kills they would clean up.
    live = [_work_folder(holders, tmp_path, "clip").path,
            _temporary(holders, tmp_path / "clip.mp4").path]
    # Reproduce: what runs killed with SIGKILL leave behind.
    dead = [_temporary(holders, tmp_path / "clip.mp4").kill(),
            _work_folder(holders, tmp_path, "clip").kill()]
    assert all(path.exists() for path in dead)
    foreign = tmp_path / f".clip.work-{_foreign(owner_tag())}"
    foreign.mkdir()
    others = [tmp_path / "clip.mp4", tmp_path / ".hidden", tmp_path / ".x.work-12-34"]
    for path in others:
        path.write_bytes(b"user's")
    with caplog.at_level(logging.INFO, logger="saganet.leftovers"):
        removed = remove_dead(tmp_path)
    assert sorted(removed) == sorted(dead)
    assert not any(path.exists() for path in dead)
    assert all(path.exists() for path in [*live, foreign, *others])
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sorted(infos) == sorted(f"removed {p}, left by a process that no longer runs"
                                   for p in dead)
    hints = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(hints) == 1 and foreign.name in hints[0]
    assert not any(p.name in hints[0] for p in [*dead, *live])
    # The hint is given once per process, not at every run of a batch.
    caplog.clear()
    remove_dead(tmp_path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_abandoned_lock_files_are_removed_held_ones_kept(holders: list[Holder],
                                                         tmp_path: Path) -> None:
    dead = _lock_holder(holders, tmp_path / ".a.pth.lock").kill()
    assert dead.exists()  # reproduced: SIGKILL leaves the lock file
    held = _lock_holder(holders, tmp_path / ".b.pth.lock").path
    foreign_lock = tmp_path / ".x.lock"  # matches no pattern given: another program's
    foreign_lock.touch()
    assert remove_dead(tmp_path, locks=".*.pth.lock") == [dead]
    assert not dead.exists() and held.exists() and foreign_lock.exists()
    # The held lock still excludes: nobody else can take it.
    _assert_held(held)
    # The removed lock works as before.
    with exclusive(dead):
        assert dead.exists()
    assert not dead.exists()


def test_a_lock_held_by_this_process_is_not_removed(tmp_path: Path) -> None:
    lock = tmp_path / ".a.lock"
    with exclusive(lock):
        assert remove_dead(tmp_path, locks=".*.lock") == []
        assert lock.exists()


class _FlockInterrupted:
    """``fcntl`` whose blocking ``flock`` is interrupted at once, as by Ctrl-C while waiting."""

    LOCK_EX, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_NB

    @staticmethod
    def flock(fd: int, operation: int) -> None:
        if not operation & fcntl.LOCK_NB:
            raise KeyboardInterrupt
        fcntl.flock(fd, operation)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_interrupted_before_holding_leaves_no_lock_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / ".a.lock"
    monkeypatch.setattr("saganet.fileio.fcntl", _FlockInterrupted)
    before = _open_fds()
    with pytest.raises(KeyboardInterrupt), exclusive(lock):
        pytest.fail("the body ran without the lock")
    assert not lock.exists()
    assert _open_fds() == before


def _waiting_on_flock(pid: int) -> bool:
    # Blocked flock requests appear in /proc/locks as "N: -> FLOCK ... <pid> ...".
    lines = Path("/proc/locks").read_text().splitlines()
    return any("->" in line and f" {pid} " in line for line in lines)


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="needs /proc/locks")
def test_interrupted_while_waiting_keeps_the_holders_lock(holders: list[Holder],
                                                         tmp_path: Path) -> None:
    held = _lock_holder(holders, tmp_path / ".a.lock").path
    waiter = subprocess.Popen([sys.executable, "-c", "from saganet.fileio import exclusive\n"
                               f"with exclusive({str(held)!r}):\n    print('got it')\n"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: _waiting_on_flock(waiter.pid), 60)
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode != 0 and "KeyboardInterrupt" in err and "got it" not in out
    assert held.exists()
    _assert_held(held)


def test_removing_abandoned_locks_keeps_mutual_exclusion(tmp_path: Path) -> None:
    """Processes take turns on a lock while another keeps removing abandoned lock files: the
    turns never overlap (a lock file removed while held would let two in at once)."""
    lock, log = tmp_path / ".a.lock", tmp_path / "turns.log"
    turns = 150
    worker = ("import os, sys\nfrom saganet.fileio import exclusive\n"
              f"for _ in range({turns}):\n"
              f"    with exclusive({str(lock)!r}):\n"
              f"        with open({str(log)!r}, 'a') as f:\n"
              "            f.write(f'in {os.getpid()}\\n'); f.flush()\n"
              "            f.write(f'out {os.getpid()}\\n')\n")
    workers = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(3)]
    while any(w.poll() is None for w in workers):
        remove_dead(tmp_path, locks=".*.lock")
    assert [w.returncode for w in workers] == [0] * len(workers)
    lines = log.read_text().splitlines()
    assert len(lines) == 2 * turns * len(workers)
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("in ") and leave == f"out {enter[3:]}"


def test_a_folder_is_swept_once_per_process(holders: list[Holder], tmp_path: Path) -> None:
    dead = _temporary(holders, tmp_path / "a.mp4").kill()
    assert remove_dead_once(f"{tmp_path}/") == [dead]
    # Later leftovers in that folder wait for another process (or a plain remove_dead).
    later = _temporary(holders, tmp_path / "b.mp4").kill()
    assert remove_dead_once(tmp_path) == [] and later.exists()
    assert remove_dead(tmp_path) == [later]
