"""Moving bytes safely: streamed download, md5 verification and verification stamps.

A download streams into a hidden temporary file in the destination folder, hashing as it goes,
and is renamed onto the destination only once the byte count and the md5 check out, so the
destination is either absent or complete. A file lock next to the destination makes concurrent
processes (several ranks on one machine, or several jobs sharing a cache) download once: the
others wait and then find the finished file. Parts that downloads killed outright (SIGKILL,
power loss) left are removed when their owner is proven dead (:mod:`saganet.leftovers`).

Hashing a multi-gigabyte checkpoint on every run would cost seconds, so a successful check
leaves a ``<file>.md5ok`` stamp holding the digest, size and modification time; the file is
re-hashed only when one of them changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path

from saganet import __version__
from saganet.errors import UserInputError
from saganet.fileio import locked_folder, temporary_sibling
from saganet.leftovers import remove_dead
from saganet.progress import progress_bar

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20  # 1 MiB: small enough for a smooth progress bar, large enough to be cheap
_TIMEOUT_S = 60.0  # per socket operation; a stalled server fails instead of hanging forever
STAMP_SUFFIX = ".md5ok"

DownloadProgress = Callable[[str, int, int | None], None]
"""``on_progress(file name, bytes received, bytes expected or None)``: called as a download
starts and after every chunk, for callers that show progress elsewhere than a terminal (the
web app's page)."""


class DownloadError(UserInputError):
    """A transfer failed or delivered the wrong bytes; nothing was left at the destination.

    It is a :class:`UserInputError` so that entry points print it as one line: the remedy
    (retry, fix the network, or place the file by hand and use offline mode) is the user's.
    """


def md5_of(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file, read in chunks so that large checkpoints need little memory.

    Args:
        path: the file.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(8 * _CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def _stamp_text(md5: str, stat: os.stat_result) -> str:
    return f"{md5} {stat.st_size} {stat.st_mtime_ns}\n"


def has_valid_stamp(path: str | os.PathLike[str], md5: str) -> bool:
    """Whether ``path`` was verified against ``md5`` and has not changed since.

    Args:
        path: the file.
        md5: the expected digest.
    """
    path = Path(path)
    try:
        stamp = _stamp_path(path).read_text()
        stat = path.stat()
    except (OSError, UnicodeDecodeError):
        # No stamp, or one damaged (a crash, a disk error): the file is hashed again and the
        # stamp rewritten.
        return False
    return stamp == _stamp_text(md5.lower(), stat)


def write_stamp(path: Path, md5: str) -> None:
    """Record that ``path`` has digest ``md5``; best effort (the cache may be read-only)."""
    stamp = _stamp_path(path)
    try:
        text = _stamp_text(md5.lower(), path.stat())
        # Written via a temporary file and a rename so that a concurrent reader never sees a
        # half-written stamp.
        tmp = temporary_sibling(stamp, ".tmp")
        with open(tmp, "x") as f:
            f.write(text)
        os.replace(tmp, stamp)
    except OSError as err:
        logger.debug("could not write verification stamp %s: %s", stamp, err)


def verify_file(path: str | os.PathLike[str], md5: str | None,
                size: int | None = None) -> bool:
    """Whether the file at ``path`` has digest ``md5`` (and ``size`` bytes, when given).

    A valid stamp answers without hashing; a successful hash writes one.

    Args:
        path: the file; must exist.
        md5: expected hex digest, or None: only the size is checked.
        size: expected size in bytes, or None; a wrong size fails without hashing.
    """
    return file_problem(path, md5, size) is None


def file_problem(path: str | os.PathLike[str], md5: str | None, size: int | None = None
                 ) -> str | None:
    """What is wrong with the file at ``path`` (``"is 10 bytes, expected 12"``, ``"has md5
    ..., expected ..."``), or None when it passes :func:`verify_file`'s checks."""
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"is {actual_size} bytes, expected {size}"
    if md5 is None:
        return None
    if has_valid_stamp(path, md5):
        return None
    logger.info("verifying md5 of %s", path)
    actual = md5_of(path)
    if actual != md5.lower():
        return f"has md5 {actual}, expected {md5.lower()}"
    write_stamp(path, md5)
    return None


def _one_line(reason: object) -> str:
    """``reason`` on one line: urllib's reasons may span several (a redirect loop's says
    "...would lead to an infinite loop.\nThe last 30x error message was:\nFound")."""
    return " ".join(str(reason).split())


def _transfer(url: str, tmp: Path, dest: Path, md5: str | None, progress: bool,
              on_progress: DownloadProgress | None = None, size: int | None = None) -> str:
    """Stream ``url`` into ``tmp``; return the md5 of what arrived."""
    request = urllib.request.Request(url, headers={"User-Agent": f"saganet/{__version__}"})
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, \
                open(tmp, "xb") as out:
            # http.client itself ignores a Content-Length that is not a number and reads to
            # the end of the connection, so that length is unknown here too, not an error.
            length = response.headers.get("Content-Length", "").strip()
            expected = int(length) if length.isdigit() else None
            if on_progress is not None:
                on_progress(dest.name, received, expected)
            with progress_bar(total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                              desc=dest.name, disable=not progress, leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if on_progress is not None:
                        on_progress(dest.name, received, expected)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {_one_line(err.reason)}",
                            dest) from err
    except (urllib.error.URLError, HTTPException, OSError) as err:
        # Covers refused connections, DNS failures, timeouts and connections reset mid-body.
        reason = _one_line(getattr(err, "reason", err))
        raise DownloadError(f"download from {url} failed after {received} bytes ({reason}); "
                            "nothing was kept, try again (or place the file by hand and use "
                            "offline mode)", dest) from err
    # http.client returns a short body without complaint when the server closes early, so the
    # byte count is the only sign of a truncated transfer when no checksum is published.
    if expected is not None and received != expected:
        raise DownloadError(f"download from {url} was interrupted: received {received} of "
                            f"{expected} bytes; nothing was kept, try again", dest)
    if size is not None and received != size:
        # Checked here as on every later run, which would otherwise refuse the file and
        # download it again each time.
        raise DownloadError(f"size mismatch for {dest.name} downloaded from {url}: expected "
                            f"{size} bytes, got {received}; nothing was kept", dest)
    actual = digest.hexdigest()
    if md5 is not None and actual != md5.lower():
        raise DownloadError(f"md5 mismatch for {dest.name} downloaded from {url}: expected "
                            f"{md5.lower()}, got {actual}; nothing was kept", dest)
    return actual


def download(url: str, dest: str | os.PathLike[str], md5: str | None = None,
             progress: bool = True, on_progress: DownloadProgress | None = None,
             size: int | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically, verified, once across concurrent processes.

    If another process holds the lock for ``dest``, this waits; when that process leaves a
    file that passes the check, it is kept and nothing is downloaded again.

    Args:
        url: source URL (http, https or file).
        dest: destination file; its folder is created.
        md5: expected hex digest; None skips the check (with a warning).
        progress: show a tqdm progress bar.
        on_progress: also told how far the transfer is (see :data:`DownloadProgress`).
        size: expected size in bytes, or None.

    Raises:
        DownloadError: HTTP error, network failure, truncated body, size or md5 mismatch. Neither a
            temporary file nor ``dest`` is left behind by the failed attempt.
    """
    dest = Path(dest)
    # Not a file to verify or replace: hashing a folder fails, and one is not a download.
    if dest.exists() and not dest.is_file():
        raise DownloadError("is in the way of the download: it is not a file (a folder?); "
                            "move it away and try again", dest)
    with locked_folder(dest.parent, f".{dest.name}.lock", lambda err: DownloadError(
            f"cannot write to the weights folder ({err.strerror or err}); choose a writable "
            "one with --weights_dir (weights_dir= from Python) or SAGANET_CACHE",
            dest.parent)):
        # Another process may have finished the same download while this one waited (without
        # a checksum, its size is all there is to check: a file cut short is not kept).
        if dest.exists() and verify_file(dest, md5, size):
            return dest
        remove_dead(dest.parent)  # parts of downloads killed outright (SIGKILL, power loss)
        logger.info("downloading %s to %s", url, dest)
        tmp = temporary_sibling(dest, ".part")
        try:
            actual = _transfer(url, tmp, dest, md5, progress, on_progress, size)
            os.replace(tmp, dest)
        except BaseException:
            # Also on KeyboardInterrupt: a half-written .part must never survive.
            tmp.unlink(missing_ok=True)
            raise
        if md5 is None:
            logger.warning("%s has no published checksum; downloaded as is (md5 %s)",
                           dest.name, actual)
        else:
            write_stamp(dest, actual)
    return dest
