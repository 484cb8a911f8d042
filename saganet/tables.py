"""Metadata tables (``.csv`` / ``.tsv``): the one reader used for every table saganet reads.

Rules, the same for the SMS and URMP metadata (dataset preparation), the split tables of the
training datasets and the evaluation datasets:

* the separator follows the extension: ``.tsv`` is tab-separated, ``.csv`` comma-separated
  (quoted fields as the ``csv`` module reads them); any other extension is an error;
* the first line is a header; columns are found by NAME (any order, ignoring case and
  surrounding spaces; extra columns are ignored), never by position;
* a missing required column is an error naming the file, the missing columns and the
  columns it has; a row with another number of fields than the header is an error naming
  its line; blank lines are skipped; values are stripped of surrounding spaces;
* UTF-8, with or without a byte-order mark.

Every error is a :class:`~saganet.errors.UserInputError` whose message is one line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from saganet.errors import UserInputError

SEPARATORS = {".tsv": "\t", ".csv": ","}


@dataclass(frozen=True)
class TableRow:
    """One row of a table, by column name.

    Args:
        line: line number in the file (1 is the header), for messages.
        values: requested column name -> value (optional columns only when the file has them).
    """

    line: int
    values: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of an optional column, or ``default`` when the file lacks it."""
        return self.values.get(name, default)


def separator_of(path: str | os.PathLike[str]) -> str:
    """The field separator a table's extension implies.

    Args:
        path: a ``.tsv`` or ``.csv`` file.

    Raises:
        UserInputError: another extension.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in SEPARATORS:
        raise UserInputError(f"unknown table format {suffix or '(no extension)'!r}: a metadata "
                             "table is .tsv (tab-separated) or .csv (comma-separated)", path)
    return SEPARATORS[suffix]


def _normalise(name: str) -> str:
    return name.strip().lower()


def read_table(path: str | os.PathLike[str], required: Sequence[str],
               optional: Sequence[str] = ()) -> list[TableRow]:
    """Read a metadata table's rows, by column name (see the module docstring for the rules).

    Args:
        path: the ``.tsv`` or ``.csv`` file.
        required: columns the file must have.
        optional: columns read when present.

    Raises:
        UserInputError: the file is missing, unreadable, has another extension, lacks a
            required column, or has a row with the wrong number of fields.
    """
    path = Path(path)
    delimiter = separator_of(path)
    if not path.is_file():
        raise UserInputError("metadata table not found", path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None or not any(cell.strip() for cell in header):
                raise UserInputError("metadata table is empty (it needs a header line)", path)
            position = {_normalise(name): i for i, name in enumerate(header)}
            missing = [name for name in required if _normalise(name) not in position]
            if missing:
                raise UserInputError(
                    f"metadata table lacks column(s) {', '.join(missing)} (it has: "
                    f"{', '.join(h.strip() for h in header)})", path)
            where = {name: position[_normalise(name)]
                     for name in (*required, *optional) if _normalise(name) in position}
            rows = []
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue
                if len(record) != len(header):
                    raise UserInputError(f"line {reader.line_num} has {len(record)} fields, the "
                                         f"header has {len(header)}", path)
                rows.append(TableRow(reader.line_num,
                                     {name: record[i].strip() for name, i in where.items()}))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserInputError(f"cannot read the metadata table ({err})", path) from err
    return rows
