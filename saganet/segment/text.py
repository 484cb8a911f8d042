"""Driving a SAM 3 video session: objects named by a phrase, with bounded memory.

SAM 3 looks for every phrase in every frame (its detector) and tracks what it finds (its SAM 2
style tracker), so a phrase has no time and one forward pass over the tracked range finds it
wherever it is. A phrase may match several instances ("violin" with two violins): the object's
mask is their union, since they are what the user named.

As for SAM 2 (:mod:`saganet.segment.session`), frames go into the session one at a time and
per-frame state the model no longer reads is dropped after each frame: tracker outputs beyond
the memory window, and the per-frame score and suppression records. Unlike ``transformers``,
which keeps every frame a detection re-conditioned (every 16th frame) as a conditioning frame,
only the ``max_cond_frame_num`` most recent are kept: those are the ones its memory attention
selects, and keeping all would grow with the video. Outputs are held back for SAM 3's
``hotstart_delay`` frames, as ``propagate_in_video_iterator`` does, so that detections it
removes in that period never show.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

import torch

from saganet.segment.grid import VideoGrid
from saganet.segment.models import Segmenter
from saganet.segment.prompts import ObjectPrompt
from saganet.segment.session import (
    FramePreprocessor,
    MaskSink,
    OneFrame,
    memory_window,
    prune_outputs,
)


def _prune_sam3(session, frame_idx: int, window: int, max_cond: int) -> None:
    prune_outputs(session, frame_idx, reverse=False, window=window, keep=range(0))
    if max_cond > 0:
        for outputs in session.output_dict_per_obj.values():
            cond = outputs["cond_frame_outputs"]
            for f in sorted(cond)[:-max_cond]:
                del cond[f]
    # Per-frame records: only the current frame's are read again.
    for records in (session.obj_id_to_tracker_score_frame_wise, session.suppressed_obj_ids):
        for f in [f for f in records if f < frame_idx]:
            del records[f]


def track_phrases(segmenter: Segmenter, grid: VideoGrid, objects: Mapping[int, ObjectPrompt],
                  first: int, stop: int, sink: MaskSink,
                  progress: Callable[[int], None] | None = None) -> None:
    """Track the objects named by phrases through slots ``first .. stop - 1``.

    Args:
        segmenter: a loaded SAM 3 video model.
        grid: the video on the 25 fps grid.
        objects: object id -> its prompt (with ``text``).
        first: first slot.
        stop: one past the last slot.
        sink: receives each slot's masks (object id -> ``(H, W)`` bool, the union of the
            instances its phrase matched).
        progress: called with 1 after each slot.
    """
    model, processor = segmenter.model, segmenter.processor
    info = grid.index.info
    size = (info.height, info.width)
    device = segmenter.device
    session = processor.init_video_session(inference_device=device,
                                           inference_state_device=device,
                                           video_storage_device=device)
    session.video_height, session.video_width = size
    session.processed_frames = OneFrame(stop - first)
    for obj in objects.values():
        processor.add_text_prompt(session, obj.text)
    preprocess = FramePreprocessor(segmenter)
    tracker_config = model.config.tracker_config
    window = max(memory_window(tracker_config), model.config.hotstart_delay)
    delay = max(model.config.hotstart_delay, 0)
    pending: deque[tuple[int, object]] = deque()

    def emit(slot: int, out) -> None:
        result = processor.postprocess_outputs(session, out, original_sizes=[list(size)])
        by_phrase = result["prompt_to_obj_ids"]
        ids = result["object_ids"].tolist()
        masks: dict[int, torch.Tensor] = {}
        for obj_id, obj in objects.items():
            union = torch.zeros(size, dtype=torch.bool)
            for instance in by_phrase.get(obj.text, []):
                union |= result["masks"][ids.index(instance)].cpu()
            masks[obj_id] = union
        sink(slot, masks)

    for slot, resized in grid.forward(first, stop, preprocess.resize):
        frame_idx = slot - first
        session.processed_frames[frame_idx] = preprocess.normalize(resized)
        with torch.inference_mode():
            out = model(inference_session=session, frame_idx=frame_idx)
        session.hotstart_removed_obj_ids.update(out.removed_obj_ids)
        pending.append((slot, out))
        while pending and len(pending) >= delay:
            emit(*pending.popleft())
        _prune_sam3(session, frame_idx, window, tracker_config.max_cond_frame_num)
        if progress is not None:
            progress(1)
    while pending:
        emit(*pending.popleft())
