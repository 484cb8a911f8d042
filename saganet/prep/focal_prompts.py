"""Focal prompts of the training clips, written once so training only decodes them.

Owns the library side of ``training/extract_focal_prompts.py`` (and the split listing that
``training/extract_video_training_latents.py`` shares):

* :func:`list_split_clips`: the clips of one split of the assembled SMS, as sample ids
  (``<redefined_label>/<clip stem>``, the path of the clip below the SMS data folder without
  ``.mp4``) with their labels, resolved exactly as ``training/load_sms.py`` named the files;
* :func:`make_focal_prompt`: for one clip, frames and mask at 25 fps squash-resized to 224x224
  (uint8, the training data path of :mod:`saganet.media.video`), the focal crop of
  :func:`saganet.features.focal_crop` on uint8, and the two H.264 files where
  :func:`saganet.data.sms_dataset.sms_paths` looks for them: ``<stem>_detail.mp4`` (RGB,
  yuv420p) and ``<stem>_mask_detail.mp4`` (one gray plane);
* :func:`make_focal_prompts`: the same over many clips in worker processes, with a progress bar
  and one result per clip (done, skipped because both files exist, failed with the reason).

Files are written under a temporary name and renamed when complete, so an interrupted run never
leaves a truncated file that a rerun would skip. Mask files are flagged full-range, so decoding
them (FFmpeg's gray conversion) gives back the encoded values; the reference left the range
unflagged, which makes FFmpeg stretch mask values read back as limited-range video.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import torch
from av.video.reformatter import ColorRange

from saganet.data.sms_dataset import FRAME_SIZE, LOAD_ERRORS, SYNC_FPS, sms_paths
from saganet.errors import UserInputError
from saganet.features.focal_crop import focal_crop
from saganet.fileio import ffmpeg_name, temporary_sibling
from saganet.media.video import read_frames
from saganet.prep.sms_metadata import (
    SMS_SUBSETS,
    is_path_component,
    plan_sms_jobs,
    read_sms_metadata,
)
from saganet.progress import progress_bar

log = logging.getLogger(__name__)

DETAIL_CODEC = "libx264"
FocalPromptStatus = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class SplitClip:
    """One clip of a split.

    Args:
        id: path of the clip below the SMS data folder without ``.mp4``, e.g.
            ``violin/abc_1000_6000``; the key of the feature memmap and metadata table.
        label: the ``redefined_label`` (instrument), used as the text condition.
    """

    id: str
    label: str


@dataclass(frozen=True)
class SplitListing:
    """The clips of a split that exist on disk, and the rows that have none.

    Args:
        clips: clips whose video exists, in metadata order, each id once.
        missing: ``(clip name, reason)`` of rows without a clip video.
    """

    clips: list[SplitClip]
    missing: list[tuple[str, str]]


def list_split_clips(metadata: str | os.PathLike[str], root: str | os.PathLike[str],
                     split: str) -> SplitListing:
    """The clips of one split of the assembled SMS.

    A row's clip is ``<root>/<redefined_label>/<YTID>_<start>_<end>.mp4`` (cut by
    ``training/load_sms.py``) or ``<root>/<redefined_label>/<filename>.mp4`` (copied), the
    first that exists.

    Args:
        metadata: ``sms/metadata.csv``, read by column name; its ``split`` column selects rows
            (a file without one is a single split named ``all``).
        root: the SMS data folder (``<output_dir>/sms/data`` of ``load_sms.py``).
        split: e.g. ``train`` or ``val``.

    Raises:
        UserInputError: unreadable metadata, missing root, or no row of ``split``.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserInputError("the SMS data folder does not exist", root)
    rows = read_sms_metadata(metadata)
    selected = [row for row in rows if row.split == split]
    if not selected:
        splits = ", ".join(sorted({row.split for row in rows})) or "none"
        raise UserInputError(f"no row of split {split!r} (splits in the file: {splits}; a file "
                             "without a 'split' column is one split named 'all')", metadata)
    # With no raw roots the planner only finds finished clips, named as it names them.
    jobs = plan_sms_jobs(selected, dict.fromkeys(SMS_SUBSETS), root)
    clips: list[SplitClip] = []
    missing: list[tuple[str, str]] = []
    seen: set[str] = set()
    duplicates = 0
    for row, job in zip(selected, jobs, strict=True):
        if job.action != "existing" or job.dest is None:
            # Named like the clips that exist (<label>/<stem>), where the label can be a folder.
            name = f"{row.label}/{job.clip_id}" if is_path_component(row.label) else job.clip_id
            missing.append((name, _missing_reason(job.reason, root)))
            continue
        clip_id = job.dest.relative_to(root).with_suffix("").as_posix()
        if clip_id in seen:
            duplicates += 1
            continue
        seen.add(clip_id)
        clips.append(SplitClip(clip_id, row.label))
    if duplicates:
        log.warning("%s: %d rows of split %s name a clip listed before; each clip is used once",
                    metadata, duplicates, split)
    log.info("split %s: %d clips, %d rows without a clip under %s", split, len(clips),
             len(missing), root)
    return SplitListing(clips, missing)


def _missing_reason(reason: str, root: Path) -> str:
    # The planner was given no raw roots, so "no raw root" only means "not assembled yet";
    # other reasons (unknown subset, unusable row) are kept as they are.
    if reason.startswith("no raw root"):
        return f"no clip video under {root} (not assembled by training/load_sms.py)"
    return reason


@dataclass(frozen=True)
class FocalPromptResult:
    """Outcome for one clip.

    Args:
        clip_id: the sample id.
        status: "done" (both files written), "skipped" (both existed) or "failed".
        reason: why it failed.
    """

    clip_id: str
    status: FocalPromptStatus
    reason: str = ""


def write_h264(path: str | os.PathLike[str], frames: torch.Tensor, fps: int = 25,
               threads: int = 0) -> Path:
    """Encode uint8 frames as an H.264 mp4 (libx264 defaults), atomically.

    Args:
        path: output file (replaced if it exists).
        frames: ``(T, 3, H, W)`` RGB, written as limited-range yuv420p, or ``(T, 1, H, W)``
            gray, written as one full-range plane; ``H`` and ``W`` even.
        fps: frame rate (frame ``k`` at ``k / fps`` s).
        threads: encoder threads (0: the encoder's choice).

    Raises:
        UserInputError: this FFmpeg build has no libx264.
    """
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"frames must be uint8 (T, 1 or 3, H, W), got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    if DETAIL_CODEC not in av.codecs_available:
        raise UserInputError(f"this PyAV/FFmpeg build has no {DETAIL_CODEC} encoder")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gray = frames.shape[1] == 1
    height, width = frames.shape[-2:]
    tmp = temporary_sibling(path, ".mp4")
    try:
        with av.open(ffmpeg_name(tmp), "w", format="mp4") as out:
            stream = out.add_stream(DETAIL_CODEC, rate=fps)
            stream.width, stream.height = width, height
            stream.pix_fmt = "gray" if gray else "yuv420p"
            stream.codec_context.color_range = ColorRange.JPEG if gray else ColorRange.MPEG
            if threads:
                stream.codec_context.thread_count = threads
            images = frames.permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
            for index, image in enumerate(images):
                if gray:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[..., 0]),
                                                       format="gray")
                    frame.color_range = ColorRange.JPEG
                else:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image),
                                                       format="rgb24")
                    frame = frame.reformat(format="yuv420p", dst_color_range=ColorRange.MPEG)
                frame.pts = index
                frame.time_base = Fraction(1, fps)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def make_focal_prompt(root: str | os.PathLike[str], clip_id: str, duration: float = 5.0,
                      overwrite: bool = False, threads: int = 0) -> FocalPromptResult:
    """Write the detail video and detail mask of one clip (see the module docstring).

    Clip problems (missing or unreadable video or mask, fewer than ``25 * duration`` frames)
    become a "failed" result rather than an exception.

    Args:
        root: the SMS data folder.
        clip_id: the sample id (see :class:`SplitClip`).
        duration: seconds of the clip to crop (5 s: 125 frames).
        overwrite: rewrite files that exist.
        threads: encoder threads (0: the encoder's choice).
    """
    paths = sms_paths(Path(root), clip_id)
    if not overwrite and paths.detail.is_file() and paths.mask_detail.is_file():
        return FocalPromptResult(clip_id, "skipped")
    num_frames = int(SYNC_FPS * duration)
    try:
        for what, path in (("clip video", paths.video), ("mask video", paths.mask)):
            if not path.is_file():
                return FocalPromptResult(clip_id, "failed", f"no {what} {path}")
        frames = read_frames(paths.video, SYNC_FPS, FRAME_SIZE, end=duration)  # (T, 3, S, S)
        masks = read_frames(paths.mask, SYNC_FPS, FRAME_SIZE, gray=True, end=duration)
        for what, tensor in (("clip video", frames), ("mask video", masks)):
            if tensor.shape[0] < num_frames:
                return FocalPromptResult(
                    clip_id, "failed", f"{what} too short: {tensor.shape[0]} frames at "
                    f"{SYNC_FPS:g} fps, need {num_frames}")
        detail, mask_detail = focal_crop(frames[None, :num_frames], masks[None, :num_frames],
                                         names=[clip_id])
        write_h264(paths.detail, detail[0], fps=int(SYNC_FPS), threads=threads)
        write_h264(paths.mask_detail, mask_detail[0], fps=int(SYNC_FPS), threads=threads)
    except LOAD_ERRORS as err:
        return FocalPromptResult(clip_id, "failed", " ".join(f"{type(err).__name__}: "
                                                             f"{err}".split()))
    return FocalPromptResult(clip_id, "done")


def _init_worker() -> None:
    # Several processes share the cores: one thread each for the resize and the encoder.
    torch.set_num_threads(1)


def make_focal_prompts(root: str | os.PathLike[str], clip_ids: Sequence[str],
                       duration: float = 5.0, workers: int = 1, overwrite: bool = False,
                       progress: bool = True) -> list[FocalPromptResult]:
    """:func:`make_focal_prompt` for many clips; results come back in the order of ``clip_ids``.

    Args:
        root: the SMS data folder.
        clip_ids: sample ids.
        duration: seconds of each clip to crop.
        workers: processes (1: everything in this process, encoder threads left to libx264).
        overwrite: rewrite files that exist.
        progress: show a tqdm bar.
    """
    if workers < 1:
        raise UserInputError(f"workers must be at least 1, got {workers}")
    results: list[FocalPromptResult | None] = [None] * len(clip_ids)
    bar = progress_bar(total=len(clip_ids), desc="focal prompts", unit="clip",
                       disable=not progress)
    if workers == 1:
        for i, clip_id in enumerate(clip_ids):
            results[i] = make_focal_prompt(root, clip_id, duration, overwrite)
            bar.update()
    else:
        # spawn: forking a process that holds threads (tqdm, PyAV, torch) can deadlock the child.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                 initializer=_init_worker) as pool:
            futures: dict[Future[FocalPromptResult], int] = {
                pool.submit(make_focal_prompt, root, clip_id, duration, overwrite, 1): i
                for i, clip_id in enumerate(clip_ids)
            }
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except BrokenProcessPool as err:
                    results[i] = FocalPromptResult(clip_ids[i], "failed",
                                                   f"worker process died: {err}")
                bar.update()
    bar.close()
    done = [r for r in results if r is not None]
    assert len(done) == len(clip_ids)
    return done


def write_problem_list(path: str | os.PathLike[str], failed: Sequence[tuple[str, str]],
                       missing: Sequence[tuple[str, str]]) -> Path:
    """Write failed and missing clips as a TSV (``id``, ``status``, ``reason``).

    The file is always written (header only when nothing went wrong), so a stale list from an
    earlier run never survives.

    Args:
        path: the TSV to write.
        failed: ``(id, reason)`` of clips that failed.
        missing: ``(clip name, reason)`` of rows without a clip video.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["id\tstatus\treason"]
    for status, entries in (("failed", failed), ("missing", missing)):
        lines += ["\t".join(" ".join(cell.split()) for cell in (clip_id, status, reason))
                  for clip_id, reason in entries]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def focal_prompt_report(results: Sequence[FocalPromptResult],
                        missing: Sequence[tuple[str, str]] = (), max_listed: int = 20) -> str:
    """A plain-text report: counts per outcome, then failed and missing clips with reasons.

    Args:
        results: results of :func:`make_focal_prompts`.
        missing: rows without a clip video, from :class:`SplitListing`.
        max_listed: clips listed per category (the rest are counted).
    """
    counts = Counter(r.status for r in results)
    lines = [f"done {counts['done']}, skipped (already written) {counts['skipped']}, "
             f"failed {counts['failed']}, no clip video {len(missing)}"]
    failed = [(r.clip_id, r.reason) for r in results if r.status == "failed"]
    for title, entries in (("failed", failed), ("no clip video", list(missing))):
        for clip_id, reason in entries[:max_listed]:
            lines.append(f"  {title}: {clip_id}: {reason}")
        if len(entries) > max_listed:
            lines.append(f"  ... and {len(entries) - max_listed} more {title}")
    return "\n".join(lines)
