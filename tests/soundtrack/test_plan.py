"""Window plans: coverage, overlaps, the 25 fps grid and the latent grid, for any length."""

from __future__ import annotations

import itertools
import math

import pytest

from saganet.errors import UserInputError
from saganet.model import CONFIG_44K_SA
from saganet.model.sequence import SYNC_FPS
from saganet.soundtrack.plan import plan_windows

SAMPLES_PER_LATENT = 1024
LENGTHS = [0.7, 5.0, 5.1, 12.3, 61.0]


@pytest.mark.parametrize("duration", LENGTHS)
@pytest.mark.parametrize("overlap", [0.0, 1.0, 2.0])
def test_windows_cover_the_video_on_both_grids(duration: float, overlap: float) -> None:
    sequence = CONFIG_44K_SA
    plan = plan_windows(duration, sequence, SAMPLES_PER_LATENT, overlap=overlap)
    windows = plan.windows
    frames = round(plan.window_duration * SYNC_FPS)
    latents_per_frame = sequence.sampling_rate / SYNC_FPS / SAMPLES_PER_LATENT
    assert plan.num_samples == round(duration * sequence.sampling_rate)
    if duration <= sequence.duration:
        # One window of the video's own length.
        assert len(windows) == 1 and plan.window_duration == pytest.approx(duration)
        assert plan.sequence.latent_seq_len == math.ceil(
            duration * sequence.sampling_rate / SAMPLES_PER_LATENT)
    else:
        assert plan.window_duration == sequence.duration
        assert plan.sequence == sequence
    assert windows[0].first_frame == 0 and windows[0].latent_offset == 0
    # The last window ends with the video (on the 25 fps grid).
    assert windows[-1].first_frame + frames == max(frames, math.ceil(duration * SYNC_FPS - 1e-6))
    for before, after in itertools.pairwise(windows):
        assert after.first_frame > before.first_frame
        assert before.first_frame + frames - after.first_frame >= round(overlap * SYNC_FPS)
        # Overlapping windows share whole latents.
        assert plan.latent_span(before).stop > plan.latent_span(after).start
    for window in windows[:-1]:
        # Each window's audio sits within half a latent of its video.
        assert abs(window.latent_offset - window.first_frame * latents_per_frame) <= 0.5
    # The audio of the last window reaches the end, and no further than one window.
    last = plan.sample_span(windows[-1])
    assert last.stop >= plan.num_samples
    assert last.stop - plan.num_samples < plan.window_latents * SAMPLES_PER_LATENT
    assert abs(windows[-1].latent_offset - windows[-1].first_frame * latents_per_frame) <= 1


def test_more_overlap_means_more_windows() -> None:
    counts = [len(plan_windows(61.0, CONFIG_44K_SA, SAMPLES_PER_LATENT, overlap=o).windows)
              for o in (0.0, 1.0, 2.0)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


@pytest.mark.parametrize(("duration", "overlap", "problem"), [
    (0.5, 1.0, "too short"), (0.0, 1.0, "positive"), (math.nan, 1.0, "positive"),
    (10.0, CONFIG_44K_SA.duration / 2, "overlap"), (10.0, -1.0, "overlap")])
def test_bad_plans_are_user_errors(duration: float, overlap: float, problem: str) -> None:
    with pytest.raises(UserInputError, match=problem):
        plan_windows(duration, CONFIG_44K_SA, SAMPLES_PER_LATENT, overlap=overlap)
