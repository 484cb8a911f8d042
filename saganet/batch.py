"""``python -m saganet.batch``: run many video + mask jobs with one model load.

Jobs come from a CSV file (``--csv``, columns by name: ``video``, ``mask`` (a mask video or a
folder of mask images), optional ``mask_id``, ``name``, ``prompt``, ``negative_prompt``,
``output``; a row with several objects lists their masks, ids, names and prompts separated by
``;``) or from a folder (``--input_dir``) of ``<stem>.mp4``
with ``<stem>_mask.mp4`` (one object) or ``<stem>_mask_<name>.mp4`` files (one per object).
Each job goes through the same path as ``demo.py``
(:func:`saganet.soundtrack.write_soundtrack` with the seed of ``--seed``), so a job's result
equals ``demo.py`` with the same arguments. A job that fails (missing or broken file, too
short, ...) is reported on one line and the others still run. Exit status: 0 when every job
succeeded, 1 when some failed, 2 for a usage error (unreadable CSV, no jobs, bad arguments,
weights that cannot be loaded).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av

from saganet.cli import (
    ObjectArgs,
    add_feature_cache_argument,
    add_long_form_arguments,
    add_model_arguments,
    add_sampling_arguments,
    audio_format,
    begin,
    check_video_flags,
    device_and_dtype,
    feature_cache_bytes,
    object_name,
    segment_duration,
    terminate_cleanly,
)
from saganet.errors import INTERRUPTED_STATUS, UserInputError, report_user_error

if TYPE_CHECKING:
    from saganet.models import SAGANetModels
    from saganet.soundtrack import FeatureCache

# Named, not __name__: run as ``python -m saganet.batch`` it would be "__main__" in every line.
log = logging.getLogger("saganet.batch")

CSV_REQUIRED = ("video", "mask")
CSV_OPTIONAL = ("mask_id", "name", "prompt", "negative_prompt", "output")
# Several objects in one CSV cell are separated by this.
LIST_SEPARATOR = ";"
MASK_SUFFIX = "_mask"
# Errors that end one job (bad input or output file), not the whole batch.
JOB_ERRORS = (UserInputError, OSError, av.error.FFmpegError)


@dataclass(frozen=True)
class JobObject:
    """One object of a job.

    Args:
        name: its name (file names and track titles).
        mask: its mask video, or folder of mask images.
        prompt: text prompt (None: no text condition).
        negative_prompt: what its audio should not be.
        mask_id: its id in a folder of label images (None: every non-zero pixel).
    """

    name: str
    mask: Path
    prompt: str | None = None
    negative_prompt: str = ""
    mask_id: int | None = None


@dataclass(frozen=True)
class Job:
    """One generation job: a video and its objects.

    Args:
        video: the input video.
        objects: the objects to sonify.
        output: the ``.flac`` or ``.wav`` to write (the mix for several objects); the stems and the
            ``.mp4`` go beside it under the same stem.
    """

    video: Path
    objects: tuple[JobObject, ...]
    output: Path


def _audio_path(output_dir: Path, name: str, suffix: str) -> Path:
    path = Path(name)
    path = path if path.is_absolute() else output_dir / path
    # The mix is always written as <stem><suffix>: "a.FLAC" names that file, not another one,
    # and so does "a.flac" with --wav (a.wav).
    if path.suffix.lower() in (".flac", ".wav"):
        return path.with_suffix(suffix)
    return path.with_name(f"{path.name}{suffix}")


def _column_key(name: str) -> str:
    """A header cell as a column name would be spelt: lower case, ``_`` for spaces and dashes."""
    return "_".join(name.strip().lower().replace("-", " ").split())


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(LIST_SEPARATOR)]


def _row_objects(values: dict[str, str], base: Path, default_negative: str, line: int,
                 path: Path) -> tuple[JobObject, ...]:
    """The objects of one CSV row (several when its cells list several, ``;``-separated)."""
    masks = _split(values["mask"])
    count = len(masks)

    def column(name: str) -> list[str]:
        cells = _split(values.get(name) or "")
        if cells == [""]:
            return [""] * count
        if len(cells) == 1 and count > 1 and name != "name":
            return cells * count
        if len(cells) != count:
            raise UserInputError(f"line {line}: {count} mask(s) but {len(cells)} {name}(s)",
                                 path)
        return cells

    names, prompts, negatives = column("name"), column("prompt"), column("negative_prompt")
    if any(not m for m in masks):
        raise UserInputError(f"line {line}: an empty mask path", path)
    ids = [_mask_id(cell, line, path) for cell in column("mask_id")]
    derived = [name or object_name(ObjectArgs(prompt=prompt or None), k)
               for k, (name, prompt) in enumerate(zip(names, prompts, strict=True))]
    # Objects named after one prompt they share would all get its name: number them.
    derived = [f"{name}_{k + 1}" if not names[k] and derived.count(name) > 1 else name
               for k, name in enumerate(derived)]
    return tuple(JobObject(name, base / mask, prompt or None, negative or default_negative,
                           mask_id)
                 for mask, name, prompt, negative, mask_id in zip(masks, derived, prompts,
                                                                  negatives, ids, strict=True))


def _mask_id(cell: str, line: int, path: Path) -> int | None:
    """A ``mask_id`` cell: empty, or a whole number of at least 1."""
    if not cell:
        return None
    if not (cell.isascii() and cell.isdigit()) or int(cell) < 1:
        raise UserInputError(f"line {line}: mask_id must be a whole number of at least 1 (0 is "
                             f"the background), got {cell!r}", path)
    return int(cell)


def jobs_from_csv(path: Path, output_dir: Path, default_negative: str = "",
                  suffix: str = ".flac") -> list[Job]:
    """Read jobs from a CSV file with a header naming its columns.

    Relative ``video``/``mask`` paths are relative to the CSV file's folder; ``output`` (a
    ``.flac`` or ``.wav`` path, or a name without suffix; written with ``suffix``) is relative
    to ``output_dir`` and defaults to ``<video stem><suffix>``. A ``mask`` is a mask video or
    a folder of mask images (:class:`~saganet.media.mask_frames.MaskFrames`), ``mask_id`` the
    object's id in such a folder's label images. Empty ``prompt`` means no text condition;
    empty ``negative_prompt`` means ``default_negative``. Several objects: ``mask`` lists their
    masks separated by ``;``, and ``mask_id``, ``name``, ``prompt``, ``negative_prompt`` as
    many values (or one for all but names).

    Args:
        path: the CSV file.
        output_dir: folder for relative outputs.
        default_negative: negative prompt of jobs that give none.
        suffix: the sound files' suffix, ``.flac`` or ``.wav``.

    Raises:
        UserInputError: unreadable file, missing, repeated or unknown columns, a row with
            more cells than columns, no rows, counts that do not match, or two jobs with one
            output.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            # The line a row ends on: blank lines and quoted line breaks are not rows.
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise UserInputError(f"cannot read the jobs file ({reason})", path) from err
    columns = "columns: video, mask [, mask_id, name, prompt, negative_prompt, output]"
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise UserInputError(f"the header lacks column(s) {', '.join(missing)} (has: "
                             f"{', '.join(header) or 'nothing'}); {columns}", path)
    # A column given twice would be read from its last cell alone, and a misspelt one
    # ("promt", "negative prompt") not at all: either way every job would silently run
    # without what the user wrote.
    repeated = sorted({c for c in header if c and header.count(c) > 1})
    if repeated:
        raise UserInputError(f"column(s) {', '.join(repeated)} given twice in the header; "
                             f"{columns}", path)
    known = CSV_REQUIRED + CSV_OPTIONAL
    unknown = [c for c in header if c and c not in known]
    # A near miss of a column's name is a mistake; anything else is the user's own column
    # (notes, a take number), which jobs do not read.
    misspelt = {c: close[0] for c in unknown
                if (close := difflib.get_close_matches(_column_key(c), known, n=1, cutoff=0.75))}
    if misspelt:
        raise UserInputError("unknown column(s) " + ", ".join(
            f"{c} (did you mean {m}?)" for c, m in misspelt.items()) + f" in the header; "
            f"{columns}", path)
    if unknown:
        log.warning("%s: column(s) %s are not read (%s)", path, ", ".join(unknown), columns)
    base = path.parent
    jobs = []
    for line, row in rows:
        # Cells beyond the header's columns: usually a comma in an unquoted prompt, which
        # shifts the cells after it into the wrong columns.
        if any(cell.strip() for cell in row.get(None, [])):
            raise UserInputError(f"line {line}: more cells than the header has columns (quote a "
                                 'cell that holds a comma: "violin, bowed")', path)
        values = {key: (value or "").strip() for key, value in row.items() if key}
        if not any(values.values()):
            continue
        if not values["video"] or not values["mask"]:
            raise UserInputError(f"line {line}: video and mask are required", path)
        video = base / values["video"]
        jobs.append(Job(video=video,
                        objects=_row_objects(values, base, default_negative, line, path),
                        output=_audio_path(output_dir, values.get("output") or video.stem, suffix)))
    return _checked(jobs, path)


def jobs_from_dir(folder: Path, output_dir: Path, prompt: str | None,
                  negative_prompt: str = "", suffix: str = ".flac",
                  ) -> tuple[list[Job], list[Path]]:
    """Pair ``<stem>.mp4`` with ``<stem>_mask.mp4`` or ``<stem>_mask_<name>.mp4`` files in a
    folder (not recursive; ``.mp4`` in any case), or with folders of mask images of those
    names (``<stem>_mask/``: every non-zero pixel is the object).

    Args:
        folder: the input folder.
        output_dir: where ``<stem><suffix>`` goes.
        prompt: prompt of every job.
        negative_prompt: negative prompt of every job.
        suffix: the sound files' suffix, ``.flac`` or ``.wav``.

    Returns:
        The jobs, and the videos that have no mask (reported as failed jobs by the caller).

    Raises:
        UserInputError: not a folder, or no pair at all.
    """
    if not folder.is_dir():
        raise UserInputError("not a folder", folder)
    entries = sorted(folder.iterdir())
    files = [p for p in entries if p.suffix.lower() == ".mp4" and p.is_file()]
    # Each candidate's name without its suffix, looked up once: a folder of mask images is
    # named by its whole name ("clip.v2_mask").
    stems = {p: p.stem for p in files} | {p: p.name for p in entries if p.is_dir()}
    # By name only (no glob: a video's name may hold [ ] * ?); "_mask" inside a word, as in
    # "my_masked_ball.mp4", does not make a mask.
    masks = {p: stem for p, stem in stems.items()
             if stem.endswith(MASK_SUFFIX) or f"{MASK_SUFFIX}_" in stem}
    videos = [p for p in files if p not in masks]
    jobs, unpaired, used = [], [], set()
    for video in videos:
        prefix = f"{video.stem}{MASK_SUFFIX}"
        found = [(prompt or "object", m) for m, stem in masks.items() if stem == prefix]
        found += [(stem[len(prefix) + 1:], m) for m, stem in masks.items()
                  if stem.startswith(f"{prefix}_") and len(stem) > len(prefix) + 1]
        if found:
            objects = tuple(JobObject(name, mask, prompt, negative_prompt)
                            for name, mask in found)
            jobs.append(Job(video, objects, output_dir / f"{video.stem}{suffix}"))
            used.update(mask for _, mask in found)
        else:
            unpaired.append(video)
    for mask in sorted(set(masks) - used):
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
                        help="jobs file: columns video, mask [, mask_id, name, prompt, "
                             "negative_prompt, output]; paths relative to the file's folder; "
                             "a mask is a mask video or a folder of mask images; several "
                             "objects: ';'-separated masks, ids, names, prompts")
    source.add_argument("--input_dir", type=Path,
                        help="folder of <stem>.mp4 with <stem>_mask.mp4 or "
                             "<stem>_mask_<name>.mp4 (one per object), or folders of mask "
                             "images of those names")
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
    add_long_form_arguments(parser)
    add_feature_cache_argument(parser)
    return parser


def _request(job: Job, args: argparse.Namespace):
    """The job as a soundtrack request (the same one ``demo.py`` builds)."""
    from saganet.media.masks import mask_source
    from saganet.soundtrack import SoundObject, SoundtrackRequest

    duration = segment_duration(args)
    return SoundtrackRequest(
        video=job.video,
        objects=tuple(SoundObject(o.name, mask_source(o.mask, job.video, o.mask_id), o.prompt,
                                  o.negative_prompt) for o in job.objects),
        output_dir=job.output.parent, stem=job.output.stem, start=args.start,
        duration=duration, join=args.join, overlap=args.overlap,
        silence_hidden=not args.keep_hidden, negatives_from_others=args.negatives_from_others,
        write_video=not args.skip_video_composite, original_sound=args.original_sound,
        pan=args.pan, audio_format=audio_format(args), sample_rate=args.sample_rate,
        record_settings=not args.no_settings)


def _run_job(job: Job, models: SAGANetModels, args: argparse.Namespace,
             cache: FeatureCache) -> list[Path]:
    """Run one job; returns the files it wrote (stems, mix, video), as the demo lists them."""
    from saganet.inference import SamplingOptions
    from saganet.soundtrack import write_soundtrack

    result = write_soundtrack(models, _request(job, args), seed=args.seed,
                              overwrite=args.overwrite,
                              options=SamplingOptions(cfg_strength=args.cfg_strength,
                                                      num_steps=args.num_steps),
                              cache=cache)
    return result.outputs.all()


def _file_key(path: Path) -> str:
    """Where ``path`` is in the file system, to tell when two jobs name one file: its folder
    with symbolic links resolved, and its own name (writing replaces that name, not the file
    a link of that name points to)."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def _reason(err: Exception, job: Job) -> str:
    """One-line reason, without repeating the job's video path."""
    if isinstance(err, UserInputError) and err.path == str(job.video):
        return err.problem
    return str(err)


def run(args: argparse.Namespace) -> int:
    """Run all jobs; returns the exit status (0 all ok, 1 some failed).

    Args:
        args: parsed arguments of :func:`build_parser`.

    Raises:
        UserInputError: a usage error (bad jobs file, unloadable weights).
    """
    from saganet.pipeline import check_checkpoint, load_models, pipeline_variant
    from saganet.progress import progress_bar
    from saganet.soundtrack import FeatureCache, check_output_folder, check_seed

    pipeline_variant(args.variant)
    if args.checkpoint is not None:
        check_checkpoint(args.variant, args.checkpoint, option="--variant {}")
    segment_duration(args)  # a usage error, not one of every job
    suffix = f".{audio_format(args)}"
    if args.csv is not None:
        jobs, unpaired = jobs_from_csv(args.csv, args.output_dir, args.negative_prompt,
                                       suffix), []
    else:
        jobs, unpaired = jobs_from_dir(args.input_dir, args.output_dir, args.prompt,
                                       args.negative_prompt, suffix)
    source = args.csv if args.csv is not None else args.input_dir
    # Each folder is tried once (made and removed again), however many jobs write there.
    usable: set[Path] = set()
    if any(args.output_dir in job.output.parents for job in jobs):
        # Every job writing there would fail alone: one usage error instead.
        check_output_folder(args.output_dir)
        usable.add(args.output_dir)
    failures = [(video, "no matching <stem>_mask.mp4 or <stem>_mask_<name>.mp4")
                for video in unpaired]
    todo, skipped = [], 0
    writers: dict[str, Job] = {}
    # The files every job reads: with --overwrite a job writing one of them would replace
    # another job's input (which then reads the replacement, or is gone for the next run).
    readers: dict[str, list[Job]] = {}
    for job in jobs:
        for read in (job.video, *(o.mask for o in job.objects)):
            for key in {_file_key(read), os.path.realpath(read)}:
                readers.setdefault(key, []).append(job)
    for job in jobs:
        try:
            request = _request(job, args)
        except UserInputError as err:  # e.g. object names: that job fails, not the batch
            failures.append((job.video, _reason(err, job)))
            continue
        # A usage error, found before the models load (all jobs share --seed).
        check_seed(args.seed, len(request.objects), "--seed")
        outputs = request.outputs().all()
        # Every file, not only the mix: one job's stem may be another's mix (a_violin.flac).
        for path in outputs:
            other = writers.setdefault(_file_key(path), job)
            if other is not job:
                raise UserInputError(f"two jobs write {path} ({other.video.name}, "
                                     f"{job.video.name}); give them distinct outputs", source)
            # A job's own input is its own check (write_soundtrack's), failing that job alone.
            reader = next((r for r in readers.get(_file_key(path), []) if r is not job), None)
            if reader is not None:
                raise UserInputError(f"the job of {job.video.name} would write {path}, which "
                                     f"the job of {reader.video.name} reads; give it another "
                                     "output", source)
        if not args.overwrite and all(path.is_file() for path in outputs):
            skipped += 1
            continue
        if job.output.parent not in usable:
            try:  # before the models load, not after them for every job
                check_output_folder(job.output.parent)
            except UserInputError as err:
                failures.append((job.video, _reason(err, job)))
                continue
            usable.add(job.output.parent)
        todo.append(job)
    for video, reason in failures:
        print(f"FAILED {video}: {reason}", file=sys.stderr)
    if skipped:
        log.info("%d job(s) skipped: outputs exist (pass --overwrite to redo them)", skipped)
    ok = 0
    if todo:
        device, dtype = device_and_dtype(args)
        models = load_models(args.variant, weights_dir=args.weights_dir,
                             checkpoint=args.checkpoint, device=device, dtype=dtype,
                             offline=args.offline)
        # Jobs of one video (other prompts, other objects) share its CLIP frames, and objects
        # with the same masks their Synchformer features.
        cache = FeatureCache(feature_cache_bytes(args.feature_cache_mb))
        bar = progress_bar(todo, desc="jobs", unit="job")
        for job in bar:
            try:
                written = _run_job(job, models, args, cache)
            except JOB_ERRORS as err:
                failures.append((job.video, _reason(err, job)))
                # The bar's write keeps the line apart from the bar on a terminal.
                bar.write(f"FAILED {job.video}: {failures[-1][1]}", file=sys.stderr)
                continue
            ok += 1
            # Every file, as the demo prints them: a script reading stdout finds the stems too.
            for path in written:
                bar.write(str(path), file=sys.stdout)
    summary = f"{ok} ok, {len(failures)} failed"
    print(summary + (f", {skipped} skipped (outputs exist)" if skipped else ""), file=sys.stderr)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = begin(parser, argv)
    check_video_flags(parser, args)
    try:
        with terminate_cleanly():
            return run(args)
    except UserInputError as err:
        return report_user_error("python -m saganet.batch", err)
    except KeyboardInterrupt:
        print("\npython -m saganet.batch: interrupted; finished jobs are kept and a rerun "
              "skips them", file=sys.stderr)
        return INTERRUPTED_STATUS


if __name__ == "__main__":
    sys.exit(main())
