"""The stereo mix: positions from masks, equal-power gains, the panned mix and its files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from saganet.media.output import AudioTrack, write_flac, write_video_with_audio
from saganet.media.video import SYNC_FPS
from saganet.soundtrack.mix import MIX_PEAK, level_mix
from saganet.soundtrack.pan import SMOOTHING_S, Pan, mask_positions
from tests.videos import read_audio, write_video

SIZE = 224
SR = 44100


class Boxes:
    """Masks on the 25 fps grid: frame ``k`` a box over columns ``spans[k]`` (None: empty)."""

    name = "boxes"

    def __init__(self, spans: list[tuple[int, int] | None]) -> None:
        self.spans = spans
        self.duration = len(spans) / SYNC_FPS

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        first = round(start * SYNC_FPS)
        stop = len(self.spans) if end is None else min(round(end * SYNC_FPS), len(self.spans))
        masks = torch.zeros(max(0, stop - first), 1, SIZE, SIZE, dtype=torch.uint8)
        for k in range(first, stop):
            if self.spans[k] is not None:
                lo, hi = self.spans[k]
                masks[k - first, 0, SIZE // 4 : SIZE // 2, lo:hi] = 255
        return masks


def centre(span: tuple[int, int]) -> float:
    return (span[0] + span[1]) / 2 / SIZE


def moving_average(values: np.ndarray) -> np.ndarray:
    """The module's smoothing, written out: the mean of the frames within ``half`` of each
    frame, the ends repeated."""
    half = round(SMOOTHING_S * SYNC_FPS) // 2
    return np.array([np.mean([values[min(max(j, 0), len(values) - 1)]
                              for j in range(k - half, k + half + 1)])
                     for k in range(len(values))])


@pytest.mark.parametrize("frames", [1, 7, 60, 300])
def test_positions_follow_the_mask(frames: int) -> None:
    """A box moving from the left edge to the right: each frame's position is its centre, as a
    fraction of the width, smoothed; also across the reads of long segments."""
    width = 20
    spans = [(lo, lo + width) for lo in np.linspace(0, SIZE - width, frames).round().astype(int)]
    positions = mask_positions(Boxes(spans), 0.0, frames / SYNC_FPS)
    assert positions.shape == (frames,)
    np.testing.assert_allclose(positions, moving_average(np.array([centre(s) for s in spans])),
                               atol=1e-12)


def test_a_segment_later_in_the_masks() -> None:
    spans = [(k, k + 10) for k in range(100)]
    start, count = 1.2, 30
    first = round(start * SYNC_FPS)
    positions = mask_positions(Boxes(spans), start, count / SYNC_FPS)
    assert len(positions) == count
    # Away from the segment's ends the smoothing sees only the segment's own frames.
    half = round(SMOOTHING_S * SYNC_FPS) // 2
    expected = moving_average(np.array([centre(s) for s in spans[first : first + count]]))
    np.testing.assert_allclose(positions[half:-half], expected[half:-half], atol=1e-12)


def test_empty_frames_hold_the_position() -> None:
    """Hidden before, between and after: the first position seen before it, the last one
    seen after; never seen: the middle."""
    left, right = (0, 40), (150, 224)
    spans = [None] * 10 + [left] * 10 + [None] * 10 + [right] * 10 + [None] * 10
    positions = mask_positions(Boxes(spans), 0.0, len(spans) / SYNC_FPS)
    held = [centre(left)] * 30 + [centre(right)] * 20
    np.testing.assert_allclose(positions, moving_average(np.array(held)), atol=1e-12)
    never = mask_positions(Boxes([None] * 12), 0.0, 12 / SYNC_FPS)
    np.testing.assert_array_equal(never, np.full(12, 0.5))


def test_gains_are_equal_power_and_continuous() -> None:
    positions = np.array([0.0, 0.0, 0.25, 1.0, 0.5])
    pan = Pan(positions, SR)
    length = round(len(positions) / SYNC_FPS * SR)
    gains = pan.gains(0, length)
    assert gains.shape == (2, length)
    np.testing.assert_allclose((gains**2).sum(axis=0), 1.0, atol=1e-12)
    # At a frame's middle, the frame's own position.
    for k, p in enumerate(positions):
        sample = round((k + 0.5) / SYNC_FPS * SR)
        np.testing.assert_allclose(gains[:, sample], [math.cos(p * math.pi / 2),
                                                      math.sin(p * math.pi / 2)], atol=1e-4)
    # No step: neighbouring samples differ by far less than a frame's change.
    assert np.abs(np.diff(gains, axis=1)).max() < 1e-3
    # Any range of samples gives the same gains as the whole.
    np.testing.assert_array_equal(pan.gains(1000, 3000), gains[:, 1000:3000])


@pytest.mark.parametrize("loud", [False, True], ids=["kept", "levelled"])
def test_the_stereo_mix(loud: bool) -> None:
    """Each stem goes into both channels with its gains; one gain for both channels keeps the
    peak at -1 dBFS at most. Long enough for several of the mix's chunks."""
    rng = np.random.default_rng(0)
    length = 600_000
    frames = math.ceil(length / SR * SYNC_FPS)
    stems = [rng.uniform(-0.4, 0.4, length).astype(np.float32) * (3 if loud else 1)
             for _ in range(3)]
    pans = [Pan(np.linspace(a, b, frames), SR) for a, b in ((0, 0), (1, 1), (0.2, 0.9))]
    out = np.zeros((2, length), np.float32)
    level = level_mix(stems, out, pans)
    plain = sum(p.gains(0, length) * s.astype(np.float64) for p, s in zip(pans, stems,
                                                                         strict=True))
    assert math.isclose(level.peak, np.abs(plain).max(), rel_tol=1e-9)
    assert (level.gain < 1) == loud and np.abs(out).max() <= MIX_PEAK + 1e-6
    np.testing.assert_allclose(out, level.gain * plain, atol=1e-6)
    with pytest.raises(ValueError, match="one pan per stem"):
        level_mix(stems, out, pans[:2])


def test_stereo_files(tmp_path: Path) -> None:
    """The FLAC and the MP4 keep left and right apart."""
    seconds = 1.0
    t = np.arange(round(seconds * SR)) / SR
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)
    stereo = np.stack([left, right]).astype(np.float32)
    flac, rate = read_audio(write_flac(tmp_path / "stereo.flac", stereo, SR))
    assert rate == SR and flac.shape == stereo.shape
    np.testing.assert_allclose(flac, stereo, atol=2**-22)
    video = write_video(tmp_path / "v.mp4", [np.zeros((32, 32, 3), np.uint8)] * 25, 25)
    mp4 = write_video_with_audio(video, [AudioTrack(stereo, "mix"), AudioTrack(left, "one")],
                                 SR, tmp_path / "out.mp4", seconds)
    decoded, _ = read_audio(mp4)
    assert decoded.shape[0] == 2
    # AAC: the levels of each channel, not the samples.
    rms = np.sqrt(np.mean(decoded[:, 2048 : len(t) - 2048] ** 2, axis=1))
    np.testing.assert_allclose(rms, [0.5 / math.sqrt(2), 0.25 / math.sqrt(2)], rtol=0.05)

