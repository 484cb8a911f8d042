"""Token counts of one clip, derived from its duration and the audio/video rates.

The flow network sees three time-aligned token streams: audio latents, CLIP frame features and
Synchformer features. Their lengths follow from the clip duration, the audio sampling rate and
STFT hop, and the fixed frame rates of the two video encoders. They are computed here and never
typed in; they set the RoPE tables and the shape checks of the network, not any weight shape.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from saganet.errors import UserInputError, check_seconds

# Fixed by the feature extractors, not by the user.
LATENT_DOWNSAMPLE = 2  # VAE: one latent per two mel frames
CLIP_FPS = 8
SYNC_FPS = 25
SYNC_SEGMENT_FRAMES = 16  # Synchformer window length in frames
SYNC_SEGMENT_STEP = 8  # stride between windows in frames
SYNC_TOKENS_PER_SEGMENT = SYNC_SEGMENT_FRAMES // 2  # temporal patch size 2


@dataclass(frozen=True)
class SequenceConfig:
    """Duration and audio rates of one clip, and the token counts they imply.

    Args:
        duration: clip length in seconds.
        sampling_rate: audio sampling rate in Hz (44100 or 16000).
        hop: STFT hop of the mel spectrogram in samples (512 at 44.1 kHz, 256 at 16 kHz).
    """

    duration: float
    sampling_rate: int
    hop: int

    def __post_init__(self) -> None:
        # A plain float (frozen: set directly): NumPy scalars would leak into every length.
        object.__setattr__(self, "duration",
                           check_seconds(self.duration, "duration", positive=True))
        if self.num_sync_frames < SYNC_SEGMENT_FRAMES:
            shortest = SYNC_SEGMENT_FRAMES / SYNC_FPS
            raise UserInputError(f"duration {self.duration} s is too short: Synchformer needs at "
                                 f"least {SYNC_SEGMENT_FRAMES} frames at {SYNC_FPS} fps "
                                 f"({shortest} s)")

    @property
    def latent_seq_len(self) -> int:
        """Number of audio latents: one per ``hop * 2`` samples, rounded up."""
        return math.ceil(self.duration * self.sampling_rate / self.hop / LATENT_DOWNSAMPLE)

    @property
    def num_audio_samples(self) -> int:
        """Waveform samples decoded from ``latent_seq_len`` latents (slightly over duration)."""
        return self.latent_seq_len * self.hop * LATENT_DOWNSAMPLE

    @property
    def clip_seq_len(self) -> int:
        """Number of CLIP frames at 8 fps (truncated, e.g. 4.96 s -> 39)."""
        return int(self.duration * CLIP_FPS)

    @property
    def num_sync_frames(self) -> float:
        """Frames seen at 25 fps, as the reference computes it (a float)."""
        return self.duration * SYNC_FPS

    @property
    def num_sync_segments(self) -> int:
        """Number of 16-frame Synchformer windows with stride 8 that fit in the clip."""
        # Float floor division as in the reference: frames past the last window are unused.
        return int((self.num_sync_frames - SYNC_SEGMENT_FRAMES) // SYNC_SEGMENT_STEP + 1)

    @property
    def sync_seq_len(self) -> int:
        """Number of Synchformer tokens: 8 per window."""
        return self.num_sync_segments * SYNC_TOKENS_PER_SEGMENT

    def with_duration(self, duration: float) -> SequenceConfig:
        """The same rates for a clip of another length (e.g. a video shorter than 5 s).

        Args:
            duration: the new clip length in seconds.
        """
        return dataclasses.replace(self, duration=duration)


# SAGANet's training/inference setting: 5 s at 44.1 kHz -> 216 / 40 / 112 tokens.
CONFIG_44K_SA = SequenceConfig(duration=5.0, sampling_rate=44100, hop=512)
# MMAudio's settings: 8 s clips -> 345 / 64 / 192 (44.1 kHz) and 250 / 64 / 192 (16 kHz).
CONFIG_44K = SequenceConfig(duration=8.0, sampling_rate=44100, hop=512)
CONFIG_16K = SequenceConfig(duration=8.0, sampling_rate=16000, hop=256)
