"""Errors that describe a user's mistake rather than a bug.

Entry points catch :class:`UserInputError`, print its one-line message and exit with status 2,
without a traceback. Library code raises it for anything the user can fix: a missing or
unreadable file, a video that is too short, a mask of the wrong shape, an unknown variant.
"""

from __future__ import annotations

import math
import sys
from numbers import Real
from os import PathLike


class UserInputError(Exception):
    """Bad input from the user. The message names the file (if any) and the problem."""

    def __init__(self, problem: str, path: str | PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


def check_seconds(value: object, name: str, *, positive: bool = False) -> float:
    """``value`` as a plain float of seconds, or a :class:`UserInputError` naming ``name``.

    Anything real and finite is accepted (ints, NumPy scalars); bools, strings, None, inf and
    nan are refused. The result is a Python float because NumPy scalars reached ``Fraction()``
    deep in the window arithmetic, which refuses them.
    """
    kind = "a positive number" if positive else "a number"
    try:
        number = float(value) if isinstance(value, Real) and not isinstance(value, bool) \
            else math.nan
    except OverflowError:  # an int beyond float's range
        number = math.nan
    if not math.isfinite(number) or (positive and not number > 0):
        raise UserInputError(f"{name} must be {kind} of seconds, got {value!r}")
    return number


USER_ERROR_STATUS = 2
# What shells report for a command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_STATUS = 130


def report_user_error(prog: str, err: UserInputError) -> int:
    """Print ``<prog>: error: <message>`` on stderr (no traceback); return exit status 2.

    The message is one line; an error may add an indented line with the command that fixes it
    (e.g. how to install an optional package).
    """
    first, *rest = str(err).splitlines() or [""]
    print(f"{prog}: error: {first}", *rest, sep="\n", file=sys.stderr)
    return USER_ERROR_STATUS
