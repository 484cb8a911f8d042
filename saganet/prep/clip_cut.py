"""Making dataset clips from raw videos: cut with PyAV, copy or move, in parallel, and tally.

Owns the execution side of dataset assembly (``training/load_sms.py``): a :class:`ClipJob` says
what to do for one metadata row (cut a time range out of a raw video, copy an already-cut clip,
or nothing because it is missing), :func:`run_jobs` does it for many rows in worker processes,
and :func:`summary_table` / :func:`write_missing` report the outcome per source and split.

Cutting decodes from a keyframe before the start and re-encodes, so clip boundaries are exact
(no keyframe snapping): video as H.264 yuv420p at the source frame rate (constant frame rate,
sample-and-hold onto the output frame grid, the source's display rotation kept), audio as AAC
at the source sample rate and channel layout. Every output is written under a temporary name
and renamed when complete, so an interrupted run never leaves a truncated file that a rerun
would take as finished.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from saganet.fileio import ffmpeg_name, temporary_sibling
from saganet.progress import progress_bar

log = logging.getLogger(__name__)

JobAction = Literal["cut", "copy", "existing", "missing"]
ClipStatus = Literal["cut", "copied", "existing", "missing", "failed"]
CLIP_STATUSES: tuple[ClipStatus, ...] = ("cut", "copied", "existing", "missing", "failed")

# Decoding starts this far before the clip start (from the keyframe before that point), so that
# the first video frame and the first audio samples of the clip are decoded even when the audio
# packets are interleaved slightly later than the video keyframe in the file.
SEEK_MARGIN_S = 1.0
# Used when a stream reports no usable frame rate (rare; broken or image-sequence containers).
FALLBACK_FPS = Fraction(25)


class ClipCutError(Exception):
    """A raw video cannot be cut (no video/audio stream, nothing inside the time range)."""


@dataclass(frozen=True)
class ClipJob:
    """What to do for one metadata row.

    Args:
        source: the raw dataset the row belongs to ("solos", "music21", "urmp", ...).
        split: the split the row belongs to ("train", "test", ... or "all" when not given).
        clip_id: the row's clip name, used in reports.
        action: "cut" a range of ``src`` into ``dest``; "copy" ``src`` (an already-cut clip) to
            ``dest``; "existing": ``dest`` is already there; "missing": nothing to work from.
        dest: the output file (None for missing rows).
        src: the raw or already-cut video (for "cut" and "copy").
        start_ms: clip start in milliseconds (for "cut").
        end_ms: clip end in milliseconds (for "cut").
        reason: why a row is missing.
    """

    source: str
    split: str
    clip_id: str
    action: JobAction
    dest: Path | None = None
    src: Path | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class ClipResult:
    """The outcome of one :class:`ClipJob`.

    Args:
        job: the job.
        status: "cut", "copied", "existing", "missing" or "failed".
        reason: why a clip is missing or failed; a warning (e.g. a short clip) otherwise.
    """

    job: ClipJob
    status: ClipStatus
    reason: str = ""


def _partial_path(dest: Path) -> Path:
    """A temporary name next to ``dest`` (same file system, so rename is atomic) that names
    this process, so that a later run removes it if this one is killed."""
    return temporary_sibling(dest, dest.suffix)


def _even(n: int) -> int:
    # yuv420p subsamples chroma by two in both directions, so H.264 needs even sizes.
    return max(2, n - n % 2)


def _stream_rate(stream: av.VideoStream, path: Path) -> Fraction:
    for rate in (stream.guessed_rate, stream.average_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    log.warning("%s reports no frame rate; using %s fps", path, FALLBACK_FPS)
    return FALLBACK_FPS


class _VideoSlots:
    """Puts decoded frames onto the constant-rate output grid of a clip and encodes them.

    Output frame k shows the most recent source frame whose time rounds to slot <= k: the frame
    nearest the slot time on a constant-rate source, held over the gaps of a variable-rate one.
    A frame before the clip start is held, so slot 0 is filled even if the first frame inside
    the clip is late.
    """

    def __init__(
        self,
        out: av.container.OutputContainer,
        stream: av.VideoStream,
        rate: Fraction,
        start: float,
        end: float,
    ) -> None:
        self.out = out
        self.stream = stream
        self.rate = rate
        self.start = start
        self.n_slots = round((end - start) * self.rate)
        self.written = 0
        self.held: av.VideoFrame | None = None
        # Whether any frame fell inside the clip (frames before it are only held for slot 0).
        self.inside = False

    @property
    def done(self) -> bool:
        return self.written >= self.n_slots

    def _emit_until(self, slot: int) -> None:
        """Encode the held frame into every slot before ``slot``."""
        assert self.held is not None
        while self.written < min(slot, self.n_slots):
            self.held.pts = self.written
            self.held.time_base = 1 / self.rate
            for packet in self.stream.encode(self.held):
                self.out.mux(packet)
            self.written += 1

    def add(self, frame: av.VideoFrame) -> None:
        if frame.time is None or self.done:
            return
        # Nearest slot; a frame exactly halfway between two slots goes to the earlier one, so
        # of two equally near frames a slot shows the later (at the clip start: the one inside
        # the clip). The 1e-6 slot tolerance absorbs float noise in frame.time - start.
        slot = math.ceil((frame.time - self.start) * self.rate - 0.5 - 1e-6)
        if self.held is None and self.written == 0 and frame.rotation:
            # Frames are stored as coded; the display rotation (phone videos) must go with them,
            # or the clip plays sideways against its masks. Set before anything is muxed.
            self.stream.set_display_rotation(frame.rotation)
        if self.held is not None:
            self._emit_until(slot)
        if slot < self.n_slots:
            self.inside = self.inside or slot >= 0
            self.held = frame.reformat(
                width=self.stream.codec_context.width,
                height=self.stream.codec_context.height,
                format="yuv420p",
            )

    def finish(self) -> None:
        """Encode the last held frame into its own slot and flush the encoder."""
        if self.held is not None and not self.done:
            self._emit_until(self.written + 1)
        for packet in self.stream.encode(None):
            self.out.mux(packet)


class _AudioWindow:
    """Collects the samples of ``[start, end)`` at their exact sample offsets.

    Samples are placed by their timestamps, so a late first audio packet leaves leading
    silence instead of shifting the audio against the video.
    """

    def __init__(self, in_stream: av.AudioStream, start: float, end: float) -> None:
        self.rate = in_stream.codec_context.sample_rate
        self.layout = in_stream.codec_context.layout.name
        self.start = start
        self.end = end
        # Converts whatever sample format the decoder gives to planar float, nothing else.
        self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        n_total = round((end - start) * self.rate)
        self.buffer = np.zeros((in_stream.codec_context.channels, n_total), np.float32)
        self.filled = 0
        self.done = False

    def add(self, frame: av.AudioFrame) -> None:
        if frame.time is None or self.done:
            return
        if frame.time >= self.end:
            self.done = True
            return
        offset = round((frame.time - self.start) * self.rate)
        for converted in self.resampler.resample(frame):
            samples = converted.to_ndarray()  # (channels, n)
            lo, hi = max(offset, 0), min(offset + samples.shape[1], self.buffer.shape[1])
            if hi > lo:
                self.buffer[:, lo:hi] = samples[:, lo - offset : hi - offset]
                self.filled = max(self.filled, hi)
            offset += samples.shape[1]

    def encode(self, out: av.container.OutputContainer, stream: av.AudioStream) -> None:
        """Encode the collected samples (up to the last one the source had) as one stream."""
        samples = np.ascontiguousarray(self.buffer[:, : self.filled])  # (channels, n)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts = 0
        frame.time_base = Fraction(1, self.rate)
        # The encoder splits the frame into codec-sized (1024-sample) AAC frames itself.
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def cut_clip(src: str | Path, dest: str | Path, start_ms: int, end_ms: int) -> float:
    """Cut ``[start_ms, end_ms)`` of a video into a new MP4 (H.264 + AAC), exactly at the bounds.

    Times count from the start of the file (its first timestamp, as FFmpeg's ``-ss`` counts
    them), not from timestamp 0. Decodes from the keyframe before ``start - SEEK_MARGIN_S`` and
    re-encodes video (H.264 yuv420p, the source frame rate, sizes rounded down to even) and audio
    (AAC, the source sample rate and channel layout). The file is written under a temporary name
    and renamed.

    Args:
        src: the raw video (must have a video and an audio stream).
        dest: the output MP4; parent folders are created.
        start_ms: clip start in milliseconds.
        end_ms: clip end in milliseconds (after ``start_ms``).

    Returns:
        The duration of the written video in seconds (shorter than requested when the source
        ends early).

    Raises:
        ClipCutError: no video/audio stream, an empty range, or no frames inside the range.
        av.FFmpegError: the source cannot be decoded or the output cannot be encoded.
    """
    if end_ms <= start_ms:
        raise ClipCutError(f"empty time range {start_ms}-{end_ms} ms")
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(dest)
    try:
        with av.open(ffmpeg_name(src)) as source:
            if not source.streams.video:
                raise ClipCutError("no video stream")
            if not source.streams.audio:
                raise ClipCutError("no audio stream")
            v_in, a_in = source.streams.video[0], source.streams.audio[0]
            v_in.thread_type = "AUTO"
            # Files whose timestamps start later (remuxed streams, cuts copied without
            # re-encoding) would otherwise be cut too early, or not at all.
            origin = (source.start_time or 0) / av.time_base
            start, end = origin + start_ms / 1000, origin + end_ms / 1000
            with av.open(ffmpeg_name(partial), "w", format="mp4") as out:
                rate = _stream_rate(v_in, src)
                v_out = out.add_stream("libx264", rate=rate)
                v_out.width = _even(v_in.codec_context.width)
                v_out.height = _even(v_in.codec_context.height)
                v_out.pix_fmt = "yuv420p"
                a_out = out.add_stream("aac", rate=a_in.codec_context.sample_rate)
                a_out.layout = a_in.codec_context.layout.name
                video = _VideoSlots(out, v_out, rate, start, end)
                audio = _AudioWindow(a_in, start, end)
                source.seek(int(max(origin, start - SEEK_MARGIN_S) * av.time_base),
                            backward=True)
                for packet in source.demux(v_in, a_in):
                    for frame in packet.decode():
                        if isinstance(frame, av.VideoFrame):
                            video.add(frame)
                        else:
                            audio.add(frame)
                    if video.done and audio.done:
                        break
                if not video.inside:
                    raise ClipCutError(f"no video frames in {start_ms}-{end_ms} ms")
                if audio.filled == 0:
                    raise ClipCutError(f"no audio samples in {start_ms}-{end_ms} ms")
                video.finish()
                audio.encode(out, a_out)
                written = float(video.written / video.rate)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return written


def copy_clip(src: str | Path, dest: str | Path, move: bool = False) -> None:
    """Copy (or move) an already-cut clip to ``dest`` through a temporary name.

    Args:
        src: the existing clip.
        dest: where it goes; parent folders are created.
        move: move instead of copy (the source is gone afterwards).
    """
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(dest)
    try:
        if move:
            shutil.move(src, partial)
        else:
            shutil.copy2(src, partial)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def execute_job(job: ClipJob, move: bool = False) -> ClipResult:
    """Carry out one job; failures are returned as a "failed" result, never raised.

    Args:
        job: the job.
        move: for "copy" jobs, move the already-cut clip instead of copying it.
    """
    if job.action == "missing":
        return ClipResult(job, "missing", job.reason)
    if job.action == "existing":
        return ClipResult(job, "existing")
    assert job.src is not None and job.dest is not None
    try:
        if job.action == "copy":
            copy_clip(job.src, job.dest, move=move)
            return ClipResult(job, "copied")
        assert job.start_ms is not None and job.end_ms is not None
        written = cut_clip(job.src, job.dest, job.start_ms, job.end_ms)
    except (ClipCutError, av.FFmpegError, OSError, ValueError) as err:
        reason = f"{type(err).__name__}: {err}"
        if str(job.src) not in reason:  # FFmpeg errors name the file already, others do not
            reason = f"{reason} ({job.src})"
        return ClipResult(job, "failed", reason)
    wanted = (job.end_ms - job.start_ms) / 1000
    if written < wanted - 0.1:
        note = f"source ends early: {written:.2f} s of {wanted:.2f} s"
        log.warning("%s: %s", job.dest, note)
        return ClipResult(job, "cut", note)
    return ClipResult(job, "cut")


def _move_flags(jobs: Sequence[ClipJob], move: bool) -> list[bool]:
    """Which jobs may move their source: only the last copy of a file, and none a cut reads."""
    if not move:
        return [False] * len(jobs)
    cut_sources = {job.src for job in jobs if job.action == "cut"}
    last_copy = {job.src: i for i, job in enumerate(jobs) if job.action == "copy"}
    return [job.action == "copy" and last_copy[job.src] == i and job.src not in cut_sources
            for i, job in enumerate(jobs)]


def run_jobs(
    jobs: Sequence[ClipJob], workers: int = 1, move: bool = False, progress: bool = True
) -> list[ClipResult]:
    """Carry out all jobs, cutting in ``workers`` processes; results come back in job order.

    Copies and moves are run in this process (they are I/O bound and a move must not race with
    another job reading the same file); cuts go to a process pool when ``workers > 1``. A crashed
    worker turns its unfinished jobs into "failed" results. With ``move``, a clip that several
    jobs copy (duplicate rows, one clip under two labels) is copied by all but the last of them,
    which moves it; a file that a cut reads is never moved.

    Args:
        jobs: the jobs, e.g. from :func:`saganet.prep.sms_metadata.plan_sms_jobs`.
        workers: number of cutting processes (1: everything in this process).
        move: move already-cut clips instead of copying them.
        progress: show a tqdm bar.
    """
    results: list[ClipResult | None] = [None] * len(jobs)
    moves = _move_flags(jobs, move)
    bar = progress_bar(total=len(jobs), desc="clips", unit="clip", disable=not progress)
    pooled = [i for i, job in enumerate(jobs) if job.action == "cut"] if workers > 1 else []
    if pooled:
        # spawn: forking a process that holds threads (tqdm, HTTP, PyAV) can deadlock the child.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures: dict[Future[ClipResult], int] = {
                pool.submit(execute_job, jobs[i]): i for i in pooled
            }
            for i, job in enumerate(jobs):
                if job.action != "cut":
                    results[i] = execute_job(job, moves[i])
                    bar.update()
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except BrokenProcessPool as err:
                    results[i] = ClipResult(jobs[i], "failed", f"worker process died: {err}")
                bar.update()
    else:
        for i, job in enumerate(jobs):
            results[i] = execute_job(job, moves[i])
            bar.update()
    bar.close()
    done = [r for r in results if r is not None]
    assert len(done) == len(jobs)
    return done


def tally(results: Iterable[ClipResult]) -> dict[tuple[str, str], Counter[str]]:
    """Count results per (source, split) and status; "found" counts clips that had a source.

    Args:
        results: results of :func:`run_jobs`.
    """
    counts: dict[tuple[str, str], Counter[str]] = {}
    for result in results:
        counter = counts.setdefault((result.job.source, result.job.split), Counter())
        counter[result.status] += 1
        counter["rows"] += 1
        if result.status != "missing":
            counter["found"] += 1
    return dict(sorted(counts.items()))


def summary_table(results: Iterable[ClipResult]) -> str:
    """A plain-text table: per source and split, rows, found, cut, copied, existing, missing,
    failed, with a total line.

    Args:
        results: results of :func:`run_jobs`.
    """
    counts = tally(results)
    columns = ["rows", "found", *CLIP_STATUSES]
    total: Counter[str] = Counter()
    for counter in counts.values():
        total.update(counter)
    lines = [(src, split, *(str(c[k]) for k in columns)) for (src, split), c in counts.items()]
    lines.append(("total", "", *(str(total[k]) for k in columns)))
    header = ("source", "split", *columns)
    widths = [max(len(row[j]) for row in [header, *lines]) for j in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if j < 2 else cell.rjust(w)
            for j, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([fmt(header), rule, *(fmt(r) for r in lines[:-1]), rule, fmt(lines[-1])])


def write_missing(results: Iterable[ClipResult], path: str | Path) -> int:
    """Write every missing or failed clip as a TSV (source, split, id, status, reason).

    The file is always written (header only when nothing is missing), so a stale list from an
    earlier run never survives.

    Args:
        results: results of :func:`run_jobs`.
        path: the TSV to write.

    Returns:
        The number of rows written.
    """
    rows = [r for r in results if r.status in ("missing", "failed")]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("source\tsplit\tid\tstatus\treason\n")
        for r in rows:
            cells = (r.job.source, r.job.split, r.job.clip_id, r.status, r.reason)
            f.write("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells) + "\n")
    return len(rows)
