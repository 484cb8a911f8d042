"""Assemble Segmented Music Solos (SMS, training/validation) and URMP (test) from raw datasets.

SMS is published as metadata and masks only; its clips are cut out of three raw datasets that
must be obtained separately: MUSIC21 (https://github.com/roudimit/MUSIC_dataset), AVSBench
semantic (https://github.com/OpenNLPLab/AVSBench) and Solos
(https://github.com/JuanFMontesinos/Solos); the test set comes from URMP
(https://labsites.rochester.edu/air/projects/URMP.html).

Steps: download the published files (metadata, masks; not checkpoints), then for every
metadata row cut the clip out of its raw video (or copy an already-cut clip), then print a
table per source and split and write the clips that could not be made to
``<output_dir>/missing.tsv``. Reruns skip finished clips. Exit status: 0 when it ran (even with
missing clips), 2 with a one-line message on a user error (bad path, unreadable metadata,
failed download).

Example::

    python training/load_sms.py --music21_root raw/MUSIC21 --avs_root raw/AVSBench \\
        --solos_root raw/Solos --urmp_root raw/URMP --output_dir data --workers 8

The reference's names of the four roots (``--music21``, ``--avssbench``, ``--solos``,
``--urmp``) are accepted too, so its README's command runs unchanged.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from saganet.errors import UserInputError, report_user_error
from saganet.prep.clip_cut import ClipResult, run_jobs, summary_table, write_missing
from saganet.prep.sms_metadata import (
    PUBLIC_BASE_URL,
    SMS_METADATA,
    URMP_METADATA,
    VideoIndex,
    check_public_files,
    fetch_public_files,
    plan_sms_jobs,
    plan_urmp_jobs,
    read_sms_metadata,
    read_urmp_metadata,
)
from saganet.weights.cache import is_offline

log = logging.getLogger("load_sms")

# Command-line option -> the metadata's source name.
ROOT_OPTIONS = {
    "music21_root": "music21",
    "avs_root": "avs-semantic",
    "solos_root": "solos",
    "urmp_root": "urmp",
}
# The reference script's names of the same options (its README's command works unchanged).
REFERENCE_NAMES = {
    "music21_root": "--music21",
    "avs_root": "--avssbench",
    "solos_root": "--solos",
    "urmp_root": "--urmp",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(
        description=(
            "Download the published SMS/URMP metadata and masks, then cut the SMS and URMP "
            "clips out of the raw datasets (or copy already-cut clips). A source without a "
            "root counts all its clips as missing. Reruns skip finished clips."
        ),
    )
    roots = parser.add_argument_group(
        "raw datasets (each optional; the second name is the reference script's)")
    helps = {
        "music21_root": "folder with the MUSIC21 videos (<YouTube id>.mp4, any depth)",
        "avs_root": "folder with the AVSBench-semantic videos (<id>.mp4, any depth)",
        "solos_root": "folder with the Solos videos (<YouTube id>.mp4, any depth)",
        "urmp_root": "folder with the URMP videos (Vid_*.mp4 or already-cut clips, any depth)",
    }
    for option, text in helps.items():
        roots.add_argument(f"--{option}", REFERENCE_NAMES[option], dest=option, type=Path,
                           help=text)
    parser.add_argument("--output_dir", type=Path, default=Path("data"),
                        help="where metadata, masks and clips go: sms/data/<label>/*.mp4, "
                             "urmp/data/<piece>/*.mp4, missing.tsv (default: ./data)")
    parser.add_argument("--move_files", action="store_true",
                        help="move already-cut clips out of the raw roots instead of copying "
                             "them (raw videos that must be cut are never moved)")
    parser.add_argument("--base_url", default=PUBLIC_BASE_URL,
                        help="public bucket holding files.txt, the metadata and the masks "
                             "(default: %(default)s)")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="download nothing (also SAGANET_OFFLINE=1): the published files "
                             "must already be in --output_dir; if any is missing, the error "
                             "lists each with its URL and the path it goes to")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes cutting clips in parallel (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="remake clips whose output already exists (downloaded files are "
                             "never downloaded again)")
    return parser


def _roots(args: argparse.Namespace) -> dict[str, Path | None]:
    """Source name -> root folder (None when not given); given roots must be folders."""
    roots: dict[str, Path | None] = {}
    for option, source in ROOT_OPTIONS.items():
        root = getattr(args, option)
        if root is not None and not root.is_dir():
            raise UserInputError(f"--{option} is not a folder", root)
        roots[source] = root
    return roots


def assemble(args: argparse.Namespace) -> list[ClipResult]:
    """Run every step for parsed arguments; returns the per-clip results.

    Args:
        args: arguments from :func:`build_parser`.

    Raises:
        UserInputError: bad paths, unreadable metadata, failed downloads.
    """
    if args.workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {args.workers}")
    roots = _roots(args)
    output_dir: Path = args.output_dir
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(f"cannot create the output folder ({err.strerror})",
                             output_dir) from err
    if is_offline(args.offline):
        check_public_files(args.base_url, output_dir)
    else:
        fetch_public_files(args.base_url, output_dir)
    sms_rows = read_sms_metadata(output_dir / SMS_METADATA)
    urmp_rows = read_urmp_metadata(output_dir / URMP_METADATA)

    # One index per distinct folder, even if the same folder is given for several sources.
    indexes: dict[Path, VideoIndex] = {}
    by_source: dict[str, VideoIndex | None] = {}
    for source, root in roots.items():
        if root is not None and root.resolve() not in indexes:
            indexes[root.resolve()] = VideoIndex(root, exclude=[output_dir])
        by_source[source] = None if root is None else indexes[root.resolve()]
    urmp_index = by_source.pop("urmp")

    jobs = plan_sms_jobs(sms_rows, by_source, output_dir / "sms" / "data", args.overwrite)
    jobs += plan_urmp_jobs(urmp_rows, urmp_index, output_dir / "urmp" / "data", args.overwrite)
    if args.move_files:
        log.warning("--move_files: already-cut clips are moved out of the raw roots")
    return run_jobs(jobs, workers=args.workers, move=args.move_files)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The bucket publishes no checksums, so the downloader's per-file "no checksum" warning
    # would repeat for every mask file; failures still raise.
    logging.getLogger("saganet.weights.download").setLevel(logging.ERROR)
    try:
        results = assemble(args)
    except UserInputError as err:
        return report_user_error("load_sms.py", err)
    print(summary_table(results))
    missing_tsv = args.output_dir / "missing.tsv"
    n_missing = write_missing(results, missing_tsv)
    print(f"{n_missing} missing or failed clips listed in {missing_tsv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
