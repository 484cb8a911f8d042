"""What a process killed outright (SIGKILL, power loss) leaves behind, and removing it safely.

Such a process cannot clean up: its hidden temporary files and work folders and its lock files
stay. So the temporary files and work folders that saganet makes beside its outputs (and in the
weights cache) carry their owner in their name, ``<pid>-<start>-<machine>-<rand>``:
the process id, the process's start time (clock ticks since boot, from ``/proc``; where there
is no ``/proc``, as on macOS, seconds since the epoch from ``ps``; 0 where neither tells) and
a digest of the host name, the boot id and the pid namespace. A later run
removes such an entry only when it can prove the owner dead: same machine digest (same host,
same boot, same pid namespace, so the pid means the same process table) and no process with
that pid, or one that started at another time (the pid was reused, also after a reboot; where
no start time can be read a pid that runs again is taken for the owner). Entries of another machine
(a shared file system) or of a process that still runs are left alone; the former get one
line that names them, since nobody here can tell whether their owner still runs.

Every writer sweeps its own output folder: :func:`saganet.fileio.temporary_sibling` calls
:func:`remove_dead_once` before the first temporary name a process takes in a folder.
Temporary names are hidden (``.<name>.<tag>...``). A visible work folder in a folder shared
with other programs (the app's root in the system's temporary folder) is named
``<prefix><tag>``, and only names with that prefix are judged there.

Lock files need no owner: a flock lock dies with its holder. One is removed only while this
process holds its lock (taken without waiting, so a held lock is never touched) and after
checking that the path still names the file locked, the protocol that
:func:`saganet.fileio.exclusive` follows; a process waiting on the removed file notices and
locks afresh.
"""

from __future__ import annotations

import calendar
import fnmatch
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from functools import cache
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: filelock's locks, which nothing here removes.
    fcntl = None

logger = logging.getLogger(__name__)

_hinted: set[Path] = set()  # entries already named in a warning, so batches say it once
# Folders already swept by remove_dead_once, the most recently used last; the oldest are
# forgotten first (then swept again on their next use, which is harmless).
_swept: OrderedDict[tuple[str, str | None], None] = OrderedDict()
_swept_lock = threading.Lock()
SWEPT_KEPT = 4096

# The owner tag and the rest of a temporary name: ``.<name>.<tag><suffix>`` (files) or
# ``.<name>.work-<tag>`` (work folders).
_TAG = r"(?P<pid>\d+)-(?P<start>\d+)-(?P<machine>[0-9a-f]{12})-[0-9a-f]{8}"
_TAGGED = re.compile(rf"\..+[.-]{_TAG}(\.[A-Za-z0-9]+)?")


class Owner(Enum):
    """What can be told about the process that made a tagged entry."""

    DEAD = "dead"
    ALIVE = "alive"
    UNKNOWN = "unknown"  # another machine, or no way to tell here


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


@cache
def machine_id() -> str:
    """12 hex digits naming this host, its boot and its pid namespace: two processes with the
    same digest see the same process table."""
    parts = (socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"),
             _pid_namespace())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _has_proc() -> bool:
    return os.path.isdir("/proc/self")


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc``) or in seconds since the
    epoch (``ps``, where there is no ``/proc``); None when it does not exist, 0 where this
    system does not say."""
    if not _has_proc():
        return _start_time_from_ps(pid)
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    # Field 22; the command name (field 2) may hold spaces and parentheses, so split after it.
    return int(stat.rsplit(")", 1)[1].split()[19])


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _start_time_from_ps(pid: int) -> int | None:
    """The start time ``ps`` reports (macOS, the BSDs), in whole seconds since the epoch."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # exists, but belongs to another user
        pass
    # UTC and the C locale: the same process must read the same on every call, across
    # daylight-saving changes and whatever the caller's language.
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    try:
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                             text=True, env=env, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):  # no ps: nothing to tell
        return 0
    # "Tue Dec  1 23:00:46 2026"; parsed here, since strptime's names follow the locale.
    fields = out.split()
    try:
        _, month, day, clock, year = fields
        hour, minute, second = map(int, clock.split(":"))
        return calendar.timegm((int(year), _MONTHS.index(month) + 1, int(day), hour, minute,
                                second, 0, 0, 0))
    except ValueError:  # it ended meanwhile, or an unknown format
        return 0


# Bytes of a final name kept in a temporary's name. With the dots, the owner tag (about 50
# bytes) and a suffix, a temporary name then stays far below the 255 bytes most file systems
# allow for a name, however close to that limit the final name is.
NAME_PART_BYTES = 100


def name_part(name: str) -> str:
    """``name`` as the part of a temporary's name that tells what it is for: a long one is
    cut short and ends in ``~`` and a digest of the whole (the temporary names are internal;
    the digest keeps different long names apart).

    Args:
        name: a final file's name, or an output stem.
    """
    if len(os.fsencode(name)) <= NAME_PART_BYTES:
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    head = name
    # By characters, not bytes: a cut inside a multi-byte character would not decode.
    while len(os.fsencode(head)) > NAME_PART_BYTES - len(digest) - 1:
        head = head[:-1]
    return f"{head}~{digest}"


def owner_tag() -> str:
    """A fresh tag naming this process as the owner, plus 8 random hex digits."""
    pid = os.getpid()
    return f"{pid}-{_own_start_time(pid)}-{machine_id()}-{secrets.token_hex(4)}"


@cache
def _own_start_time(pid: int) -> int:
    # Per pid, so a forked child reads its own; cached, since without /proc it runs ps.
    return _start_time(pid) or 0


def owner_of(name: str, prefix: str | None = None) -> Owner | None:
    """What is known of the owner of an entry named ``name``; None when the name carries no
    owner tag (not a saganet temporary).

    Args:
        name: a file or folder name (no folder).
        prefix: judge only the name ``<prefix><owner tag>`` (a visible folder of
            :func:`make_owned_folder`); None: the hidden temporary names.
    """
    pattern = _TAGGED if prefix is None else re.compile(re.escape(prefix) + _TAG)
    match = pattern.fullmatch(name)
    if match is None:
        return None
    if match["machine"] != machine_id():
        return Owner.UNKNOWN
    pid, start = int(match["pid"]), int(match["start"])
    current = _start_time(pid)
    if current is None:
        return Owner.DEAD
    if start and current and current != start:
        return Owner.DEAD  # the pid now names a younger process
    return Owner.ALIVE


def make_owned_folder(parent: Path, prefix: str) -> Path:
    """Create a fresh private folder ``<parent>/<prefix><owner tag>``; the caller removes it,
    or a later :func:`remove_dead` once this process is dead.

    Args:
        parent: an existing folder.
        prefix: start of the name: hidden (``".clip.work-"``), or a visible one that the
            sweep of ``parent`` names (``remove_dead(parent, prefix=...)``).
    """
    folder = parent / f"{prefix}{owner_tag()}"
    folder.mkdir(mode=0o700)
    return folder


@contextmanager
def owned_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh private folder (:func:`make_owned_folder`), removed with its content when the
    block ends (or by a later :func:`remove_dead` if this process is killed).

    Args:
        parent: an existing folder.
        prefix: start of the name, e.g. ``".clip.work-"`` (hidden).
    """
    folder = make_owned_folder(parent, prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_abandoned_lock(path: Path) -> bool:
    """Remove the lock file ``path`` if no process holds its lock; whether it was removed.

    Args:
        path: a lock file of :func:`saganet.fileio.exclusive`.
    """
    if fcntl is None:
        return False
    try:
        # Opened for writing as exclusive() opens it: on NFS, flock is a POSIX write lock,
        # which a read-only descriptor cannot take.
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Another remover may have replaced the path meanwhile: remove only the file locked.
        if not os.path.samestat(os.fstat(fd), os.stat(path)):
            return False
        path.unlink()
        return True
    except OSError:  # held (EWOULDBLOCK), gone, or not ours to remove
        return False
    finally:
        os.close(fd)


def remove_dead(folder: str | os.PathLike[str], locks: str | None = None,
                prefix: str | None = None) -> list[Path]:
    """Remove what dead processes left directly in ``folder``: tagged temporary files and work
    folders whose owner is proven dead and, with ``locks``, abandoned lock files.

    Best effort: an entry that cannot be removed (read-only folder) is skipped. Each removal is
    logged at info level; entries of other machines get one warning line naming them.

    Args:
        folder: the folder to clean (need not exist).
        locks: a glob pattern of names, e.g. ``".*.lock"``: also remove the abandoned lock
            files it matches. Only names that are all locks of
            :func:`saganet.fileio.exclusive`: another program's lock file may be held with a
            lock that flock does not see.
        prefix: judge only the visible names ``<prefix><owner tag>`` and nothing else (a
            folder shared with other programs, such as the system's temporary folder).

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    # Every writer sweeps its output folder, which may hold many outputs: only names that can
    # be ours are looked at closely (tagged names start so; lock patterns are few and short).
    start = "." if prefix is None else prefix
    names = [name for name in names if name.startswith(start)
             or (locks and fnmatch.fnmatchcase(name, locks))]
    removed, unknown = [], []
    for path in (folder / name for name in sorted(names)):
        owner = owner_of(path.name, prefix)
        if owner is Owner.UNKNOWN:
            unknown.append(path.name)
        elif owner is Owner.DEAD and _remove(path):
            logger.info("removed %s, left by a process that no longer runs", path)
            removed.append(path)
        elif (owner is None and locks and fnmatch.fnmatchcase(path.name, locks)
              and remove_abandoned_lock(path)):
            logger.info("removed %s, a lock file nobody holds", path)
            removed.append(path)
    unknown = [name for name in unknown if folder / name not in _hinted]
    if unknown:
        _hinted.update(folder / name for name in unknown)
        logger.warning("%s: left alone, made on another machine that may still use them: %s",
                       folder, ", ".join(unknown))
    return removed


def remove_dead_once(folder: str | os.PathLike[str], locks: str | None = None) -> list[Path]:
    """:func:`remove_dead` the first time this process asks for ``folder`` (with these
    ``locks``), nothing after: a writer sweeps its output folder before its first temporary
    there, and a batch of outputs in one folder costs one listing of it, not one per file.

    Args:
        folder: the folder (need not exist).
        locks: as for :func:`remove_dead`.

    Returns:
        The removed paths.
    """
    key = (os.path.abspath(folder), locks)
    with _swept_lock:
        if key in _swept:
            _swept.move_to_end(key)
            return []
        _swept[key] = None
        while len(_swept) > SWEPT_KEPT:
            _swept.popitem(last=False)
    return remove_dead(key[0], locks=locks)


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:  # another run removed it first
        return False
    except OSError as err:
        logger.debug("cannot remove %s: %s", path, err)
        return False
    return True
