"""Write the focal prompts (detail video + detail mask) of every clip of one SMS split.

For each clip ``<root>/<label>/<stem>.mp4`` with its mask ``<root>/<label>/<stem>/<stem>_mask.mp4``
this writes ``<root>/<label>/<stem>/<stem>_detail.mp4`` and ``..._mask_detail.mp4``: the first
5 s at 25 fps, squash-resized to 224x224 and cut to the clip's focal window, as H.264. Training
reads them instead of cropping on the fly. Reruns skip clips whose two files exist. Exit status:
0 when it ran (even with failed clips, which are reported), 2 with a one-line message on a user
error (bad path, unreadable metadata, unknown split).

Example::

    python training/extract_focal_prompts.py --root data/sms/data \\
        --metadata data/sms/metadata.csv --split train --workers 8
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from saganet.errors import UserInputError, report_user_error

log = logging.getLogger("extract_focal_prompts")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(
        description="Write the focal-prompt videos (<stem>_detail.mp4, <stem>_mask_detail.mp4) "
                    "of every clip of one split of the assembled SMS dataset. Reruns skip "
                    "clips whose two files exist.")
    parser.add_argument("--root", type=Path, default=Path("data/sms/data"),
                        help="the SMS clip folder written by training/load_sms.py "
                             "(<label>/<clip>.mp4 and <label>/<clip>/<clip>_mask.mp4; "
                             "default: %(default)s)")
    parser.add_argument("--metadata", type=Path, default=Path("data/sms/metadata.csv"),
                        help="the published SMS metadata, read by column name (subset, YTID, "
                             "filename, redefined_label, start_msec, end_msec, split; "
                             "default: %(default)s)")
    parser.add_argument("--split", required=True,
                        help="the value of the metadata's split column to process, e.g. train "
                             "or val ('all' for a file without a split column)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of each clip to crop, from its start (default: "
                             "%(default)s, i.e. 125 frames at 25 fps)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes working in parallel (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="rewrite focal prompts that already exist")
    parser.add_argument("--failed_list", type=Path, default=None,
                        help="also write every failed or missing clip with its reason to this "
                             "TSV (id, status, reason)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Imported here so that --help and argument errors are instant.
    from saganet.prep.focal_prompts import (
        focal_prompt_report,
        list_split_clips,
        make_focal_prompts,
        write_problem_list,
    )

    try:
        if not args.duration > 0:
            raise UserInputError(f"--duration must be positive, got {args.duration}")
        # Checked before the work, not found when the list is written after it.
        if args.failed_list is not None and args.failed_list.is_dir():
            raise UserInputError("--failed_list is a folder; give a file name",
                                 args.failed_list)
        listing = list_split_clips(args.metadata, args.root, args.split)
        results = make_focal_prompts(args.root, [clip.id for clip in listing.clips],
                                     duration=args.duration, workers=args.workers,
                                     overwrite=args.overwrite)
    except UserInputError as err:
        return report_user_error("extract_focal_prompts.py", err)
    print(focal_prompt_report(results, listing.missing))
    if args.failed_list is not None:
        failed = [(r.clip_id, r.reason) for r in results if r.status == "failed"]
        try:
            write_problem_list(args.failed_list, failed, listing.missing)
        except OSError as err:
            return report_user_error("extract_focal_prompts.py", UserInputError(
                f"cannot write the list: {err.strerror or err}", args.failed_list))
        print(f"failed and missing clips listed in {args.failed_list}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
