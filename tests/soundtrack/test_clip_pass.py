"""CLIP first: features computed before the other models load give the renderer's audio."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from saganet.debug_weights import build_debug_models
from saganet.example import SyntheticScene
from saganet.inference import SamplingOptions
from saganet.media.masks import MaskVideo
from saganet.media.video import CLIP_FPS
from saganet.soundtrack import (
    SoundObject,
    SoundtrackRequest,
    encode_clip_features,
    plan_soundtrack,
    resolve_segment,
    write_soundtrack,
)
from tests.soundtrack.test_render import read_flac, write_clip

OPTIONS = SamplingOptions(cfg_strength=4.5, num_steps=2, clip_chunk_size=3)


def _features(models, request: SoundtrackRequest):
    segment = resolve_segment(request)
    plan = plan_soundtrack(request, segment, models.training_sequence,
                           models.codec.samples_per_latent)
    return plan, encode_clip_features(models.clip_encoder, request, segment, plan,
                                      options=OPTIONS)


@pytest.mark.parametrize("join", ["joint", "crossfade"])
def test_clip_first_writes_the_renderers_audio(tmp_path: Path, join: str) -> None:
    models = build_debug_models(seed=0)
    window = models.training_sequence.duration
    scene = SyntheticScene(width=96, height=54, duration=1.7 * window)
    hidden_until = 1.1 * window  # the square sounds in the last window only
    video, masks = write_clip(tmp_path, scene, hide={"square": hidden_until})
    names = list(masks)
    objects = (SoundObject(names[0], MaskVideo(masks[names[0]]), "violin", "hiss"),
               SoundObject(names[1], MaskVideo(masks[names[1]])))
    request = SoundtrackRequest(video, objects, tmp_path / "renderer", join=join,
                                write_video=False)
    expected = write_soundtrack(models, request, options=OPTIONS, seed=5)

    plan, features = _features(models, request)
    assert len(plan.windows) > 1
    # The circle sounds everywhere, so every window's frames are encoded.
    assert all(images is not None and images.shape == (
        1, int(CLIP_FPS * plan.window_duration), models.network.config.clip_dim)
        for images in features.images)
    assert features.prompts[1] is None and features.prompts[0] is not None
    models.clip_encoder = None  # what a one-shot run holds once CLIP is released
    calls: list[tuple[str, int, int]] = []
    ours = write_soundtrack(models, dataclasses.replace(request, output_dir=tmp_path / "first"),
                            options=OPTIONS, seed=5, clip_features=features,
                            progress=lambda *call: calls.append(call))
    # The features stage shows from the start: the first window's is the longest wait.
    windows = len(plan.windows)
    assert calls[0] == ("features", 0, windows)
    assert [c for c in calls if c[0] == "features"][-1] == ("features", windows, windows)
    assert ours.silenced == expected.silenced
    for path, reference in zip(ours.outputs.all(), expected.outputs.all(), strict=True):
        assert np.array_equal(read_flac(path), read_flac(reference)), path.name


def test_windows_without_a_sounding_object_are_not_encoded(tmp_path: Path) -> None:
    models = build_debug_models(seed=0)
    window = models.training_sequence.duration
    scene = SyntheticScene(width=96, height=54, duration=2.5 * window)
    video, masks = write_clip(tmp_path, scene, hide={"square": 1.5 * window})
    request = SoundtrackRequest(video, (SoundObject("square", MaskVideo(masks["square"])),),
                                tmp_path / "out")
    calls: list[tuple[str, int, int]] = []
    segment = resolve_segment(request)
    plan = plan_soundtrack(request, segment, models.training_sequence,
                           models.codec.samples_per_latent)
    features = encode_clip_features(models.clip_encoder, request, segment, plan,
                                    options=OPTIONS, progress=lambda *call: calls.append(call))
    windows = len(plan.windows)
    assert calls == [("clip", done, windows) for done in range(windows + 1)]
    encoded = [images is not None for images in features.images]
    visible = [w.offset + plan.window_duration > 1.5 * window for w in plan.windows]
    assert encoded == visible and any(encoded) and not all(encoded)

    masked_away = dataclasses.replace(request, mask_away_clip=True)
    assert all(images is None for images in _features(models, masked_away)[1].images)


def test_features_of_other_windows_are_refused(tmp_path: Path) -> None:
    models = build_debug_models(seed=0)
    window = models.training_sequence.duration
    scene = SyntheticScene(width=96, height=54, duration=1.5 * window)
    video, masks = write_clip(tmp_path, scene)
    request = SoundtrackRequest(video, (SoundObject("circle", MaskVideo(masks["circle"])),),
                                tmp_path / "out")
    _, features = _features(models, dataclasses.replace(request, duration=0.5 * window))
    with pytest.raises(ValueError, match="CLIP features computed for 1 window"):
        write_soundtrack(models, request, options=OPTIONS, clip_features=features)
    assert not (tmp_path / "out").exists()
