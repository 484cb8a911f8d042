"""``track_objects``: the one entry point that turns prompts into tracked masks.

The demo, the web app, the batch command and ``python -m saganet.segment`` all call
:func:`track_objects`. It checks every prompt against the video (inside the frame, before the
end, inside the tracked range) before loading any model, tracks all click/box objects in one
SAM 2 session and all phrase objects in one SAM 3 session, and returns a :class:`Tracking`
whose objects are :class:`~saganet.media.masks.MaskSource` s the generation path reads
directly, and which writes lossless mask videos and a preview.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from saganet.cancel import CancelToken
from saganet.dist import resolve_device
from saganet.errors import UserInputError, check_time_range
from saganet.media.video import PathLike, VideoInfo
from saganet.progress import progress_bar
from saganet.segment.grid import GRID_FPS, GridIndex, VideoGrid, frames_in, slot_of_time
from saganet.segment.models import DEFAULT_MODEL, SegmenterCache, sam2_folder, sam3_folder
from saganet.segment.prompts import ObjectPrompt, PromptTime, check_unique_names, prompt_flags
from saganet.segment.session import Sam2Tracker, SlotPrompt
from saganet.segment.store import Span, TrackedMasks
from saganet.weights.registry import SAM3_REPO

logger = logging.getLogger(__name__)


@dataclass
class Tracking:
    """The result of :func:`track_objects`.

    Args:
        video: the tracked video.
        info: its metadata (upright size).
        objects: object name -> its masks on the 25 fps grid (a ``MaskSource``).
        first: first slot tracked (earlier slots hold empty masks).
        stop: one past the last slot tracked.
        grid: the video's scanned grid (reused by :meth:`write_preview`).
    """

    video: Path
    info: VideoInfo
    objects: dict[str, TrackedMasks]
    first: int
    stop: int
    grid: VideoGrid | None = None

    def spans(self, name: str) -> list[Span]:
        """Where object ``name`` is visible, in seconds."""
        return self.objects[name].spans()

    def lost(self, name: str) -> float:
        """Seconds of the tracked range in which object ``name`` is not visible."""
        visible = self.objects[name].visible[self.first:self.stop]
        return float((~visible).sum()) / GRID_FPS

    def summary(self) -> list[str]:
        """One line per object: where it is visible and for how long it is lost."""
        lines = []
        for name in self.objects:
            spans = ", ".join(f"{s.start:.2f}-{s.end:.2f} s" for s in self.spans(name))
            lost = self.lost(name)
            lines.append(f"{name}: visible {spans}" + (f"; lost for {lost:.2f} s" if lost else ""))
        return lines

    def write_mask_video(self, name: str, path: PathLike, overwrite: bool = False) -> Path:
        """Write object ``name``'s masks as a lossless mask video (see
        :func:`saganet.segment.writers.write_mask_video`)."""
        from saganet.segment.writers import write_mask_video

        return write_mask_video(self.objects[name], path, overwrite=overwrite)

    def write_preview(self, path: PathLike, overwrite: bool = False) -> Path:
        """Write the tracked range with every object tinted in its own colour (see
        :func:`saganet.segment.writers.write_preview`)."""
        from saganet.segment.writers import write_preview

        grid = self.grid if self.grid is not None else VideoGrid(self.video)
        return write_preview(grid, list(self.objects.values()), path, self.first, self.stop,
                             overwrite=overwrite)


def _slot(index: GridIndex, time: PromptTime, what: str, first: int, stop: int) -> int:
    """The grid slot a prompt applies to; errors for times outside the video or the range."""
    if time.frame is not None:
        if time.frame >= index.num_frames:
            raise UserInputError(f"{what} is at frame {time.frame}, past the end of the video "
                                 f"({index.num_frames} frames)", index.info.path)
        slot = index.frame_slots[time.frame]
    else:
        slot = slot_of_time(index, time.seconds)
        if slot is None:
            raise UserInputError(f"{what} is at {time.seconds:g} s, past the end of the video "
                                 f"({index.duration:.3f} s)", index.info.path)
    if not first <= slot < stop:
        raise UserInputError(f"{what} at {time} is outside the tracked range "
                             f"{first / GRID_FPS:g}-{stop / GRID_FPS:g} s", index.info.path)
    return slot


def _check_inside(index: GridIndex, what: str, xs: Sequence[float], ys: Sequence[float]) -> None:
    width, height = index.info.width, index.info.height
    if not all(0 <= x <= width for x in xs) or not all(0 <= y <= height for y in ys):
        raise UserInputError(f"{what} is outside the {width}x{height} frame (x from 0 to "
                             f"{width}, y from 0 to {height}, in upright pixels)",
                             index.info.path)


def slot_prompts(objects: Sequence[ObjectPrompt], index: GridIndex, first: int,
                 stop: int) -> dict[int, dict[int, SlotPrompt]]:
    """``{slot: {object id: prompt}}`` of the click/box objects (id = position in
    ``objects``), checked against the video.

    Args:
        objects: the objects.
        index: the video's grid.
        first: first slot tracked.
        stop: one past the last slot tracked.

    Raises:
        UserInputError: a prompt outside the frame, past the end, outside the tracked range, or
            two boxes of one object on one slot.
    """
    by_slot: dict[int, dict[int, SlotPrompt]] = {}
    for obj_id, obj in enumerate(objects):
        if obj.text is not None:
            continue
        for box in obj.boxes:
            what = f"object {obj.name}: box {box.x0:g},{box.y0:g},{box.x1:g},{box.y1:g}"
            _check_inside(index, what, (box.x0, box.x1), (box.y0, box.y1))
            slot = _slot(index, box.time, what, first, stop)
            if by_slot.get(slot, {}).get(obj_id) is not None:
                raise UserInputError(f"object {obj.name}: two boxes on the same frame (slot "
                                     f"{slot / GRID_FPS:g} s); give one box per time")
            by_slot.setdefault(slot, {})[obj_id] = SlotPrompt(
                box=(box.x0, box.y0, box.x1, box.y1))
        for point in obj.points:
            kind = "click" if point.positive else "negative click"
            what = f"object {obj.name}: {kind} {point.x:g},{point.y:g}"
            _check_inside(index, what, (point.x,), (point.y,))
            slot = _slot(index, point.time, what, first, stop)
            old = by_slot.setdefault(slot, {}).get(obj_id, SlotPrompt())
            by_slot[slot][obj_id] = SlotPrompt((*old.points, (point.x, point.y)),
                                               (*old.labels, int(point.positive)), old.box)
    return by_slot


def _tracked_range(index: GridIndex, start: float, end: float | None) -> tuple[int, int]:
    # Checked here, not left to the slot arithmetic: an exact fraction of inf or nan fails.
    start = check_time_range(start, end)[0]
    end = None if end is None else float(end)  # the given end: start + length may round off it
    first = frames_in(start)
    stop = index.num_slots if end is None else min(index.num_slots, frames_in(end))
    if first >= index.num_slots:
        raise UserInputError(f"start {start:g} s is past the end of the video "
                             f"({index.duration:.3f} s)", index.info.path)
    if stop <= first:
        raise UserInputError(f"the tracked range {start:g}-{end:g} s holds no frame")
    return first, stop


def _model_name(obj: ObjectPrompt, model: str | os.PathLike[str],
                text_model: str | os.PathLike[str] | None) -> str:
    """The model that tracks ``obj``, by its size, hub name or folder name: never a folder's
    path, as results that record it may be shared."""
    if obj.text is None:
        return Path(model).name
    return SAM3_REPO if text_model is None else Path(text_model).name


def track_objects(video: PathLike, objects: Sequence[ObjectPrompt], *,
                  model: str | os.PathLike[str] = DEFAULT_MODEL,
                  text_model: str | os.PathLike[str] | None = None,
                  weights_dir: str | os.PathLike[str] | None = None,
                  offline: bool | None = None, device: str = "cpu", start: float = 0.0,
                  end: float | None = None, progress: bool = False,
                  on_progress: Callable[[int, int], None] | None = None,
                  models: SegmenterCache | None = None,
                  cancel: CancelToken | None = None) -> Tracking:
    """Track the objects the user pointed at through the video, on its 25 fps grid.

    Objects given by clicks and boxes are tracked together in one SAM 2.1 session (forwards
    from the earliest prompt, then backwards), objects given by a phrase together in one SAM 3
    session. Frames are streamed: memory does not grow with the video's length.

    Args:
        video: the video file.
        objects: what to track; names must differ.
        model: SAM 2.1 size (``tiny``, ``small``, ``base-plus``, ``large``) or a local folder.
        text_model: a local SAM 3 folder; None: the cache's ``facebook/sam3`` (never
            downloaded here: it is gated).
        weights_dir: cache folder (see :func:`saganet.weights.cache_dir`).
        offline: forbid downloads; None reads ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``.
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
        start: seconds of the video to skip (their masks are empty).
        end: seconds to stop at (None: the end of the video).
        progress: show a progress bar while tracking.
        on_progress: called as ``on_progress(done, total)`` after each tracked frame (``total``
            counts every pass: one per model used), e.g. for a progress bar in a web page.
        models: keep loaded models here and reuse them (None: load them for this call).
        cancel: stops the tracking once cancelled, before the models load and after each
            tracked frame (tracking writes no file, so nothing is left behind).

    Raises:
        UserInputError: unreadable video, a prompt outside the frame or past the end, no SAM 3
            for a phrase, missing weights offline, an unknown device or one this machine
            lacks, or an object found in no frame.
        CancelledError: ``cancel`` was cancelled before the tracking ended.
    """
    objects = list(objects)
    check_unique_names(objects)
    # Checked first: a typo or a missing GPU is found before the video is scanned.
    device = resolve_device(device)
    grid = VideoGrid(video)
    index = grid.scan()
    first, stop = _tracked_range(index, start, end)
    prompts = slot_prompts(objects, index, first, stop)
    text_objects = {obj_id: obj for obj_id, obj in enumerate(objects) if obj.text is not None}
    # Every model is located before any is loaded, so a missing one fails before work starts.
    sam2_path = sam2_folder(model, weights_dir, offline) if prompts else None
    sam3_path = sam3_folder(text_model, weights_dir) if text_objects else None

    info = index.info
    stores = [TrackedMasks(obj.name, info.height, info.width) for obj in objects]
    for obj, store in zip(objects, stores, strict=True):
        store.origin = {**prompt_flags(obj), "segment_model": _model_name(obj, model,
                                                                          text_model)}

    def sink(slot: int, masks: dict) -> None:
        for obj_id, mask in masks.items():
            stores[obj_id].set(slot, mask)

    models = models if models is not None else SegmenterCache()
    if cancel is not None:
        cancel.check()
    sam2 = models.sam2(sam2_path, device) if sam2_path is not None else None
    sam3 = models.sam3(sam3_path, device) if sam3_path is not None else None
    passes = int(sam2 is not None) + int(sam3 is not None)
    total = passes * (stop - first)
    done = 0
    with progress_bar(total=total, desc="tracking", unit="frame", disable=not progress) as bar:

        def step(count: int) -> None:
            nonlocal done
            if cancel is not None:
                cancel.check()
            done += count
            bar.update(count)
            if on_progress is not None:
                on_progress(done, total)

        if sam2 is not None:
            tracker = Sam2Tracker(sam2, grid, first, stop)
            tracker.add_prompts(prompts)
            tracker.track(sink, step)
        if sam3 is not None:
            from saganet.segment.text import track_phrases

            track_phrases(sam3, grid, text_objects, first, stop, sink, step)
    for store in stores:
        store.extend_to(stop)
    missing = [obj for obj, store in zip(objects, stores, strict=True)
               if not store.visible.any()]
    if missing:
        # What to try next depends on how the object was pointed at.
        hint = ("another phrase, or a click or a box" if all(o.text is not None for o in missing)
                else "another click, a box or a larger model")
        raise UserInputError(f"object(s) {', '.join(o.name for o in missing)} not found in any "
                             f"frame: try {hint}", video)
    tracking = Tracking(Path(video), info, {store.name: store for store in stores}, first, stop,
                        grid)
    # Debug only: each caller reports it in its own way (the demo's log, the segment command's
    # stdout, the app's page), and an info line here showed every object twice.
    for line in tracking.summary():
        logger.debug("%s", line)
    return tracking
