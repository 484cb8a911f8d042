"""CLIP first: every CLIP feature of a soundtrack, computed before the other models load.

CLIP ViT-H/14 holds 3.7 GB of fp32 weights, more than the flow network, the Synchformer and
the codec together (2.5 GB). A one-shot run (``demo.py``) loads CLIP alone, encodes each
window's frames and each object's prompts here, releases CLIP and only then loads the other
models (``load_models(need_clip=False)``), which pass these features to
:func:`~saganet.soundtrack.write_soundtrack`. The peak memory is then the larger of the two
halves instead of their sum; the video is decoded twice, which costs little next to CLIP.
The features are those the renderer would compute window by window, so the audio is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from saganet.inference import SamplingOptions
from saganet.media.windows import read_windows
from saganet.soundtrack.plan import WindowPlan
from saganet.soundtrack.render import ProgressFn, Segment, visible_objects, window_start
from saganet.soundtrack.request import SoundtrackRequest
from saganet.soundtrack.window_images import WindowImageEncoder

if TYPE_CHECKING:
    # Only named in annotations: importing it imports open_clip (seconds).
    from saganet.features.clip import ClipEncoder


@dataclass
class ClipFeatures:
    """What CLIP contributes to one soundtrack request.

    Args:
        starts: the windows' starts (seconds of the video) the images were encoded for.
        window_duration: seconds per window.
        images: per window, ``(1, Tc, clip_dim)`` image features; None where no object
            sounds or the request masks CLIP away.
        prompts: per object, its prompt's ``(1, 77, text_dim)`` features (None: no prompt).
        negative_prompts: per object, its negative prompt's features.
    """

    starts: list[float]
    window_duration: float
    images: list[torch.Tensor | None]
    prompts: list[torch.Tensor | None]
    negative_prompts: list[torch.Tensor]

    def check_plan(self, segment: Segment, plan: WindowPlan) -> None:
        """Raise ``ValueError`` unless these features were computed for ``plan``'s windows."""
        starts = [window_start(segment, w) for w in plan.windows]
        if starts != self.starts or plan.window_duration != self.window_duration:
            raise ValueError(f"CLIP features computed for {len(self.starts)} window(s) of "
                             f"{self.window_duration:g} s, not for this plan's {len(starts)} "
                             f"of {plan.window_duration:g} s")


@torch.inference_mode()
def encode_clip_features(clip: ClipEncoder, request: SoundtrackRequest, segment: Segment,
                         plan: WindowPlan, *, options: SamplingOptions | None = None,
                         progress: ProgressFn | None = None) -> ClipFeatures:
    """Encode every window's CLIP frames and every object's prompts.

    Args:
        clip: the CLIP encoder (released by the caller afterwards).
        request: what will be generated.
        segment: from :func:`~saganet.soundtrack.resolve_segment`.
        plan: from :func:`~saganet.soundtrack.plan_soundtrack`, with the models' layout.
        options: sampler settings (``clip_chunk_size``).
        progress: called as ``progress("clip", done, windows)``.
    """
    options = options or SamplingOptions()
    progress = progress or (lambda stage, done, total: None)
    starts = [window_start(segment, w) for w in plan.windows]
    images: list[torch.Tensor | None] = [None] * len(plan.windows)
    if not request.mask_away_clip:
        progress("clip", 0, len(plan.windows))
        encoder = WindowImageEncoder(clip, options.clip_chunk_size)
        for frames in read_windows(request.video, starts, plan.window_duration):
            window = plan.windows[frames.index]
            present, _ = visible_objects(request, segment, plan, window)
            if present:
                images[window.index] = encoder(frames)
            progress("clip", frames.index + 1, len(plan.windows))
    prompts = [None if o.prompt is None else clip.encode_text([o.prompt])
               for o in request.objects]
    negatives = [clip.encode_text([request.negative_prompt(o)]) for o in request.objects]
    return ClipFeatures(starts, plan.window_duration, images, prompts, negatives)
