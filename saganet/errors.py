"""Errors that describe a user's mistake rather than a bug.

Entry points catch :class:`UserInputError`, print its one-line message and exit with status 2,
without a traceback. Library code raises it for anything the user can fix: a missing or
unreadable file, a video that is too short, a mask of the wrong shape, an unknown variant.
"""

from __future__ import annotations

from os import PathLike


class UserInputError(Exception):
    """Bad input from the user. The message names the file (if any) and the problem."""

    def __init__(self, problem: str, path: str | PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")
