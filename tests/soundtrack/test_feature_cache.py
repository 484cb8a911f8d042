"""Features kept across generations: a second generation of the same video and masks runs
neither CLIP's image encoder nor the Synchformer, and its audio is that of a run without the
cache; other masks, another file or other models are computed again."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from saganet import inference
from saganet.debug_weights import build_debug_models
from saganet.example import SyntheticScene
from saganet.inference import SamplingOptions
from saganet.media.masks import MaskVideo
from saganet.media.output import write_mask_video
from saganet.media.windows import read_windows
from saganet.soundtrack import (
    FeatureCache,
    SoundObject,
    SoundtrackRequest,
    plan_soundtrack,
    resolve_segment,
    write_soundtrack,
)
from saganet.soundtrack.feature_cache import masks_digest
from saganet.soundtrack.render import window_start
from tests.soundtrack.test_render import read_flac, write_clip
from tests.soundtrack.test_window_images import count_images

OPTIONS = SamplingOptions(num_steps=2)
OTHER = SamplingOptions(num_steps=3, cfg_strength=2.0)


@pytest.fixture(scope="module")
def models():
    return build_debug_models(seed=0)


class Counts:
    """Images CLIP encodes and clips the Synchformer sees."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, models) -> None:
        self.images = count_images(monkeypatch, models.clip_encoder)
        self.sync = [0]
        encode_sync = inference.encode_sync

        def counting(model, frames, *args, **kwargs):
            self.sync[0] += frames.shape[0]
            return encode_sync(model, frames, *args, **kwargs)

        monkeypatch.setattr(inference, "encode_sync", counting)

    def take(self) -> tuple[int, int]:
        taken = self.images[0], self.sync[0]
        self.images[0] = self.sync[0] = 0
        return taken


def _scene(models, windows: float) -> SyntheticScene:
    return SyntheticScene(width=96, height=54,
                          duration=windows * models.training_sequence.duration)


def _request(folder: Path, scene: SyntheticScene) -> SoundtrackRequest:
    video, masks = write_clip(folder, scene)
    return SoundtrackRequest(video, tuple(SoundObject(n, MaskVideo(p), prompt="violin")
                                          for n, p in masks.items()),
                             folder / "out", write_video=False)


def _layout(request: SoundtrackRequest, models) -> tuple[int, int]:
    """Distinct CLIP frames of the request's windows, and its windows times objects."""
    segment = resolve_segment(request)
    plan = plan_soundtrack(request, segment, models.training_sequence,
                           models.codec.samples_per_latent)
    starts = [window_start(segment, w) for w in plan.windows]
    slots = {s for frames in read_windows(request.video, starts, plan.window_duration)
             for s in frames.clip_slots}
    return len(slots), len(plan.windows) * len(request.objects)


def _same_audio(ours, expected) -> None:
    for path, reference in zip(ours.outputs.all(), expected.outputs.all(), strict=True):
        assert np.array_equal(read_flac(path), read_flac(reference)), path.name


def test_a_second_generation_reuses_every_feature(models, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    request = _request(tmp_path, _scene(models, 1.3))
    images, clips = _layout(request, models)
    counts = Counts(monkeypatch, models)
    plain = write_soundtrack(models, request, options=OPTIONS, seed=1)
    assert counts.take() == (images, clips)

    cache = FeatureCache()
    first = write_soundtrack(models, dataclasses.replace(request, output_dir=tmp_path / "first"),
                             options=OPTIONS, seed=1, cache=cache)
    assert counts.take() == (images, clips)
    _same_audio(first, plain)
    assert len(cache) == images + clips and cache.hits == 0

    # Another prompt, seed, guidance and number of steps: nothing of the video is computed.
    other = dataclasses.replace(request, output_dir=tmp_path / "second", objects=tuple(
        dataclasses.replace(o, prompt="trumpet") for o in request.objects))
    second = write_soundtrack(models, other, options=OTHER, seed=2, cache=cache)
    assert counts.take() == (0, 0)
    assert cache.hits == images + clips
    expected = write_soundtrack(models, dataclasses.replace(other, output_dir=tmp_path / "ref"),
                                options=OTHER, seed=2)
    counts.take()
    _same_audio(second, expected)


def test_other_masks_another_file_or_other_models_are_computed_again(
        models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = _scene(models, 1.3)
    request = _request(tmp_path, scene)
    images, clips = _layout(request, models)
    windows = clips // len(request.objects)
    counts = Counts(monkeypatch, models)
    cache = FeatureCache()
    outputs = iter(tmp_path / f"run{k}" for k in range(10))

    def generate(req: SoundtrackRequest, with_models=models):
        write_soundtrack(with_models, dataclasses.replace(req, output_dir=next(outputs)),
                         options=OPTIONS, cache=cache)
        return counts.take()

    assert generate(request) == (images, clips)
    # The first object given the second one's masks: its windows only, no CLIP frame.
    first, second = request.objects
    swapped = dataclasses.replace(request, objects=(
        dataclasses.replace(first, masks=second.masks), second))
    assert generate(swapped) == (0, 0)  # the same masks as the second object's: known
    moved = dataclasses.replace(request, objects=(
        dataclasses.replace(first, name="moved", masks=MaskVideo(_shifted_mask(
            scene, first.name, tmp_path / "moved_mask.mp4"))), second))
    assert generate(moved) == (0, windows)
    # The video rewritten in place, its size and modification time as before (a copy with
    # `cp -p`): everything again.
    stat = os.stat(request.video)
    data = Path(request.video).read_bytes()
    with open(request.video, "r+b") as file:
        file.write(data)
    os.utime(request.video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = os.stat(request.video)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        stat.st_ino, stat.st_size, stat.st_mtime_ns)
    assert generate(request) == (images, clips)
    # Other models (another seed's weights): the cache starts afresh.
    others = build_debug_models(seed=1)
    counts_others = Counts(monkeypatch, others)
    write_soundtrack(others, dataclasses.replace(request, output_dir=next(outputs)),
                     options=OPTIONS, cache=cache)
    assert counts_others.take() == (images, clips)
    assert len(cache) == images + clips


def _shifted_mask(scene: SyntheticScene, name: str, target: Path) -> Path:
    """The shape's masks moved right by a tenth of the frame (another tracking of it)."""
    shift = max(1, scene.width // 10)
    return write_mask_video(target, (np.roll(shapes[name], shift, axis=1)
                                     for _, shapes in scene.frames()), fps=scene.fps)


def test_the_budget_keeps_the_most_recent_features() -> None:
    feature = torch.arange(16, dtype=torch.float32)
    size = feature.numel() * feature.element_size()
    cache = FeatureCache(max_bytes=3 * size)
    for k in range(3):
        cache.put(k, feature + k)
    assert cache.get(0) is not None  # now the most recent
    cache.put(3, feature + 3)
    assert cache.get(1) is None and len(cache) == 3 and cache.nbytes == 3 * size
    assert [torch.equal(cache.get(k), feature + k) for k in (0, 2, 3)] == [True] * 3
    source = feature.clone()
    cache.put(0, source)
    source += 100  # a copy is kept
    assert torch.equal(cache.get(0), feature) and cache.nbytes == 3 * size
    cache.put("large", torch.zeros(4 * feature.numel()))
    assert cache.get("large") is None and len(cache) == 3
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    with pytest.raises(ValueError, match="max_bytes"):
        FeatureCache(max_bytes=-1)
    off = FeatureCache(max_bytes=0)  # --feature_cache_mb 0
    off.put(0, feature)
    assert off.get(0) is None and len(off) == 0 and off.nbytes == 0


class _Models:
    """What bind() looks at."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.device, self.dtype = torch.device("cpu"), dtype


def test_bind_forgets_the_features_of_other_models_or_another_dtype() -> None:
    cache, models = FeatureCache(), _Models()
    cache.bind(models)
    cache.put("a", torch.ones(2))
    cache.bind(models)
    assert len(cache) == 1
    cache.bind(_Models())
    assert len(cache) == 0
    cache.put("a", torch.ones(2))
    models = _Models()
    cache.bind(models)
    cache.put("a", torch.ones(2))
    models.dtype = torch.bfloat16
    cache.bind(models)
    assert len(cache) == 0


def test_masks_digest_tells_masks_apart() -> None:
    masks = torch.zeros(5, 1, 8, 8, dtype=torch.uint8)
    changed = masks.clone()
    changed[3, 0, 2, 2] = 255
    assert masks_digest(masks) == masks_digest(masks.clone())
    assert masks_digest(masks) != masks_digest(changed)
    assert masks_digest(masks) != masks_digest(masks.float())
    assert masks_digest(masks) != masks_digest(masks.reshape(5, 1, 4, 16))
