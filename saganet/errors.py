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

# How the CPU is asked for, named when a device is missing: the library's callers pass an
# argument; the command lines that take a --device flag pass CPU_FLAG. Here, not in
# saganet.dist, so that checks outside torch's modules name them without importing torch.
CPU_ARGUMENT = "device 'cpu'"
CPU_FLAG = "--device cpu"


class UserInputError(Exception):
    """Bad input from the user. The message names the file (if any) and the problem.

    ``every_rank`` is set where the error cannot depend on the process (a configuration
    mistake): every rank of a ``torchrun`` job raises it, and rank 0 alone reports it.
    """

    def __init__(self, problem: str, path: str | PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        self.every_rank = False
        super().__init__(problem if path is None else f"{path}: {problem}")


def check_seconds(value: object, name: str, *, positive: bool = False,
                  nonnegative: bool = False) -> float:
    """``value`` as a plain float of seconds, or a :class:`UserInputError` naming ``name``.

    Anything real and finite is accepted (ints, NumPy scalars); bools, strings, None, inf and
    nan are refused, and so are zero and less with ``positive``, less than zero with
    ``nonnegative``. The result is a Python float because NumPy scalars reached ``Fraction()``
    deep in the window arithmetic, which refuses them.
    """
    kind = ("a positive number" if positive else
            "a non-negative number" if nonnegative else "a number")
    number = _as_float(value)
    if (not math.isfinite(number) or (positive and not number > 0)
            or (nonnegative and not number >= 0)):
        raise UserInputError(f"{name} must be {kind} of seconds, got {value!r}")
    return number


# Guidance strengths in use are 1 to about 10 (the paper's 4.5, the demo's 7). The guided
# velocity is s * v_cond + (1 - s) * v_uncond, so every Euler step grows with s: around 1e20
# (debug model, fp32) the latents overflow and the audio comes out NaN, after all the compute.
# 1e3 is a hundred times past any useful strength and many orders below that overflow, in fp32
# and in bf16 (same exponent range) alike.
MAX_CFG_STRENGTH = 1e3


# What a guidance strength must be, in the words of every message that refuses one.
CFG_STRENGTH_RULE = f"a finite number from {-MAX_CFG_STRENGTH:g} to {MAX_CFG_STRENGTH:g}"


def cfg_strength_ok(number: float) -> bool:
    """Whether ``number`` is a usable guidance strength (:data:`CFG_STRENGTH_RULE`)."""
    return math.isfinite(number) and abs(number) <= MAX_CFG_STRENGTH


def check_cfg_strength(value: object, name: str = "cfg_strength") -> float:
    """``value`` as a float guidance strength, or a :class:`UserInputError` naming ``name``.

    Finite numbers with ``|value| <= MAX_CFG_STRENGTH`` are accepted (below 1 the conditional
    flow is used alone); bools, strings, NaN, infinity and larger magnitudes are refused.
    """
    number = _as_float(value)
    if not cfg_strength_ok(number):
        raise UserInputError(f"{name} must be {CFG_STRENGTH_RULE}, got {value!r}")
    return number


def _as_float(value: object) -> float:
    """``value`` as a Python float if it is a real number (ints, NumPy scalars), else NaN
    (bools, strings, None, ints beyond float's range), for the checks to refuse."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def check_time_range(start: object, end: object = None, duration: object = None, *,
                     names: tuple[str, str, str] = ("start", "end", "duration"),
                     ) -> tuple[float, float | None]:
    """A part of a video given by its start and its end or duration, checked once for every
    command, the app and the library.

    Args:
        start: seconds skipped, zero or more.
        end: the second to stop at, after ``start`` (None: not given). It takes the place of
            ``duration``.
        duration: seconds from ``start``, positive (None: to the end of the video).
        names: what the messages call start, end and duration (e.g. a command's flags).

    Returns:
        ``(start, seconds from start)``, the latter None for "to the end of the video".

    Raises:
        UserInputError: a value that is not a finite number, a negative start, a duration
            that is not positive, an end not after the start.
    """
    start_name, end_name, duration_name = names
    first = check_seconds(start, start_name, nonnegative=True)
    length = (None if duration is None else
              check_seconds(duration, duration_name, positive=True))
    if end is None:
        return first, length
    last = check_seconds(end, end_name)
    if not last > first:
        raise UserInputError(f"{end_name} ({last:g} s) must come after {start_name} "
                             f"({first:g} s)")
    return first, last - first


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
