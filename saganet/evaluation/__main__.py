"""``python -m saganet.evaluation PRED_DIR GT_DIR``: score generated audio against ground truth.

Parses arguments, calls :func:`saganet.evaluation.runner.evaluate_directories`, writes the
report as JSON and prints it as a table. User mistakes (missing files, unpaired names,
av-benchmark not installed) print one message and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from saganet.cli import positive_int
from saganet.errors import CPU_FLAG, UserInputError, check_seconds, report_user_error
from saganet.evaluation.av_bench import check_device, load_av_bench
from saganet.evaluation.embedders import embedder_names, import_plugins
from saganet.evaluation.runner import AV_BENCH, AvBenchOptions, evaluate_directories
from saganet.fileio import atomic_output, check_folder_creatable

log = logging.getLogger("saganet.evaluation")


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m saganet.evaluation",
        description="Score generated audio against ground truth (files paired by stem) with "
        "the av-benchmark metrics: FD (PaSST, PANNs, VGGish), KL, IS, IB-Score, DeSync.",
    )
    parser.add_argument("pred_dir", type=Path, help="folder of generated .flac/.wav files")
    parser.add_argument("gt_dir", type=Path, help="folder of ground-truth audio, same stems")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON report path (default PRED_DIR/metrics.json)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing JSON report"
    )
    parser.add_argument(
        "--audio_length", type=float, default=5.0,
        help="seconds kept per clip, positive (default 5)",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first (repeatable), e.g. one whose register_embedder() adds "
        "an --embedder choice",
    )
    parser.add_argument(
        "--embedder",
        action="append",
        help=f"feature source, repeatable: {AV_BENCH} (default: the paper's protocol), "
        f"{', '.join(embedder_names())} (built-in diagnostics whose numbers are not comparable "
        "to the paper's), or one a --plugin module registers",
    )
    parser.add_argument(
        "--batch_size", type=positive_int, default=32, help="batch for generated audio"
    )
    group = parser.add_argument_group("av-bench")
    group.add_argument("--gt_cache", type=Path, default=None, help="default GT_DIR/cache")
    group.add_argument("--pred_cache", type=Path, default=None, help="default PRED_DIR/cache")
    group.add_argument("--device", default="cuda", help="torch device (default cuda)")
    group.add_argument(
        "--gt_batch_size", type=positive_int, default=1, help="batch for ground truth"
    )
    group.add_argument("--num_workers", type=int, default=8, help="data-loader workers")
    group.add_argument("--recompute", action="store_true", help="re-extract cached features")
    group.add_argument("--skip_video_related", action="store_true", help="skip IB-Score and DeSync")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = AvBenchOptions(
        gt_cache=args.gt_cache,
        pred_cache=args.pred_cache,
        device=args.device,
        batch_size=args.batch_size,
        gt_batch_size=args.gt_batch_size,
        num_workers=args.num_workers,
        recompute=args.recompute,
        video_metrics=not args.skip_video_related,
    )
    out = args.out if args.out is not None else args.pred_dir / "metrics.json"
    prog = "python -m saganet.evaluation"
    try:
        # The plugins' embedders are choices too, so the names are checked once they are in.
        import_plugins(args.plugin, "--plugin")
        for name in args.embedder or []:
            if name != AV_BENCH and name not in embedder_names():
                raise UserInputError(f"--embedder {name!r}: unknown; choose {AV_BENCH}, "
                                     f"{', '.join(embedder_names())}, or register one in a "
                                     "--plugin module")
        # Refused before the features are computed, not after minutes of work.
        check_seconds(args.audio_length, "--audio_length", positive=True)
        if out.is_dir():
            raise UserInputError("output is a folder", out)
        if out.exists() and not args.overwrite:
            raise UserInputError("report exists; pass --overwrite to replace it", out)
        if args.out is not None:
            # The default's folder is PRED_DIR, checked as it is read.
            check_folder_creatable(out.parent, "report's folder", named=out)
        sources = args.embedder or [AV_BENCH]
        if AV_BENCH in sources:
            # Checked here to name the flag (run_av_bench names its argument), after what
            # run_av_bench checks first: an install command comes before a device hint.
            load_av_bench()
            check_device(args.device, use_cpu=CPU_FLAG)
        report = evaluate_directories(
            args.pred_dir,
            args.gt_dir,
            feature_sources=sources,
            audio_length=args.audio_length,
            av_bench=options,
            batch_size=args.batch_size,
        )
        try:
            with atomic_output(out, overwrite=args.overwrite, suffix=".json") as tmp:
                tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        except OSError as err:
            raise UserInputError(f"cannot write the report: {err}", out) from None
    except UserInputError as err:
        return report_user_error(prog, err)
    print(report.format_table())
    log.info("report written to %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
