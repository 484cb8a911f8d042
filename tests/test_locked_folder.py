"""saganet.fileio: locked_folder (creates the folder, holds the lock, turns only its own
OSErrors into the caller's one-line error, leaves no lock file behind) and the checks of
where a folder can be created."""

from __future__ import annotations

from pathlib import Path

import pytest

from saganet.errors import UserInputError
from saganet.fileio import check_folder_creatable, locked_folder, nearest_existing


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


def test_nearest_existing_stops_at_links_and_walks_past_impossible_names(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "gone")
    assert nearest_existing(tmp_path / "a" / "b") == tmp_path
    assert nearest_existing(blocker / "sub" / "deeper") == blocker
    # A dangling link exists: nothing can be created where it stands.
    assert nearest_existing(dangling / "sub") == dangling
    # A name longer than any file system takes cannot exist; Path.exists raises on it.
    assert nearest_existing(tmp_path / ("n" * 5000) / "x") == tmp_path


@pytest.mark.parametrize("make", ["file", "dangling link", "file on the way"])
def test_check_folder_creatable_names_what_is_in_the_way(tmp_path, make):
    blocker = tmp_path / "thing"
    if make == "dangling link":
        blocker.symlink_to(tmp_path / "gone")
    else:
        blocker.write_bytes(b"")
    folder = blocker / "sub" if make == "file on the way" else blocker
    where = "it" if folder == blocker else str(blocker)
    with pytest.raises(UserInputError, match=f"cannot use the out folder: {where} is not a"):
        check_folder_creatable(folder, "out folder")
    ok = tmp_path / "new" / "deeper"
    assert check_folder_creatable(ok, "out folder") == tmp_path and not ok.parent.exists()
