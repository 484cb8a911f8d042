"""What the visitor reads when something of the server's is missing, and what its log keeps.

A missing model or clip is reported by the library with the files and the folders they go in:
right for whoever runs the app, none of the visitor's business (and a leak of the server's
layout). The visitor reads one short line saying what is unavailable and what to do instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from saganet.errors import UserInputError


@contextmanager
def server_detail(log: logging.Logger, logged: str, visitor: str) -> Iterator[None]:
    """Turn a :class:`UserInputError` raised inside into ``visitor``'s line.

    Args:
        log: the calling module's logger, which gets ``logged: <the library's message>`` as
            a warning.
        logged: what was asked for and is not available, for the log.
        visitor: the message the visitor reads instead.

    Raises:
        UserInputError: ``visitor``, without the library's message chained to it.
    """
    try:
        yield
    except UserInputError as err:
        log.warning("%s: %s", logged, err)
        raise UserInputError(visitor) from None
