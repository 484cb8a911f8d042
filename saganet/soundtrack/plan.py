"""Covering a video of any length with windows of the model's training duration.

SAGANet was trained on 5-second clips, so a longer video is cut into overlapping windows of
that length; a shorter one is a single window of its own length. Window starts lie on the
25 fps grid of the Synchformer frames (relative to the segment's start), spread evenly so that
the first window starts at the segment's start, the last one ends at its end, and neighbours
overlap by at least the requested overlap.

Audio lives on the latent grid (one latent per 1024 samples at 44.1 kHz), which the 25 fps
grid does not divide: each window's latents start at the latent nearest to its video start, so
a window's audio sits at most half a latent (11.6 ms) from its video, and overlapping windows
share whole latents (which joint sampling needs).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from saganet.errors import UserInputError, check_seconds
from saganet.model.sequence import SYNC_FPS, SYNC_SEGMENT_FRAMES, SequenceConfig


@dataclass(frozen=True)
class Window:
    """One window of a plan.

    Args:
        index: position in the plan.
        first_frame: first 25 fps frame, counted from the segment's start.
        latent_offset: first latent on the segment's latent grid.
    """

    index: int
    first_frame: int
    latent_offset: int

    @property
    def offset(self) -> float:
        """Seconds from the segment's start to the window's first frame."""
        return self.first_frame / SYNC_FPS


@dataclass(frozen=True)
class WindowPlan:
    """Windows covering ``duration`` seconds of audio.

    Args:
        duration: seconds of audio to produce (the segment's length).
        window_duration: seconds of video per window (the model's sequence duration).
        windows: the windows, in time order.
        sequence: token counts of one window (``latent_seq_len`` latents each).
        samples_per_latent: waveform samples per latent.
    """

    duration: float
    window_duration: float
    windows: tuple[Window, ...]
    sequence: SequenceConfig
    samples_per_latent: int

    @property
    def sampling_rate(self) -> int:
        return self.sequence.sampling_rate

    @property
    def window_latents(self) -> int:
        return self.sequence.latent_seq_len

    @property
    def num_latents(self) -> int:
        """Latents of the whole segment (the last window's end)."""
        return self.windows[-1].latent_offset + self.window_latents

    @property
    def num_samples(self) -> int:
        """Samples of the audio written for the segment: exactly its duration."""
        return round(self.duration * self.sampling_rate)

    def latent_span(self, window: Window) -> slice:
        """The window's latents on the segment's latent grid."""
        return slice(window.latent_offset, window.latent_offset + self.window_latents)

    def sample_span(self, window: Window) -> slice:
        """The window's decoded samples on the segment's sample grid (may pass the end)."""
        start = window.latent_offset * self.samples_per_latent
        return slice(start, start + self.window_latents * self.samples_per_latent)


def check_long_enough(duration: float, *, start: float | None = None,
                      source: str | os.PathLike | None = None) -> None:
    """Refuse ``duration`` seconds (from ``start``, named in the message when given) shorter
    than one Synchformer window: the least any model generates for.

    Raises:
        UserInputError: the duration is too short, naming ``source``.
    """
    # Rounded as resolve_segment rounds a part: an end minus a start in floats can fall a
    # hair below the frame grid (5.0 - 4.36).
    if int(round(duration, 9) * SYNC_FPS) < SYNC_SEGMENT_FRAMES:
        where = "" if start is None else f" from {start:g} s"
        raise UserInputError(f"{duration:.3f} s{where} is too short: need at least "
                             f"{SYNC_SEGMENT_FRAMES / SYNC_FPS:.2f} s (one Synchformer window)",
                             source)


def plan_windows(duration: float, sequence: SequenceConfig, samples_per_latent: int, *,
                 overlap: float = 1.0, source: str | os.PathLike | None = None) -> WindowPlan:
    """Windows of ``sequence.duration`` seconds covering ``duration`` seconds.

    Args:
        duration: seconds of video (and audio) to cover; at least one Synchformer window.
        sequence: the model's training sequence (its duration is the window length).
        samples_per_latent: waveform samples per latent of the codec.
        overlap: least overlap between neighbouring windows, in seconds (less than half a
            window, so that at most two windows meet anywhere unless the video is barely
            longer than one window).
        source: the video the seconds come from, named by the error for too short a
            duration (the usual cause is the file, not a flag).

    Raises:
        UserInputError: a duration below one Synchformer window, or an overlap that does not
            fit.
    """
    duration = check_seconds(duration, "duration", positive=True)
    check_long_enough(duration, source=source)
    window_frames = round(sequence.duration * SYNC_FPS)
    if not 0 <= overlap < sequence.duration / 2:
        raise UserInputError(f"overlap must be at least 0 and below half a window "
                             f"({sequence.duration / 2:g} s), got {overlap}")
    # Frames of the segment on the 25 fps grid (a partial last frame counts).
    total_frames = math.ceil(duration * SYNC_FPS - 1e-6)
    if total_frames <= window_frames:
        window = sequence.with_duration(duration)
        return WindowPlan(duration, duration, (Window(0, 0, 0),), window, samples_per_latent)
    overlap_frames = round(overlap * SYNC_FPS)
    count = math.ceil((total_frames - overlap_frames) / (window_frames - overlap_frames))
    count = max(count, 2)
    span = total_frames - window_frames
    firsts = [round(i * span / (count - 1)) for i in range(count)]
    latents_per_frame = sequence.sampling_rate / SYNC_FPS / samples_per_latent
    offsets = [round(f * latents_per_frame) for f in firsts]
    # The last window must reach the end of the audio: never start its latents too early.
    needed = math.ceil(round(duration * sequence.sampling_rate) / samples_per_latent)
    offsets[-1] = max(offsets[-1], needed - sequence.latent_seq_len)
    windows = tuple(Window(i, f, o) for i, (f, o) in enumerate(zip(firsts, offsets, strict=True)))
    return WindowPlan(duration, sequence.duration, windows, sequence, samples_per_latent)
