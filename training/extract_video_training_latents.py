"""Precompute the training features of one SMS split: VAE posterior, CLIP frames, CLIP text.

Writes ``<output_dir>/sms-<split>/`` (TensorDict memmap: ``mean``, ``std`` (n, 216, 40),
``clip_features`` (n, 40, 1024), ``text_features`` (n, 77, 1024), plus ``ids.txt``),
``<output_dir>/sms-<split>.tsv`` (``id``, ``label``; rows sorted by id, as in the memmap) and
``<output_dir>/sms-<split>.failed.tsv`` (clips that could not be used, with the reason): what
``config/data/sms.yaml`` points the trainer at. Runs as one process or under ``torchrun`` (each
rank takes a strided part; rank 0 merges). The Synchformer features are not stored: training
computes them. Exit status: 0 when it ran (even with failed clips), 2 with a one-line message
on a user error.

Example::

    torchrun --nproc_per_node=8 training/extract_video_training_latents.py \\
        --root data/sms/data --metadata data/sms/metadata.csv --split train \\
        --output_dir data/sms/memmaps
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from saganet import dist
from saganet.cli import CACHE_DEFAULT
from saganet.errors import UserInputError, report_user_error

log = logging.getLogger("extract_video_training_latents")

DATASET_NAME = "sms"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(
        description="Compute the audio latents (VAE posterior mean/std), CLIP frame features "
                    "and CLIP text features of one split of the assembled SMS dataset and "
                    "write them as the memmap + table the trainer reads. Run it directly or "
                    "under torchrun (one process per GPU).")
    parser.add_argument("--root", type=Path, default=Path("data/sms/data"),
                        help="the SMS clip folder written by training/load_sms.py "
                             "(default: %(default)s)")
    parser.add_argument("--metadata", type=Path, default=Path("data/sms/metadata.csv"),
                        help="the published SMS metadata, read by column name; "
                             "redefined_label is the text condition (default: %(default)s)")
    parser.add_argument("--split", required=True,
                        help="the value of the metadata's split column to process, e.g. train "
                             "or val ('all' for a file without a split column)")
    parser.add_argument("--output_dir", type=Path, default=Path("data/sms/memmaps"),
                        help="where sms-<split>/, sms-<split>.tsv and sms-<split>.failed.tsv "
                             "go (default: %(default)s)")
    parser.add_argument("--variant", default="saganet_small",
                        help="pipeline variant whose VAE and CLIP encode the data: "
                             "saganet_small (default; saganet_small_no_lora uses the same "
                             "encoders) or debug (tiny random encoders for tests, generated "
                             "in the weights folder on first use)")
    parser.add_argument("--weights_dir", type=Path, default=None,
                        help=f"weights folder (default: {CACHE_DEFAULT}; "
                             "`python -m saganet.debug_weights` writes the debug weights)")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never download weights; report missing files and where they go")
    parser.add_argument("--batch_size", type=int, default=3,
                        help="clips per forward pass and per process (default: %(default)s)")
    parser.add_argument("--num_workers", type=int, default=8,
                        help="DataLoader processes decoding clips, per process "
                             "(default: %(default)s)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of each clip, from its start (default: %(default)s: "
                             "221184 audio samples, 216 latents, 40 CLIP frames)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda, mps, cpu), cuda, mps or cpu; under torchrun each "
                             "process takes the GPU of its local rank (default: %(default)s)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                        help="allow TF32 matmuls/convolutions on CUDA, as the reference "
                             "extraction did (default: on)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the memmap and table of this split if they exist")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    for name in ("batch_size", "num_workers"):
        value = getattr(args, name)
        if value < (1 if name == "batch_size" else 0):
            raise UserInputError(f"--{name} cannot be {value}")
    if not args.duration > 0:
        raise UserInputError(f"--duration must be positive, got {args.duration}")


def run(args: argparse.Namespace) -> int:
    """Extract on this rank; rank 0 prints the report. Returns the exit status.

    Args:
        args: arguments from :func:`build_parser`.
    """
    # Heavy imports here so that --help and argument errors are instant.
    from saganet.model.sequence import CONFIG_44K_SA
    from saganet.prep.focal_prompts import list_split_clips
    from saganet.prep.latents import FeatureExtractor, SplitOutputs, extract_split_features

    _check_args(args)
    info = dist.init(None if args.device == "auto" else args.device)
    try:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        outputs = SplitOutputs.for_split(args.output_dir, DATASET_NAME, args.split)
        outputs.check_writable(args.overwrite)
        listing = list_split_clips(args.metadata, args.root, args.split)
        if not listing.clips:
            raise UserInputError(f"no clip of split {args.split!r} exists under the root",
                                 args.root)
        sequence = CONFIG_44K_SA.with_duration(args.duration)
        extractor = FeatureExtractor.from_variant(args.variant, args.weights_dir, info.device,
                                                  args.offline)
        summary = extract_split_features(
            args.root, listing.clips, outputs, extractor, sequence, listing.missing,
            batch_size=args.batch_size, num_workers=args.num_workers)
    finally:
        dist.cleanup()
    if summary is not None:
        shapes = ", ".join(f"{key} {shape}" for key, shape in summary.shapes.items())
        print(f"{summary.rows} clips -> {outputs.memmap_dir} ({shapes}) and {outputs.tsv}")
        if summary.failed or listing.missing:
            print(f"failed {len(summary.failed)}, no clip video {len(listing.missing)}: listed "
                  f"in {outputs.failed_list}")
        else:
            print("every clip was used: none failed, none lacks its video")
        for clip_id, reason in summary.failed[:20]:
            print(f"  failed: {clip_id}: {reason}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    # Under torchrun only rank 0 logs progress; every rank logs warnings.
    main_rank = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(level=logging.INFO if main_rank else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except UserInputError as err:
        return report_user_error("extract_video_training_latents.py", err)


if __name__ == "__main__":
    sys.exit(main())
