"""Checkpoint files: strict state-dict loading with one readable error, atomic saving.

PyTorch's own strict loading stops at the first shape mismatch and reports missing and
unexpected keys in one long line. Checkpoint problems are the most common support question for
a model that ships several variants, so we collect everything first and raise one error that
lists missing, unexpected and mis-shaped keys separately; a file holding several modules
reports all of those that do not fit in one error (:class:`MismatchReport`). The only tolerated
differences are named by the caller (for example LoRA factors absent from an MMAudio base
checkpoint).
"""

from __future__ import annotations

import fnmatch
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from saganet.errors import UserInputError
from saganet.fileio import atomic_output


class CheckpointMismatchError(UserInputError):
    """A weights file does not fit the module it is loaded into, or is no weights file.

    It is the user's to fix (another file, the right variant), so entry points report it like
    any :class:`~saganet.errors.UserInputError`: the first line, then the key lists.
    """


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def check_state_dict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
    what: str = "checkpoint",
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` fits ``module`` exactly.

    Args:
        module: the module the weights are meant for.
        state_dict: the weights.
        allow_missing: glob patterns of module keys that may be absent from ``state_dict``.
        allow_unexpected: glob patterns of extra keys that may be present and are ignored.
        what: a name for the weights (usually the file) used in the error message.
    """
    own = module.state_dict()
    allow_missing, allow_unexpected = tuple(allow_missing), tuple(allow_unexpected)
    missing = [k for k in own if k not in state_dict and not _matches(k, allow_missing)]
    unexpected = [k for k in state_dict if k not in own and not _matches(k, allow_unexpected)]
    misshaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or misshaped:
        lines = [f"{what} does not match {type(module).__name__}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("mis-shaped", misshaped)):
            if items:
                lines.append(f"  {len(items)} {title} key(s): " + ", ".join(items[:12])
                             + (", ..." if len(items) > 12 else ""))
        raise CheckpointMismatchError("\n".join(lines))


class MismatchReport:
    """The mismatches of the several modules of one weights file, raised as one error.

    Each module is checked (or loaded into a module of the caller's own, discarded on error)
    in a :meth:`part` block: a :class:`CheckpointMismatchError` there is recorded, and
    :meth:`raise_if_any` raises all of them together, so that a user sees every module that
    does not fit at once instead of fixing one to meet the next.

    Args:
        what: the file, for the first line of the error.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.errors: list[CheckpointMismatchError] = []

    @contextmanager
    def part(self) -> Iterator[None]:
        """Record a :class:`CheckpointMismatchError` of the block instead of raising it."""
        try:
            yield
        except CheckpointMismatchError as err:
            self.errors.append(err)

    def raise_if_any(self) -> None:
        """Raise the recorded errors: one as it is, several as one error that lists each
        module's missing, unexpected and mis-shaped keys under a line that counts them."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            lines = [f"{self.what}: {len(self.errors)} of its parts do not match the models:"]
            for err in self.errors:
                lines += [f"  {line}" for line in str(err).splitlines()]
            raise CheckpointMismatchError("\n".join(lines)) from self.errors[0]


def load_state_dict_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
    what: str = "checkpoint",
    assign: bool = False,
) -> None:
    """Check with :func:`check_state_dict`, then copy the weights into ``module``.

    Keys matched by ``allow_unexpected`` are dropped; keys matched by ``allow_missing`` keep
    the module's current values.

    Args:
        assign: make the checkpoint's tensors the module's parameters and buffers instead of
            copying them (no second copy in memory), cast to the module's dtypes.
    """
    check_state_dict(module, state_dict, allow_missing=allow_missing,
                     allow_unexpected=allow_unexpected, what=what)
    own = module.state_dict()
    filtered = {k: v for k, v in state_dict.items() if k in own}
    complete = {**{k: v for k, v in own.items() if k not in filtered}, **filtered}
    if assign:  # assign would otherwise take the checkpoint's dtype
        complete = {k: v.to(own[k].dtype) for k, v in complete.items()}
    module.load_state_dict(complete, strict=True, assign=assign)


def load_checkpoint_file(path: str, *, map_location: str | torch.device = "cpu",
                         mmap: bool = False) -> dict:
    """``torch.load`` with ``weights_only=True`` and a one-line error that names the file;
    ``mmap``: tensors stay in the file until used (reads little more than the pickle)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several unrelated types for corrupt/unsafe files
        # torch's own message suggests weights_only=False, which would run code from the file:
        # never a remedy for a file of unknown origin, so it is not passed on.
        raise CheckpointMismatchError(
            f"{path}: not a weights file (not a PyTorch checkpoint, truncated, or holding "
            f"objects other than tensors; {type(err).__name__})") from err


def check_weights_file(path: str | os.PathLike[str]) -> None:
    """Cheap early check that ``path`` looks like a PyTorch checkpoint (a zip archive holding
    a pickle), before anything slow runs; the full check happens when it is loaded.

    Raises:
        UserInputError: missing, not a file, empty, or not a PyTorch checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError("weights file not found", path)
    if not path.is_file():
        raise UserInputError("not a file", path)
    if path.stat().st_size == 0:
        raise UserInputError("weights file is empty", path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        names = []
    if not any(name.endswith("data.pkl") for name in names):
        raise UserInputError("not a PyTorch weights file (torch.save writes a zip archive "
                             "with a data.pkl)", path)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it into place.

    A crash or a full disk never leaves a half-written checkpoint under the final name.

    Args:
        obj: anything ``torch.save`` accepts (tensors, containers of tensors and plain data).
        path: destination; its folder is created if needed.
    """
    path = Path(path)
    with atomic_output(path, overwrite=True, suffix=".tmp") as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return path
