"""The logins file of ``app.py --auth_file``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from saganet.app.logins import read_logins
from saganet.errors import UserInputError


def write(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_users_and_passwords(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Split at the first colon; passwords keep their colons and spaces; comments and blank
    lines are skipped; a private file gives no warning."""
    pairs = [("ann", "s3cret"), ("bob", "a: b c"), ("carl", " leading")]
    text = "# logins\n\n" + "".join(f"{u}:{p}\n" for u, p in pairs) + "   \n"
    with caplog.at_level(logging.WARNING):
        assert read_logins(write(tmp_path / "logins", text)) == pairs
    assert not caplog.records


def test_a_file_others_can_read_is_a_warning(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "logins", "ann:x\n", mode=0o644)
    with caplog.at_level(logging.WARNING):
        assert read_logins(path) == [("ann", "x")]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "chmod 600" in caplog.records[0].getMessage()


@pytest.mark.parametrize(("text", "message"), [
    ("ann:x\nbob\n", "line 2: not user:password"),
    ("ann:\n", "line 1: not user:password"),
    (":x\n", "line 1: not user:password"),
    ("# only a comment\n\n", "no user:password line"),
    ("ann:x\n\nann:y\n", "line 3: user 'ann' is named twice"),
    (b"ann:\xff\xfe\n", "not a text file"),
])
def test_bad_files_name_the_file_and_the_line(tmp_path: Path, text: str | bytes,
                                              message: str) -> None:
    path = write(tmp_path / "logins.txt", text)
    with pytest.raises(UserInputError) as error:
        read_logins(path)
    assert message in str(error.value) and "logins.txt" in str(error.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="cannot read the logins"):
        read_logins(tmp_path / "none")
