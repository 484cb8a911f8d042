"""Segmented Music Solos (SMS) and URMP metadata: published files, rows, and one job per row.

Owns the planning side of dataset assembly (``training/load_sms.py``):

* :func:`fetch_public_files` downloads the published metadata and masks (everything the
  public bucket lists except checkpoints); :func:`check_public_files` is its offline mode;
* :func:`read_sms_metadata` / :func:`read_urmp_metadata` read ``sms/metadata.csv`` and
  ``urmp/metadata.tsv`` by column NAME with :func:`saganet.tables.read_table` (the column
  order of the published files is not documented);
* :class:`VideoIndex` finds raw videos by file stem anywhere under a dataset root (built once
  per root);
* :func:`plan_sms_jobs` / :func:`plan_urmp_jobs` turn rows into
  :class:`~saganet.prep.clip_cut.ClipJob` s: cut a range out of a raw video, copy an already-cut
  clip, skip a finished output, or report the row as missing with a reason.

Output layout (relative to the ``--output_dir``): ``sms/data/<redefined_label>/<clip>.mp4``
and ``urmp/data/<piece dir>/<clip>.mp4``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from saganet.errors import UserInputError
from saganet.prep.clip_cut import ClipJob
from saganet.progress import progress_bar
from saganet.tables import read_table

log = logging.getLogger(__name__)

PUBLIC_BASE_URL = "https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/saganet_public"
LISTING_NAME = "files.txt"
SMS_METADATA = Path("sms") / "metadata.csv"
URMP_METADATA = Path("urmp") / "metadata.tsv"

SMS_SUBSETS = ("solos", "avs-semantic", "music21")
SMS_COLUMNS = ("subset", "YTID", "filename", "redefined_label", "start_msec", "end_msec")
URMP_COLUMNS = ("video_id", "s_ts", "e_ts")
# Optional in the SMS file; its name is not documented, "split" is the natural one.
SPLIT_COLUMN = "split"
NO_SPLIT = "all"
URMP_SPLIT = "test"


def _listed_names(text: str) -> list[str]:
    """The downloadable relative paths in a bucket listing (no checkpoints, no folders)."""
    names = []
    for line in text.splitlines():
        name = line.strip()
        if not name or name.startswith("#") or name.endswith("/") or name == LISTING_NAME:
            continue
        if name.endswith(".pth"):
            continue
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts:
            log.warning("ignoring listed file %r: not a relative path inside the bucket", name)
            continue
        names.append(name)
    return names


def fetch_public_files(
    base_url: str, output_dir: str | Path, progress: bool = True
) -> list[Path]:
    """Download the published SMS/URMP metadata and masks into ``output_dir``.

    Reads the listing ``<base_url>/files.txt`` (kept as ``<output_dir>/files.txt``; if the
    bucket has no such object, the bucket's own object listing at ``<base_url>`` is used, which
    is what the reference script reads) and downloads every listed file except ``*.pth``,
    keeping relative paths. Files that already exist are not downloaded again (delete
    ``files.txt`` to re-read the listing).

    Args:
        base_url: the public bucket, e.g. :data:`PUBLIC_BASE_URL`.
        output_dir: where the files go.
        progress: show a tqdm bar over files.

    Returns:
        The local paths of all listed files.

    Raises:
        saganet.weights.DownloadError: the listing or a file cannot be downloaded.
    """
    # Imported here: the weights package pulls in its registry, which planning does not need.
    from saganet.weights import DownloadError, download

    base = base_url.rstrip("/")
    output_dir = Path(output_dir)
    listing = output_dir / LISTING_NAME
    if not listing.exists():
        try:
            download(f"{base}/{LISTING_NAME}", listing, progress=False)
        except DownloadError as err:
            log.warning("%s; reading the bucket's object listing %s instead", err, base)
            download(base, listing, progress=False)
    names = _listed_names(listing.read_text(encoding="utf-8"))
    todo = [name for name in names if not (output_dir / name).exists()]
    log.info("%d files listed, %d to download", len(names), len(todo))
    for name in progress_bar(todo, desc="downloading", unit="file", disable=not progress):
        download(f"{base}/{quote(name)}", output_dir / name, progress=False)
    return [output_dir / name for name in names]


def check_public_files(base_url: str, output_dir: str | Path, shown: int = 10) -> None:
    """Offline mode: check that the published files are in ``output_dir``, download nothing.

    The files are those of the local listing ``<output_dir>/files.txt`` when it exists (as
    :func:`fetch_public_files` keeps it), else the two metadata tables.

    Args:
        base_url: the public bucket (named in the error, with each missing file's URL).
        output_dir: where the files must be.
        shown: how many missing files the error names (it counts all of them).

    Raises:
        UserInputError: files are missing; one line names each (up to ``shown``) with its URL
            and the path it goes to.
    """
    base, output_dir = base_url.rstrip("/"), Path(output_dir)
    listing = output_dir / LISTING_NAME
    names = (_listed_names(listing.read_text(encoding="utf-8")) if listing.is_file()
             else [SMS_METADATA.as_posix(), URMP_METADATA.as_posix()])
    missing = [name for name in names if not (output_dir / name).is_file()]
    if not missing:
        return
    parts = [f"download {base}/{quote(name)} to {output_dir / name}" for name in missing[:shown]]
    if len(missing) > shown:
        parts.append(f"and {len(missing) - shown} more listed in {listing}")
    raise UserInputError(f"offline mode is on and {len(missing)} published file(s) are "
                         "missing: " + "; ".join(parts))


@dataclass(frozen=True)
class SmsRow:
    """One row of ``sms/metadata.csv``, as text (validated when planned).

    Args:
        line: line number in the file (for messages).
        subset: "solos", "avs-semantic" or "music21".
        ytid: the raw video's stem (YouTube id).
        filename: the stem of the already-cut clip.
        label: ``redefined_label``: the instrument, also the output folder.
        start_ms: clip start in milliseconds.
        end_ms: clip end in milliseconds.
        split: the split column's value, or ``"all"`` when the file has none.
    """

    line: int
    subset: str
    ytid: str
    filename: str
    label: str
    start_ms: str
    end_ms: str
    split: str


@dataclass(frozen=True)
class UrmpRow:
    """One row of ``urmp/metadata.tsv``, as text (validated when planned).

    Args:
        line: line number in the file (for messages).
        video_id: ``<piece dir>/<clip name>``.
        start_ms: ``s_ts``, clip start in milliseconds.
        end_ms: ``e_ts``, clip end in milliseconds.
    """

    line: int
    video_id: str
    start_ms: str
    end_ms: str


def read_sms_metadata(path: str | Path) -> list[SmsRow]:
    """Read ``sms/metadata.csv`` by column name.

    Args:
        path: the CSV (read with :func:`saganet.tables.read_table`).

    Raises:
        UserInputError: missing/unreadable file, or a column of :data:`SMS_COLUMNS` missing.
    """
    return [
        SmsRow(
            line=row.line,
            subset=row["subset"],
            ytid=row["YTID"],
            filename=row["filename"],
            label=row["redefined_label"],
            start_ms=row["start_msec"],
            end_ms=row["end_msec"],
            split=row.get(SPLIT_COLUMN) or NO_SPLIT,
        )
        for row in read_table(path, SMS_COLUMNS, (SPLIT_COLUMN,))
    ]


def read_urmp_metadata(path: str | Path) -> list[UrmpRow]:
    """Read ``urmp/metadata.tsv`` by column name.

    Args:
        path: the TSV (read with :func:`saganet.tables.read_table`).

    Raises:
        UserInputError: missing/unreadable file, or a column of :data:`URMP_COLUMNS` missing.
    """
    return [
        UrmpRow(line=row.line, video_id=row["video_id"], start_ms=row["s_ts"],
                end_ms=row["e_ts"])
        for row in read_table(path, URMP_COLUMNS)
    ]


class VideoIndex:
    """All ``*.mp4`` files under a root, by file stem; built once by walking the tree.

    Symbolic links to folders are followed (raw datasets are often assembled from links), each
    real folder once. Hidden files (our own temporary outputs) and the ``exclude`` folders
    (e.g. the output folder, if it lies inside the root) are skipped.

    Args:
        root: the raw dataset root.
        exclude: folders not to index.
    """

    def __init__(self, root: str | Path, exclude: Iterable[str | Path] = ()) -> None:
        self.root = Path(root)
        excluded = {Path(p).resolve() for p in exclude}
        seen: set[tuple[int, int]] = set()
        by_stem: dict[str, list[Path]] = {}
        for folder, dirs, files in os.walk(self.root, followlinks=True):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen or Path(folder).resolve() in excluded:
                dirs.clear()
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs.sort()
            for name in files:
                stem, ext = os.path.splitext(name)
                if ext.lower() == ".mp4" and not name.startswith("."):
                    by_stem.setdefault(stem, []).append(Path(folder) / name)
        self._by_stem = {stem: sorted(paths) for stem, paths in by_stem.items()}
        self._warned: set[str] = set()
        log.info("indexed %d videos under %s", len(self._by_stem), self.root)

    def __len__(self) -> int:
        return len(self._by_stem)

    def find(self, stem: str) -> Path | None:
        """The video named ``<stem>.mp4`` (the first in path order if there are several).

        Args:
            stem: the file name without ``.mp4``.
        """
        paths = self._by_stem.get(stem)
        if not paths:
            return None
        if len(paths) > 1 and stem not in self._warned:
            self._warned.add(stem)
            log.warning("%d videos named %s.mp4 under %s; using %s", len(paths), stem,
                        self.root, paths[0])
        return paths[0]


def _parse_ms(text: str) -> int | None:
    """Milliseconds as an integer; accepts "1500" and "1500.0" (pandas writes both)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and value >= 0 else None


def is_path_component(name: str) -> bool:
    """Whether a metadata value can safely be one folder or file name."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _existing(candidates: Iterable[Path], overwrite: bool) -> Path | None:
    if overwrite:
        return None
    return next((p for p in candidates if p.exists()), None)


def plan_sms_jobs(
    rows: Iterable[SmsRow],
    indexes: Mapping[str, VideoIndex | None],
    out_dir: str | Path,
    overwrite: bool = False,
) -> list[ClipJob]:
    """One job per SMS row: cut from the raw video, else copy the already-cut clip.

    For a row of subset ``s``: if ``<YTID>.mp4`` is under ``s``'s root, cut
    ``[start_msec, end_msec]`` to ``<out_dir>/<redefined_label>/<YTID>_<start>_<end>.mp4``;
    otherwise, if ``<filename>.mp4`` is there, copy it to
    ``<out_dir>/<redefined_label>/<filename>.mp4``; otherwise the row is missing. A row whose
    output already exists becomes an "existing" job (unless ``overwrite``), even when its
    sources are gone (e.g. moved away by an earlier run).

    Args:
        rows: rows from :func:`read_sms_metadata`.
        indexes: subset name -> index of its raw root, or None when no root was given.
        out_dir: the SMS clip folder (``<output_dir>/sms/data``).
        overwrite: redo rows whose output exists.
    """
    out_dir = Path(out_dir)
    jobs = []
    unknown: dict[str, int] = {}
    for row in rows:
        start, end = _parse_ms(row.start_ms), _parse_ms(row.end_ms)
        clip_id = row.filename or f"{row.ytid}_{row.start_ms}_{row.end_ms}"

        def missing(reason: str, row: SmsRow = row, clip_id: str = clip_id) -> ClipJob:
            return ClipJob(row.subset, row.split, clip_id, "missing", reason=reason)

        if row.subset not in indexes:
            unknown[row.subset] = unknown.get(row.subset, 0) + 1
            jobs.append(missing(f"unknown subset {row.subset!r}"))
            continue
        if not is_path_component(row.label):
            jobs.append(missing(f"line {row.line}: unusable label {row.label!r}"))
            continue
        folder = out_dir / row.label
        # Only cutting needs the time range; an already-cut clip can be copied without it.
        valid_range = start is not None and end is not None and end > start
        can_cut = valid_range and is_path_component(row.ytid)
        cut_name = f"{row.ytid}_{start}_{end}.mp4" if can_cut else None
        copy_name = f"{row.filename}.mp4" if is_path_component(row.filename) else None
        if cut_name is None and copy_name is None:
            jobs.append(missing(
                f"line {row.line}: nothing to look for (YTID {row.ytid!r}, time range "
                f"{row.start_ms}-{row.end_ms}, filename {row.filename!r})"
            ))
            continue
        candidates = [folder / n for n in (cut_name, copy_name) if n is not None]
        done = _existing(candidates, overwrite)
        if done is not None:
            jobs.append(ClipJob(row.subset, row.split, clip_id, "existing", dest=done))
            continue
        index = indexes[row.subset]
        if index is None:
            jobs.append(missing(f"no raw root given for {row.subset}"))
            continue
        raw = index.find(row.ytid) if cut_name is not None else None
        if raw is not None:
            assert cut_name is not None
            jobs.append(
                ClipJob(row.subset, row.split, clip_id, "cut", dest=folder / cut_name,
                        src=raw, start_ms=start, end_ms=end)
            )
            continue
        cut = index.find(row.filename) if copy_name is not None else None
        if cut is not None:
            assert copy_name is not None
            jobs.append(
                ClipJob(row.subset, row.split, clip_id, "copy", dest=folder / copy_name, src=cut)
            )
            continue
        tried = [f"{row.ytid}.mp4" if cut_name else None, copy_name]
        jobs.append(missing(f"no {' or '.join(filter(None, tried))} under {index.root}"))
    for subset, count in unknown.items():
        log.warning("%d rows with unknown subset %r (expected one of %s)", count, subset,
                    ", ".join(indexes))
    return jobs


def plan_urmp_jobs(
    rows: Iterable[UrmpRow],
    index: VideoIndex | None,
    out_dir: str | Path,
    overwrite: bool = False,
) -> list[ClipJob]:
    """One job per URMP row: copy the already-cut clip, else cut from the original video.

    ``video_id`` is ``<dir>/<name>``. If ``<name>.mp4`` is under the URMP root, copy it to
    ``<out_dir>/<dir>/<name>.mp4``; otherwise the original video is ``<name>`` without its last
    two ``_`` fields (``<orig>``), and ``[s_ts, e_ts]`` of ``<orig>.mp4`` is cut to
    ``<out_dir>/<dir>/<orig>_<s_ts>_<e_ts>.mp4``. Finished outputs are skipped as for SMS.

    Args:
        rows: rows from :func:`read_urmp_metadata`.
        index: index of the URMP root, or None when no root was given.
        out_dir: the URMP clip folder (``<output_dir>/urmp/data``).
        overwrite: redo rows whose output exists.
    """
    out_dir = Path(out_dir)
    jobs = []
    for row in rows:
        parts = row.video_id.split("/")

        def missing(reason: str, row: UrmpRow = row) -> ClipJob:
            return ClipJob("urmp", URMP_SPLIT, row.video_id, "missing", reason=reason)

        if len(parts) != 2 or not all(is_path_component(p) for p in parts):
            jobs.append(missing(f"line {row.line}: video_id is not <dir>/<name>"))
            continue
        piece, name = parts
        start, end = _parse_ms(row.start_ms), _parse_ms(row.end_ms)
        fields = name.split("_")
        original = "_".join(fields[:-2]) if len(fields) > 2 else None
        valid_range = start is not None and end is not None and end > start
        cut_name = f"{original}_{start}_{end}.mp4" if original and valid_range else None
        candidates = [out_dir / piece / n for n in (f"{name}.mp4", cut_name) if n is not None]
        done = _existing(candidates, overwrite)
        if done is not None:
            jobs.append(ClipJob("urmp", URMP_SPLIT, row.video_id, "existing", dest=done))
            continue
        if index is None:
            jobs.append(missing("no raw root given for urmp"))
            continue
        clip = index.find(name)
        if clip is not None:
            jobs.append(
                ClipJob("urmp", URMP_SPLIT, row.video_id, "copy",
                        dest=out_dir / piece / f"{name}.mp4", src=clip)
            )
            continue
        if not valid_range:
            jobs.append(missing(f"line {row.line}: bad time range {row.start_ms}-{row.end_ms}"))
            continue
        raw = index.find(original) if original else None
        if raw is None or cut_name is None:
            tried = f"{name}.mp4" + (f" or {original}.mp4" if original else "")
            jobs.append(missing(f"no {tried} under {index.root}"))
            continue
        jobs.append(
            ClipJob("urmp", URMP_SPLIT, row.video_id, "cut", dest=out_dir / piece / cut_name,
                    src=raw, start_ms=start, end_ms=end)
        )
    return jobs
