"""saganet.fileio.locked_folder: creates the folder, holds the lock, turns only its own
OSErrors into the caller's one-line error, and leaves no lock file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from saganet.errors import UserInputError
from saganet.fileio import locked_folder


def _unwritable(folder: Path):
    return lambda err: UserInputError(f"cannot write here ({err.strerror or err})", folder)


def test_creates_the_folder_and_removes_the_lock(tmp_path):
    folder = tmp_path / "a" / "b"
    with locked_folder(folder, ".x.lock", _unwritable(folder)):
        assert (folder / ".x.lock").is_file()
    assert list(folder.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_the_callers_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with (pytest.raises(UserInputError, match="cannot write here") as info,
          locked_folder(blocker / "sub", ".x.lock", _unwritable(blocker / "sub"))):
        pytest.fail("the body ran")
    assert isinstance(info.value.__cause__, OSError)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_errors_of_the_body_pass_through(tmp_path):
    with (pytest.raises(FileNotFoundError),
          locked_folder(tmp_path, ".x.lock", _unwritable(tmp_path))):
        (tmp_path / "missing").read_bytes()
    assert list(tmp_path.iterdir()) == []
