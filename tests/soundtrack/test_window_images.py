"""Each CLIP frame of overlapping windows is encoded once, to the features of encoding every
window's frames."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from saganet.debug_weights import build_debug_models
from saganet.example import SyntheticScene
from saganet.inference import SamplingOptions
from saganet.media.masks import MaskVideo
from saganet.media.windows import read_windows
from saganet.soundtrack import (
    SoundObject,
    SoundtrackRequest,
    encode_clip_features,
    plan_soundtrack,
    resolve_segment,
    write_soundtrack,
)
from saganet.soundtrack.render import window_start
from saganet.soundtrack.window_images import WindowImageEncoder
from tests.soundtrack.test_render import write_clip


@pytest.fixture(scope="module")
def models():
    return build_debug_models(seed=0)


def count_images(monkeypatch: pytest.MonkeyPatch, clip) -> list[int]:
    """Makes ``clip`` count the images it encodes into the returned one-item list."""
    count = [0]
    encode = clip.encode_images

    def counting(frames: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        # Clips expanded from one tensor are one set of images (encode_images encodes them once).
        clips = len({frames[i].data_ptr() for i in range(frames.shape[0])})
        count[0] += clips * frames.shape[1]
        return encode(frames, chunk_size=chunk_size)

    monkeypatch.setattr(clip, "encode_images", counting)
    return count


def _request(tmp_path: Path, models, windows: float) -> SoundtrackRequest:
    scene = SyntheticScene(width=96, height=54,
                           duration=windows * models.training_sequence.duration)
    video, masks = write_clip(tmp_path, scene)
    return SoundtrackRequest(video, tuple(SoundObject(name, MaskVideo(path))
                                          for name, path in masks.items()),
                             tmp_path / "out", write_video=False)


@pytest.mark.parametrize(("windows", "chunk_size"), [(2.6, None), (3.4, 3)])
def test_shared_frames_are_encoded_once(models, tmp_path: Path, windows: float,
                                        chunk_size: int | None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    request = _request(tmp_path, models, windows)
    segment = resolve_segment(request)
    plan = plan_soundtrack(request, segment, models.training_sequence,
                           models.codec.samples_per_latent)
    starts = [window_start(segment, w) for w in plan.windows]
    clip = models.clip_encoder
    encode = clip.encode_images
    count = count_images(monkeypatch, clip)
    encoder = WindowImageEncoder(clip, chunk_size)
    slots: set[int] = set()
    for frames in read_windows(request.video, starts, plan.window_duration):
        features = encoder(frames)
        alone = encode(frames.clip_frames[None])
        assert features.shape == alone.shape
        torch.testing.assert_close(features, alone, rtol=1e-5, atol=1e-6)
        slots.update(frames.clip_slots)
    frames_in_windows = len(plan.windows) * features.shape[1]
    assert count[0] == encoder.encoded == len(slots) < frames_in_windows


def test_both_paths_encode_each_frame_once(models, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    request = _request(tmp_path, models, 1.4)
    segment = resolve_segment(request)
    plan = plan_soundtrack(request, segment, models.training_sequence,
                           models.codec.samples_per_latent)
    starts = [window_start(segment, w) for w in plan.windows]
    distinct = len({s for frames in read_windows(request.video, starts, plan.window_duration)
                    for s in frames.clip_slots})
    options = SamplingOptions(num_steps=1)
    count = count_images(monkeypatch, models.clip_encoder)
    write_soundtrack(models, request, options=options, seed=0)
    assert count == [distinct]
    count[0] = 0
    encode_clip_features(models.clip_encoder, request, segment, plan, options=options)
    assert count == [distinct]
    count[0] = 0
    write_soundtrack(models, dataclasses.replace(request, output_dir=tmp_path / "masked",
                                                 mask_away_clip=True), options=options, seed=0)
    assert count == [0]
