"""The one metadata-table reader (saganet.tables) and its three users: dataset preparation,
the training datasets and the evaluation datasets read tables by the same rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from saganet.data.sms_dataset import read_metadata
from saganet.errors import UserInputError
from saganet.evaluation.datasets import read_sms_clips, read_urmp_clips
from saganet.prep.sms_metadata import read_sms_metadata, read_urmp_metadata
from saganet.tables import read_table


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_columns_by_name_any_order_case_and_spaces(tmp_path):
    rows = [["b1", "a1", "x"], ["b2", "a2", "y"]]
    for name, sep in (("t.tsv", "\t"), ("t.csv", ",")):
        text = "\ufeff" + sep.join([" Beta", "ALPHA ", "extra"]) + "\n"
        text += "".join(sep.join(r) + "\n\n" for r in rows)  # blank lines are skipped
        table = read_table(write(tmp_path / name, text), ["alpha", "beta"], ["gamma"])
        assert [(r["alpha"], r["beta"]) for r in table] == [(r[1], r[0]) for r in rows]
        assert [r.line for r in table] == [2, 4]
        assert table[0].get("gamma") is None  # optional and absent


def test_quoted_csv_fields(tmp_path):
    (row,) = read_table(write(tmp_path / "q.csv", 'id,label\n"a,b"," violin "\n'),
                        ["id", "label"])
    assert (row["id"], row["label"]) == ("a,b", "violin")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("t.txt", "id\tlabel\n", "unknown table format '.txt'"),
    ("t.tsv", "", "metadata table is empty"),
    ("t.tsv", "id\tname\nx\ty\n", "lacks column(s) label (it has: id, name)"),
    ("t.tsv", "id\tlabel\nx\ty\nz\n", "line 3 has 1 fields, the header has 2"),
    ("t.csv", "id,label\n\xff\n", "cannot read the metadata table"),
])
def test_errors_name_the_file_and_the_problem_on_one_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UserInputError) as caught:
        read_table(path, ["id", "label"])
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="metadata table not found"):
        read_table(tmp_path / "none.tsv", ["id"])


def test_the_three_readers_share_the_rules(tmp_path):
    # Same table, same answer: a .csv with the columns in another order, read by name.
    table = write(tmp_path / "split.csv", "label,id\nviolin,solos/violin/a_0_5000\n")
    assert read_metadata(table) == [("solos/violin/a_0_5000", "violin")]
    clips, missing = read_sms_clips(tmp_path, table)
    assert not clips and [m.id for m in missing] == ["a_0_5000"]  # files absent, row read
    # Same mistake, same one-line error naming the file and the column, from every reader.
    bad = write(tmp_path / "bad.tsv", "video_id\tlabel\nx\ty\n")
    readers = [read_metadata, lambda p: read_sms_clips(tmp_path, p),
               lambda p: read_urmp_clips(tmp_path, p), read_sms_metadata, read_urmp_metadata]
    for reader in readers:
        with pytest.raises(UserInputError, match=r"bad\.tsv: metadata table lacks column"):
            reader(bad)
    # The separator follows the extension everywhere (a .tsv is never split on commas).
    commas = write(tmp_path / "commas.tsv", "id,label\na,b\n")
    for reader in (read_metadata, lambda p: read_sms_clips(tmp_path, p)):
        with pytest.raises(UserInputError, match="lacks column"):
            reader(commas)
