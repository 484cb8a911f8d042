"""The app's logins: a file of ``user:password`` lines (``app.py --auth_file``).

With logins, Gradio asks for one before it serves the page, its files or ``/generate``
(``gradio_client.Client(url, auth=(user, password))``). The passwords are kept in a file, not
given as flags, so that they show neither in the process list nor in the shell's history.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from saganet.errors import UserInputError

log = logging.getLogger(__name__)


def read_logins(path: Path) -> list[tuple[str, str]]:
    """The ``(user, password)`` pairs of a logins file.

    One ``user:password`` per line, split at the first colon (a password may hold colons and
    spaces; the line's end is not part of it); blank lines and lines starting with ``#`` are
    skipped. A file other users may read is used, with a warning.

    Raises:
        UserInputError: an unreadable file, a line without a user or a password, a user named
            twice, or no login at all; the message names the file and the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except UnicodeDecodeError:
        raise UserInputError("not a text file (UTF-8) of user:password lines", path) from None
    except OSError as err:
        raise UserInputError(f"cannot read the logins: {err.strerror}", path) from None
    logins: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, colon, password = line.partition(":")
        user = user.strip()
        if not colon or not user or not password:
            raise UserInputError(f"line {number}: not user:password (a user, a colon, a "
                                 "password)", path)
        if user in logins:
            raise UserInputError(f"line {number}: user {user!r} is named twice", path)
        logins[user] = password
    if not logins:
        raise UserInputError("no user:password line", path)
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s can be read by other users of this machine (chmod 600 %s)", path, path)
    return list(logins.items())
