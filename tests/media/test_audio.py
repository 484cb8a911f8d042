"""A video's own sound, read against its picture (saganet.media.audio.read_video_sound)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saganet.errors import UserInputError
from saganet.media.audio import SAMPLE_RATE, read_video_sound
from tests.videos import write_video

FPS = 25


def frames(seconds: float) -> list[np.ndarray]:
    return [np.full((32, 48, 3), 8 * k % 256, np.uint8) for k in range(round(seconds * FPS))]


def burst(seconds: float, rate: int, on: float, off: float, amplitude: float) -> np.ndarray:
    """Silence with a 440 Hz tone from ``on`` to ``off`` seconds."""
    t = np.arange(round(seconds * rate)) / rate
    tone = amplitude * np.sin(2 * np.pi * 440 * t)
    return np.where((t >= on) & (t < off), tone, 0).astype(np.float32)


def edges(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Seconds of the first and last sample louder than ``level``."""
    loud = np.flatnonzero(np.abs(samples) > level)
    assert loud.size, "no sound"
    return loud[0] / SAMPLE_RATE, loud[-1] / SAMPLE_RATE


@pytest.mark.parametrize(("name", "codec", "rate", "audio_start", "start", "tolerance"), [
    ("lossless.mkv", "pcm_s16le", 44100, 0.0, 0.0, 0.002),
    ("resampled.mkv", "pcm_s16le", 48000, 0.0, 0.7, 0.002),
    ("late_sound.mkv", "pcm_s16le", 32000, 0.4, 0.3, 0.002),
    ("after_a_seek.mp4", "aac", 48000, 0.0, 2.6, 0.03),
    ("late_sound.mp4", "aac", 44100, 0.25, 0.0, 0.03),
    # MPEG-TS clocks start at 1.4 s: the times count from the first frame, not from 0.
    ("clock_from_1.4_s.ts", "aac", 48000, 0.0, 0.5, 0.03),
])
def test_sound_is_placed_against_the_picture(tmp_path: Path, name: str, codec: str, rate: int,
                                             audio_start: float, start: float,
                                             tolerance: float) -> None:
    """A tone from ``on`` to ``off`` seconds of the sound track (which starts ``audio_start``
    after the first frame) lands at ``audio_start + on - start`` of what is read from
    ``start``: resampled, after a seek, with a late sound track."""
    seconds, on, off, amplitude = 4.0, 2.9, 3.3, 0.4
    sound = burst(seconds - audio_start, rate, on - audio_start, off - audio_start, amplitude)
    video = write_video(tmp_path / name, frames(seconds), FPS, audio=sound, audio_rate=rate,
                        audio_codec=codec, audio_start=audio_start)
    out = np.ones(round((seconds - start) * SAMPLE_RATE), np.float32)
    assert read_video_sound(video, start, out)
    first, last = edges(out, amplitude / 2)
    assert abs(first - (on - start)) < tolerance and abs(last - (off - start)) < tolerance
    assert abs(np.abs(out).max() - amplitude) < 0.05 * amplitude
    # Before the tone and after it, silence (the ones put in first are overwritten).
    assert np.abs(out[: round((on - start - tolerance) * SAMPLE_RATE)]).max() < amplitude / 20


def test_channels_are_averaged(tmp_path: Path) -> None:
    seconds, gains = 1.0, (1.0, 0.25)
    tone = burst(seconds, SAMPLE_RATE, 0.0, seconds, 0.5)
    video = write_video(tmp_path / "stereo.mkv", frames(seconds), FPS,
                        audio=np.stack([g * tone for g in gains]), audio_rate=SAMPLE_RATE,
                        audio_codec="pcm_s16le")
    out = np.zeros(len(tone), np.float32)
    assert read_video_sound(video, 0.0, out)
    np.testing.assert_allclose(out, np.mean(gains) * tone, atol=2 / 2**15)


def test_past_the_end_of_the_sound_is_silent(tmp_path: Path) -> None:
    seconds, sound_seconds = 2.0, 1.2
    video = write_video(tmp_path / "short_sound.mkv", frames(seconds), FPS,
                        audio=burst(sound_seconds, SAMPLE_RATE, 0.0, sound_seconds, 0.5),
                        audio_rate=SAMPLE_RATE, audio_codec="pcm_s16le")
    out = np.ones(round(seconds * SAMPLE_RATE), np.float32)
    assert read_video_sound(video, 0.0, out)
    end = round(sound_seconds * SAMPLE_RATE)
    assert np.abs(out[end - 100 : end]).max() > 0.1 and not out[end:].any()


def test_a_video_without_sound(tmp_path: Path) -> None:
    video = write_video(tmp_path / "silent.mp4", frames(1.0), FPS)
    out = np.ones(100, np.float32)
    assert not read_video_sound(video, 0.0, out)
    assert not out.any()


def test_an_unreadable_file_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(UserInputError, match=r"bad\.mp4"):
        read_video_sound(bad, 0.0, np.zeros(10, np.float32))
