"""Driving a SAM 2 video session over a streamed video with bounded memory.

``transformers``' ``Sam2VideoInferenceSession`` keeps, unless told otherwise, every frame as
float32 at the model's resolution (12 MiB a frame at 1024²) and every frame's outputs (a
1024² mask, memory features, ...) for every object. The model reads only a few of them:

* the current frame (its vision features are cached for one frame);
* each object's conditioning frames (the prompted ones; all of them, as ``max_cond_frame_num``
  is -1 for SAM 2.1);
* the outputs of the ``num_maskmem - 1`` frames before the current one in the direction of
  travel (memory features) and of the ``max_object_pointers_in_encoder - 1`` frames before it
  (object pointers).

So frames go into the session one at a time (:class:`OneFrame` stands in for the frame dict
and still reports the video's length, which the model reads), and after each frame the outputs
beyond that window are dropped, as are the full-resolution masks that only the memory encoder
of their own frame uses. Memory then depends on the number of objects and prompts, not on the
video's length; results are those of a session holding the whole video (a test checks this).

Order of work, as SAM 2's own video predictor does it: every prompt is added on its frame
(frames in time order, all objects prompted on a frame together), then the video is tracked
forwards from the earliest prompt to the end, then backwards from just before it to the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from saganet.segment.grid import VideoGrid, read_slots
from saganet.segment.models import Segmenter

logger = logging.getLogger(__name__)

# Called with (slot, {object id: (H, W) bool mask}) for every tracked slot.
MaskSink = Callable[[int, dict[int, torch.Tensor]], None]


@dataclass(frozen=True)
class SlotPrompt:
    """What one object is given on one slot, in pixels of the upright frame.

    Args:
        points: ``[[x, y], ...]`` clicks.
        labels: 1 (object) or 0 (background) per click.
        box: ``[x0, y0, x1, y1]`` or None.
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None


class OneFrame(dict):
    """The session's frame store holding only the current frame, with the video's length.

    The model asks the store for the current frame and for ``len()`` (the number of frames,
    which bounds its object-pointer window); nothing else.
    """

    def __init__(self, num_frames: int) -> None:
        super().__init__()
        self.num_frames = num_frames

    def __setitem__(self, frame_idx: int, pixels: torch.Tensor) -> None:
        self.clear()
        super().__setitem__(frame_idx, pixels)

    def __len__(self) -> int:
        return self.num_frames


class FramePreprocessor:
    """RGB frames -> the model's input, in two steps so a resized frame can be kept small.

    ``resize`` gives uint8 ``(3, S, S)`` (S the model's input side), ``normalize`` the float
    input; together they are exactly the processor's own preprocessing of the frame.

    Args:
        segmenter: the loaded model and processor.
    """

    def __init__(self, segmenter: Segmenter) -> None:
        self.video_processor = segmenter.processor.video_processor
        self.device = segmenter.device

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        frame = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # (1, 3, H, W)
        out = self.video_processor(videos=[frame], do_rescale=False, do_normalize=False,
                                   return_tensors="pt")
        return out.pixel_values_videos[0, 0].to(torch.uint8).numpy()  # (3, S, S)

    def normalize(self, resized: np.ndarray) -> torch.Tensor:
        frame = torch.from_numpy(resized)[None]  # (1, 3, S, S)
        out = self.video_processor(videos=[frame], do_resize=False, return_tensors="pt")
        return out.pixel_values_videos[0, 0].to(self.device)  # (3, S, S) float32


def memory_window(config) -> int:
    """How many frames back (in the direction of travel) the model reads outputs from."""
    return max(config.num_maskmem - 1, config.max_object_pointers_in_encoder - 1, 1)


def prune_outputs(session, frame_idx: int, reverse: bool, window: int, keep: range) -> None:
    """Drop per-frame state the model will not read again (module docstring)."""
    for obj_idx, outputs in session.output_dict_per_obj.items():
        stale = [f for f in outputs["non_cond_frame_outputs"]
                 if (f > frame_idx + window if reverse else f < frame_idx - window)
                 and f not in keep]
        for f in stale:
            del outputs["non_cond_frame_outputs"][f]
            session.frames_tracked_per_obj[obj_idx].pop(f, None)
        for storage in ("cond_frame_outputs", "non_cond_frame_outputs"):
            for out in outputs[storage].values():
                out.pop("high_res_masks", None)


class Sam2Tracker:
    """Tracks prompted objects through slots ``first .. stop - 1`` of a video.

    Args:
        segmenter: a loaded SAM 2 video model.
        grid: the video on the 25 fps grid.
        first: first slot tracked.
        stop: one past the last slot tracked.
    """

    def __init__(self, segmenter: Segmenter, grid: VideoGrid, first: int, stop: int) -> None:
        from transformers import Sam2VideoInferenceSession

        self.segmenter = segmenter
        self.grid = grid
        self.first = first
        self.stop = stop
        self.preprocess = FramePreprocessor(segmenter)
        info = grid.index.info
        self.size = (info.height, info.width)
        device = segmenter.device
        self.session = Sam2VideoInferenceSession(
            video_height=info.height, video_width=info.width, inference_device=device,
            inference_state_device=device, video_storage_device=device, dtype=torch.float32,
            max_vision_features_cache_size=1)
        self.session.processed_frames = OneFrame(stop - first)
        self.window = memory_window(segmenter.model.config)

    def _frame_idx(self, slot: int) -> int:
        return slot - self.first

    def _run(self, slot: int, resized: np.ndarray, reverse: bool) -> dict[int, torch.Tensor]:
        """Run the model on one slot; full-size masks per object id."""
        frame_idx = self._frame_idx(slot)
        self.session.processed_frames[frame_idx] = self.preprocess.normalize(resized)
        with torch.inference_mode():
            out = self.segmenter.model(inference_session=self.session, frame_idx=frame_idx,
                                       reverse=reverse)
            masks = self.segmenter.processor.post_process_masks(
                [out.pred_masks], original_sizes=[list(self.size)], binarize=True)[0]
        return {obj_id: masks[index, 0] for index, obj_id in enumerate(out.object_ids)}

    def add_prompts(self, prompts: Mapping[int, Mapping[int, SlotPrompt]]) -> None:
        """Give the model every prompt: ``{slot: {object id: prompt}}``.

        Slots go in time order, all objects prompted on a slot at once, so that each prompt is
        a conditioning frame of its object. What the model says about the other objects on
        those slots is dropped: tracking recomputes it with the full memory.
        """
        processor = self.segmenter.processor
        frames = read_slots(self.grid, list(prompts), self.preprocess.resize)
        for slot in sorted(prompts):
            frame_idx = self._frame_idx(slot)
            for obj_id, prompt in prompts[slot].items():
                processor.add_inputs_to_inference_session(
                    self.session, frame_idx=frame_idx, obj_ids=obj_id,
                    input_points=[[list(map(list, prompt.points))]] if prompt.points else None,
                    input_labels=[[list(prompt.labels)]] if prompt.points else None,
                    input_boxes=[[list(prompt.box)]] if prompt.box is not None else None,
                    original_size=self.size)
            self.session.obj_with_new_inputs = list(prompts[slot])
            self._run(slot, frames.pop(slot), reverse=False)
        for obj_idx, outputs in self.session.output_dict_per_obj.items():
            outputs["non_cond_frame_outputs"].clear()
            self.session.frames_tracked_per_obj[obj_idx].clear()

    def track(self, sink: MaskSink, progress: Callable[[int], None] | None = None) -> None:
        """Track forwards from the earliest prompt, then backwards to ``first``.

        Args:
            sink: receives each slot's masks (object id -> ``(H, W)`` bool).
            progress: called with 1 after each slot.
        """
        starts = [f for out in self.session.output_dict_per_obj.values()
                  for f in out["cond_frame_outputs"]]
        start = self.first + min(starts)
        # The reverse pass reads the forward pass's first outputs past the earliest prompt.
        keep = range(start - self.first, start - self.first + self.window + 1)
        passes: Sequence[tuple[Iterator[tuple[int, np.ndarray]], bool]] = (
            (self.grid.forward(start, self.stop, self.preprocess.resize), False),
            (self.grid.backward(self.first, start, self.preprocess.resize), True))
        for frames, reverse in passes:
            for slot, resized in frames:
                sink(slot, self._run(slot, resized, reverse))
                prune_outputs(self.session, self._frame_idx(slot), reverse, self.window, keep)
                if progress is not None:
                    progress(1)
