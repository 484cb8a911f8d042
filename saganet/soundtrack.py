"""From files to files: the sound track of one masked object as ``.flac`` (and ``.mp4``).

``demo.py`` and ``python -m saganet.batch`` both go through :func:`write_soundtrack`, so a job
of the batch command gives exactly what the demo gives for the same arguments: the clip's
duration set on the models, :func:`saganet.inference.generate` with a seeded generator, and
outputs written atomically (never half-written, never silently overwritten).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from saganet.inference import GenerationBatch, GenerationResult, SamplingOptions, generate
from saganet.media.output import write_flac, write_video_with_audio
from saganet.media.video import VideoInputs
from saganet.models import SAGANetModels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SoundtrackRequest:
    """What to generate for one clip and where to write it.

    Args:
        video: the source video (its stream is copied into the ``.mp4``).
        flac: the audio output.
        mp4: the video output, or None for audio only.
        prompt: text prompt (None: no text condition).
        negative_prompt: text of the unconditional branch.
        mask_away_clip: drop the CLIP frame features.
        mask_overlay: tint the object in the ``.mp4`` (re-encodes the video).
    """

    video: Path
    flac: Path
    mp4: Path | None = None
    prompt: str | None = None
    negative_prompt: str = ""
    mask_away_clip: bool = False
    mask_overlay: bool = False


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Log how long a stage took (one line per stage, as the demo reports)."""
    start = time.perf_counter()
    yield
    log.info("%-10s %6.2f s", stage, time.perf_counter() - start)


def write_soundtrack(models: SAGANetModels, inputs: VideoInputs, request: SoundtrackRequest, *,
                     options: SamplingOptions, seed: int, overwrite: bool = False,
                     progress: bool = False) -> GenerationResult:
    """Generate the clip's audio and write the requested files.

    Args:
        models: loaded models (any duration; set to the clip's here).
        inputs: the video and mask read by :func:`saganet.media.video.load_video_inputs`.
        request: prompts and outputs.
        options: sampler settings.
        seed: seed of the initial noise (a generator on the models' device).
        overwrite: replace existing outputs.
        progress: show a progress bar over the sampling steps.
    """
    models.set_duration(inputs.duration)
    batch = GenerationBatch(
        sync_frames=inputs.sync_frames[None], masks=inputs.masks[None],
        clip_frames=None if request.mask_away_clip else inputs.clip_frames[None],
        texts=None if request.prompt is None else [request.prompt],
        negative_texts=[request.negative_prompt])
    generator = torch.Generator(device=models.device).manual_seed(seed)
    with timed("generate"):
        result = generate(models, batch, generator=generator, options=options,
                          progress=progress)
    audio = result.audio[0]  # (1, L)
    with timed("write"):
        if request.mp4 is not None:
            write_video_with_audio(request.video, audio, result.sampling_rate, request.mp4,
                                   duration=inputs.duration,
                                   overlay_masks=inputs.masks if request.mask_overlay else None,
                                   overwrite=overwrite)
        # The .flac comes last: its presence marks a finished job (the batch command resumes).
        write_flac(request.flac, audio, result.sampling_rate, overwrite=overwrite)
    return result
