"""Writing files safely: complete or absent, readable as the umask allows, and no lock files
left behind.

Every output of saganet (audio, video, masks, checkpoints, weights) is written under a hidden
temporary name in its destination folder and renamed into place when complete, so a crash or a
Ctrl-C never leaves a half-written file under the final name. Temporary files are opened with
mode ``0o666`` filtered by the umask, like any file the user creates (``tempfile.mkstemp``
would make them private, 0600). Temporary names carry their owner, so that what a process
killed outright leaves can be removed later (:mod:`saganet.leftovers`): the first temporary
name a process takes in a folder removes there the temporaries of dead processes. Cross-process
locks remove their lock file when released.
Names that would be one file where case is ignored are found before anything is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from saganet.errors import UserInputError
from saganet.leftovers import name_part, owner_tag, remove_abandoned_lock, remove_dead_once

try:
    import fcntl
except ImportError:  # Windows: filelock's lock (its file stays behind).
    fcntl = None


# Object names become file names and track titles: no spaces or control characters, and no
# leading . + - (hidden files, options). Used with fullmatch: "$" would let a final newline in.
_OBJECT_NAME = re.compile(r"\w[\w.+-]*")
OBJECT_NAME_RULE = "letters, digits and _ . + - only, starting with a letter, digit or _"


def check_object_name(name: str) -> None:
    """Fail unless ``name`` can name an object: it becomes part of file names (stems, mask
    videos, tracked masks) and a track title. One rule for a mask video's object, a tracked one
    and one named in the app, as a tracked object is then sonified under its name.

    Raises:
        UserInputError: ``name`` breaks :data:`OBJECT_NAME_RULE`.
    """
    if not _OBJECT_NAME.fullmatch(name):
        raise UserInputError(f"object name {name!r} is not usable in file names "
                             f"({OBJECT_NAME_RULE})")


def name_clash(names: Sequence[str]) -> str | None:
    """The first two of ``names`` that are one file name on the usual macOS and Windows file
    systems (which ignore case), quoted for a message (``'violin' and 'Violin'``, or
    ``'violin'`` when the two are identical); None when all differ."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.casefold()
        if key in seen:
            first = seen[key]
            return repr(first) if first == name else f"{first!r} and {name!r}"
        seen[key] = name
    return None


def ffmpeg_name(path: str | os.PathLike[str]) -> str:
    """The name under which FFmpeg (``av.open``) opens ``path`` as a local file.

    FFmpeg takes the letters, digits and ``+-.`` before a name's first colon for a protocol, so
    legal relative names such as ``10:15.mp4`` or ``take:2/clip.flac`` (and the hidden
    temporary names beside them) failed with "Protocol not found". Its ``file:`` protocol
    opens the rest of the name as it is.

    Args:
        path: a local file.
    """
    return "file:" + os.fspath(path)


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest ancestor that does: where creating it
    would begin. A dangling link counts as existing (nothing can be created in its place); a
    name that cannot exist (too long, under a file, past a folder that cannot be searched)
    does not, so the walk goes on up instead of raising.
    """
    current = path
    # os.path.lexists, not Path.exists: the latter follows links and raises on some names.
    while not os.path.lexists(current) and current.parent != current:
        current = current.parent
    return current


def check_folder_creatable(folder: Path, what: str, named: Path | None = None) -> Path:
    """Fail unless ``folder`` is a folder or could be created as one (no file stands where it,
    or a folder on its way, must be); checked before slow work that would fail at the end.

    Args:
        folder: the folder.
        what: what the message calls it (``"output folder"``).
        named: the path the message starts with, when not ``folder`` (the file to go there).

    Returns:
        The nearest existing folder (``folder`` itself when it exists).

    Raises:
        UserInputError: ``folder`` or one on its way is not a folder.
    """
    existing = nearest_existing(folder)
    if not os.path.isdir(existing):
        where = "it" if existing == folder else str(existing)
        raise UserInputError(f"cannot use the {what}: {where} is not a folder", named or folder)
    return existing


def temporary_sibling(path: Path, suffix: str = ".part") -> Path:
    """A unique hidden name in the folder of ``path`` (same file system: renames are atomic)
    that names this process as its owner (see :mod:`saganet.leftovers`).

    The first such name of this process in a folder first removes there what processes killed
    outright left (:func:`saganet.leftovers.remove_dead_once`: one listing of the folder), so
    every writer that stages its outputs here sweeps its own output folder.

    Args:
        path: the final file.
        suffix: suffix of the temporary name (some writers choose the format by it).
    """
    remove_dead_once(path.parent)
    return path.with_name(f".{name_part(path.name)}.{owner_tag()}{suffix}")


@contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False,
                  suffix: str = ".part") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file exists (empty, umask permissions) when the block starts, so writers
    may open it for writing or replace it. On any exception it is removed and ``path`` is left
    untouched.

    Args:
        path: the final file; its folder is created if needed.
        overwrite: replace an existing ``path`` (otherwise that is a user error).
        suffix: suffix of the temporary name (some writers choose the format by it).

    Raises:
        UserInputError: ``path`` exists and ``overwrite`` is False, or ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise UserInputError("output is a folder", path)
    if path.exists() and not overwrite:
        raise UserInputError("output exists; pass --overwrite (overwrite=True from Python) "
                             "to replace it", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, suffix)
    with open(tmp, "x"):
        pass
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def exclusive(lock_path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock shared with other processes; the lock file is removed after.

    A waiter may have opened the file that the previous holder removes on release: it then
    holds a lock on a file nobody else sees, so after locking it checks that the path still
    names the file it locked, and starts over if not.

    Args:
        lock_path: the lock file (created in an existing folder).
    """
    lock_path = Path(lock_path)
    if fcntl is None:
        import filelock

        with filelock.FileLock(str(lock_path)):
            yield
        return
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                break
        except FileNotFoundError:
            pass
        except BaseException:
            # Interrupted before holding it (Ctrl-C, a signal's exception while waiting): the
            # file this process may just have created would stay behind, held by nobody.
            os.close(fd)
            remove_abandoned_lock(lock_path)
            raise
        os.close(fd)
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def locked_folder(folder: Path, lock_name: str,
                  unwritable: Callable[[OSError], Exception]) -> Iterator[None]:
    """Create ``folder`` and hold the :func:`exclusive` lock ``folder/lock_name`` in it.

    Args:
        folder: the folder (created with its parents).
        lock_name: the lock file's name in it.
        unwritable: the one-line error raised (from the ``OSError``) when the folder cannot be
            created or locked; errors of the body pass through unchanged.
    """
    with ExitStack() as stack:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(exclusive(folder / lock_name))
        except OSError as err:
            raise unwritable(err) from err
        yield
