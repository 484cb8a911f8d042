"""``python -m saganet.batch``: run many video + mask jobs with one model load.

Jobs come from a CSV file (``--csv``, columns by name: ``video``, ``mask``, optional
``prompt``, ``negative_prompt``, ``output``) or from a folder (``--input_dir``) of
``<stem>.mp4`` + ``<stem>_mask.mp4`` pairs. Each job goes through the same path as
``demo.py`` (:func:`saganet.media.video.load_video_inputs`, then :func:`saganet.inference.generate`
with the seed of ``--seed``), so a job's result equals ``demo.py`` with the same arguments.
A job that fails (missing or broken file, too short, ...) is reported on one line and the
others still run. Exit status: 0 when every job succeeded, 1 when some failed, 2 for a usage
error (unreadable CSV, no jobs, bad arguments, weights that cannot be loaded).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av

from saganet.cli import (
    add_model_arguments,
    add_sampling_arguments,
    device_and_dtype,
)
from saganet.errors import UserInputError, report_user_error
from saganet.runtime import configure_runtime

if TYPE_CHECKING:
    from saganet.models import SAGANetModels

log = logging.getLogger(__name__)

CSV_REQUIRED = ("video", "mask")
CSV_OPTIONAL = ("prompt", "negative_prompt", "output")
MASK_SUFFIX = "_mask"
# Errors that end one job (bad input or output file), not the whole batch.
JOB_ERRORS = (UserInputError, OSError, av.error.FFmpegError)


@dataclass(frozen=True)
class Job:
    """One generation job.

    Args:
        video: the input video.
        mask: the mask video of the object to sonify.
        output: the ``.flac`` to write (the ``.mp4`` composite goes beside it).
        prompt: text prompt (None: no text condition).
        negative_prompt: what the audio should not be (``""`` as in the demo).
    """

    video: Path
    mask: Path
    output: Path
    prompt: str | None = None
    negative_prompt: str = ""

    @property
    def outputs(self) -> tuple[Path, Path]:
        """The ``.flac`` and the ``.mp4`` paths."""
        return self.output, self.output.with_suffix(".mp4")


def _flac_path(output_dir: Path, name: str) -> Path:
    path = Path(name)
    path = path if path.is_absolute() else output_dir / path
    return path if path.suffix.lower() == ".flac" else path.with_name(f"{path.name}.flac")


def jobs_from_csv(path: Path, output_dir: Path, default_negative: str = "") -> list[Job]:
    """Read jobs from a CSV file with a header naming its columns.

    Relative ``video``/``mask`` paths are relative to the CSV file's folder; ``output`` (a
    ``.flac`` path or a name without suffix) is relative to ``output_dir`` and defaults to
    ``<video stem>.flac``. Empty ``prompt`` means no text condition; empty
    ``negative_prompt`` means ``default_negative``.

    Args:
        path: the CSV file.
        output_dir: folder for relative outputs.
        default_negative: negative prompt of jobs that give none.

    Raises:
        UserInputError: unreadable file, missing columns, no rows, or two jobs with one output.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise UserInputError(f"cannot read the jobs file ({reason})", path) from err
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise UserInputError(f"the header lacks column(s) {', '.join(missing)} (has: "
                             f"{', '.join(header) or 'nothing'}); columns: video, mask "
                             f"[, prompt, negative_prompt, output]", path)
    base = path.parent
    jobs = []
    for line, row in enumerate(rows, start=2):
        values = {key: (value or "").strip() for key, value in row.items() if key}
        if not any(values.values()):
            continue
        if not values["video"] or not values["mask"]:
            raise UserInputError(f"line {line}: video and mask are required", path)
        video = base / values["video"]
        jobs.append(Job(
            video=video, mask=base / values["mask"],
            output=_flac_path(output_dir, values.get("output") or video.stem),
            prompt=values.get("prompt") or None,
            negative_prompt=values.get("negative_prompt") or default_negative,
        ))
    return _checked(jobs, path)


def jobs_from_dir(folder: Path, output_dir: Path, prompt: str | None,
                  negative_prompt: str = "") -> tuple[list[Job], list[Path]]:
    """Pair ``<stem>.mp4`` with ``<stem>_mask.mp4`` in a folder (not recursive).

    Args:
        folder: the input folder.
        output_dir: where ``<stem>.flac`` goes.
        prompt: prompt of every job.
        negative_prompt: negative prompt of every job.

    Returns:
        The jobs, and the videos that have no mask (reported as failed jobs by the caller).

    Raises:
        UserInputError: not a folder, or no pair at all.
    """
    if not folder.is_dir():
        raise UserInputError("not a folder", folder)
    videos = sorted(p for p in folder.glob("*.mp4") if not p.stem.endswith(MASK_SUFFIX))
    jobs, unpaired = [], []
    for video in videos:
        mask = video.with_name(f"{video.stem}{MASK_SUFFIX}.mp4")
        if mask.is_file():
            jobs.append(Job(video, mask, output_dir / f"{video.stem}.flac", prompt,
                            negative_prompt))
        else:
            unpaired.append(video)
    for mask in sorted(folder.glob(f"*{MASK_SUFFIX}.mp4")):
        if not mask.with_name(f"{mask.stem[: -len(MASK_SUFFIX)]}.mp4").is_file():
            log.warning("%s: mask without a video, ignored", mask)
    if not jobs and not unpaired:
        raise UserInputError("no <stem>.mp4 with a <stem>_mask.mp4 found", folder)
    return _checked(jobs, folder), unpaired


def _checked(jobs: list[Job], source: Path) -> list[Job]:
    if not jobs:
        raise UserInputError("no jobs", source)
    seen: dict[Path, Job] = {}
    for job in jobs:
        if job.output in seen:
            raise UserInputError(f"two jobs write {job.output} ({seen[job.output].video.name}, "
                                 f"{job.video.name}); give them distinct outputs", source)
        seen[job.output] = job
    return jobs


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m saganet.batch",
        description="Generate audio for many video + mask pairs with one model load.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path,
                        help="jobs file: columns video, mask [, prompt, negative_prompt, "
                             "output]; paths relative to the file's folder")
    source.add_argument("--input_dir", type=Path,
                        help="folder of <stem>.mp4 + <stem>_mask.mp4 pairs")
    parser.add_argument("--prompt", default=None,
                        help="prompt for --input_dir jobs (default: no text condition)")
    parser.add_argument("--negative_prompt", default="",
                        help="negative prompt of jobs that give none")
    parser.add_argument("--output_dir", type=Path, default=Path("output"),
                        help="folder for outputs (default ./output)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (default: skip those jobs)")
    add_model_arguments(parser)
    add_sampling_arguments(parser)
    return parser


def _run_job(job: Job, models: SAGANetModels, args: argparse.Namespace) -> None:
    from saganet.inference import SamplingOptions
    from saganet.media.video import load_video_inputs
    from saganet.soundtrack import SoundtrackRequest, write_soundtrack

    inputs = load_video_inputs(job.video, job.mask, duration=args.duration)
    flac, video = job.outputs
    request = SoundtrackRequest(job.video, flac, None if args.skip_video_composite else video,
                                job.prompt, job.negative_prompt)
    write_soundtrack(models, inputs, request, seed=args.seed, overwrite=args.overwrite,
                     options=SamplingOptions(cfg_strength=args.cfg_strength,
                                             num_steps=args.num_steps))


def _reason(err: Exception, job: Job) -> str:
    """One-line reason, without repeating the job's video path."""
    if isinstance(err, UserInputError) and err.path == str(job.video):
        return err.problem
    return str(err)


def _is_done(job: Job, args: argparse.Namespace) -> bool:
    flac, video = job.outputs
    return flac.is_file() and (args.skip_video_composite or video.is_file())


def run(args: argparse.Namespace) -> int:
    """Run all jobs; returns the exit status (0 all ok, 1 some failed).

    Args:
        args: parsed arguments of :func:`build_parser`.

    Raises:
        UserInputError: a usage error (bad jobs file, unloadable weights).
    """
    from tqdm.auto import tqdm

    from saganet.pipeline import load_models, pipeline_variant

    if args.num_steps < 1 or not args.duration > 0:
        raise UserInputError("--num_steps must be >= 1 and --duration positive")
    pipeline_variant(args.variant)
    if args.csv is not None:
        jobs, unpaired = jobs_from_csv(args.csv, args.output_dir, args.negative_prompt), []
    else:
        jobs, unpaired = jobs_from_dir(args.input_dir, args.output_dir, args.prompt,
                                       args.negative_prompt)
    failures = [(video, "no matching <stem>_mask.mp4") for video in unpaired]
    for video, reason in failures:
        print(f"FAILED {video}: {reason}", file=sys.stderr)
    todo = [job for job in jobs if args.overwrite or not _is_done(job, args)]
    skipped = len(jobs) - len(todo)
    if skipped:
        log.info("%d job(s) skipped: outputs exist (pass --overwrite to redo them)", skipped)
    ok = 0
    if todo:
        device, dtype = device_and_dtype(args)
        models = load_models(args.variant, weights_dir=args.weights_dir,
                             checkpoint=args.checkpoint, device=device, dtype=dtype,
                             offline=args.offline)
        for job in tqdm(todo, desc="jobs", unit="job"):
            try:
                _run_job(job, models, args)
            except JOB_ERRORS as err:
                failures.append((job.video, _reason(err, job)))
                # tqdm.write keeps the line apart from the progress bar.
                tqdm.write(f"FAILED {job.video}: {failures[-1][1]}", file=sys.stderr)
                continue
            ok += 1
            tqdm.write(str(job.output), file=sys.stdout)
    summary = f"{ok} ok, {len(failures)} failed"
    print(summary + (f", {skipped} skipped (outputs exist)" if skipped else ""), file=sys.stderr)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    configure_runtime(args.variant)
    try:
        return run(args)
    except UserInputError as err:
        return report_user_error("python -m saganet.batch", err)


if __name__ == "__main__":
    sys.exit(main())
