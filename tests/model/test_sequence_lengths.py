"""Token counts derived from duration and rates (spec sampling.md section 3)."""

from __future__ import annotations

import pytest

from saganet.errors import UserInputError
from saganet.model import CONFIG_16K, CONFIG_44K, CONFIG_44K_SA, SequenceConfig


@pytest.mark.parametrize(("config", "latent", "clip", "sync", "samples"), [
    (CONFIG_44K_SA, 216, 40, 112, 221184),
    (CONFIG_44K, 345, 64, 192, 353280),
    (CONFIG_16K, 250, 64, 192, 128000),
    (SequenceConfig(5.0, 16000, 256), 157, 40, 112, 80384),
    (SequenceConfig(8.0, 44100, 512).with_duration(5.0), 216, 40, 112, 221184),
])
def test_presets_and_rates(config: SequenceConfig, latent: int, clip: int, sync: int,
                           samples: int) -> None:
    assert config.latent_seq_len == latent
    assert config.clip_seq_len == clip
    assert config.sync_seq_len == sync
    assert config.num_audio_samples == samples


def test_audio_covers_the_clip() -> None:
    for config in (CONFIG_44K_SA, CONFIG_44K, CONFIG_16K):
        assert config.num_audio_samples >= config.duration * config.sampling_rate
        assert config.num_audio_samples % (2 * config.hop) == 0


def test_short_video_shrinks_every_stream() -> None:
    # A 4.96 s video: 124 sync frames still give 14 windows; CLIP loses its last frame.
    short = CONFIG_44K_SA.with_duration(4.96)
    assert (short.latent_seq_len, short.clip_seq_len, short.sync_seq_len) == (214, 39, 112)
    assert short.num_sync_segments == 14


def test_sync_tokens_are_whole_windows() -> None:
    for tenths in range(7, 120):
        config = SequenceConfig(tenths / 10, 44100, 512)
        assert config.sync_seq_len % 8 == 0
        # Windows of 16 frames with stride 8 that fit in duration * 25 frames.
        windows = config.num_sync_segments
        assert 16 + 8 * (windows - 1) <= config.num_sync_frames < 16 + 8 * windows


def test_too_short_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="too short"):
        SequenceConfig(0.5, 44100, 512)


def test_durations_are_plain_floats_from_any_real_number() -> None:
    import numpy as np

    for duration in (np.float32(2.0), np.int64(2), 2):
        config = CONFIG_44K_SA.with_duration(duration)
        assert type(config.duration) is float
        assert config == CONFIG_44K_SA.with_duration(2.0)
    for duration in ("2", None, True, float("inf"), 0, -1.5):
        with pytest.raises(UserInputError, match="duration must be a positive number of seconds"):
            CONFIG_44K_SA.with_duration(duration)
