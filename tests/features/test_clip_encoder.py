"""CLIP wrapper on a tiny random open_clip model (no download)."""

from __future__ import annotations

import logging

import open_clip
import pytest
import torch

from saganet.features import ClipEncoder, tiny_clip


@pytest.fixture(scope="module")
def clip() -> ClipEncoder:
    return tiny_clip(embed_dim=64, seed=0)


def test_properties(clip: ClipEncoder) -> None:
    assert (clip.image_size, clip.embed_dim, clip.text_width, clip.context_length) == (
        384, 64, 64, 77)
    assert not any(p.requires_grad for p in clip.parameters())
    clip.train()
    assert not clip.model.training


def test_tiny_clip_is_seeded_and_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = tiny_clip(seed=3), tiny_clip(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(a.model.token_embedding.weight, b.model.token_embedding.weight)


def test_image_features(clip: ClipEncoder) -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 3, 384, 384, generator=g)
    features = clip.encode_images(frames)
    assert features.shape == (2, 3, 64)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(2, 3))
    torch.testing.assert_close(clip.encode_images(frames, chunk_size=4), features,
                               atol=1e-6, rtol=1e-5)
    # The wrapper normalises with the CLIP mean/std before the model.
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN)[:, None, None]
    std = torch.tensor(open_clip.OPENAI_DATASET_STD)[:, None, None]
    with torch.no_grad():
        direct = clip.model.encode_image(((frames[1, 2] - mean) / std)[None], normalize=True)
    torch.testing.assert_close(features[1, 2], direct[0], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="384"):
        clip.encode_images(torch.rand(1, 1, 3, 224, 224))
    # uint8 frames as read from a file would be taken as [0, 1] values, unscaled.
    with pytest.raises(ValueError, match="clip_input"):
        clip.encode_images((frames * 255).to(torch.uint8))


@pytest.mark.parametrize("shape", ["size", "no batch axis", "channels"])
def test_frames_of_another_shape_are_named_with_the_encoders_size(shape: str) -> None:
    clip = tiny_clip(image_size=128, patch_size=32)
    size = clip.image_size
    frames = {"size": torch.rand(1, 2, 3, 2 * size, 2 * size),
              "no batch axis": torch.rand(2, 3, size, size),
              "channels": torch.rand(1, 2, 1, size, size)}[shape]
    with pytest.raises(ValueError) as raised:
        clip.encode_images(frames)
    assert str(raised.value) == (
        f"frames must be (B, T, 3, {size}, {size}) (clips, frames, channels, height, width), "
        f"got {tuple(frames.shape)}")


@pytest.mark.parametrize("objects", [2, 3])
def test_expanded_clips_are_encoded_once(clip: ClipEncoder, objects: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    video = torch.rand(1, 3, 3, 384, 384, generator=torch.Generator().manual_seed(1))
    # Chunks of fewer images than the clip has, the same for both calls: a product's rounding
    # may depend on how many rows it gets, so only equal chunks give equal bits.
    chunk = video.shape[1] - 1
    alone = clip.encode_images(video, chunk_size=chunk)
    images_seen = []
    encode_image = clip.model.encode_image

    def counting(images: torch.Tensor, **kwargs) -> torch.Tensor:
        images_seen.append(len(images))
        return encode_image(images, **kwargs)

    monkeypatch.setattr(clip.model, "encode_image", counting)
    # One video's frames expanded over the objects that sound in it, as the renderer does.
    features = clip.encode_images(video.expand(objects, -1, -1, -1, -1), chunk_size=chunk)
    assert features.shape == (objects, video.shape[1], clip.embed_dim)
    assert sum(images_seen) == video.shape[1]
    torch.testing.assert_close(features, alone.expand(objects, -1, -1), atol=0, rtol=0)
    images_seen.clear()
    copies = video.repeat(objects, 1, 1, 1, 1)  # equal values in separate memory
    torch.testing.assert_close(clip.encode_images(copies), features, atol=1e-6, rtol=1e-5)
    assert sum(images_seen) == objects * video.shape[1]


def test_text_features_keep_every_token(clip: ClipEncoder) -> None:
    texts = ["a trumpet", ""]
    tokens = clip.tokenize(texts)
    assert tokens.shape == (2, 77)
    eot = int(tokens[0].argmax())  # the end-of-text id is the largest
    assert eot == 3 and torch.count_nonzero(tokens[0, eot + 1:]) == 0
    features = clip.encode_text(texts)
    assert features.shape == (2, 77, 64)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(2, 77))
    # Padding positions carry real (causal) hidden states, distinct from the EOT position.
    assert (features[0, eot + 1] - features[0, eot]).abs().max() > 1e-3
    assert (features[0, 10] - features[0, 11]).abs().max() > 1e-3
    # Per-token states, not the pooled/projected embedding open_clip returns.
    with torch.no_grad():
        pooled = clip.model.encode_text(tokens[:1], normalize=True)
    assert (features[0, eot] - pooled[0]).abs().max() > 1e-3


def test_overlong_prompt_is_truncated_with_a_warning(
    clip: ClipEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    long = " ".join(["violin"] * 100)
    assert clip.count_tokens([long, "a violin"]) == [102, 4]
    with caplog.at_level(logging.WARNING, logger="saganet.features.clip"):
        tokens = clip.tokenize(["a violin"])
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="saganet.features.clip"):
        tokens = clip.tokenize([long])
    assert "102 tokens" in caplog.text and "truncated" in caplog.text
    assert int(tokens[0, -1]) == int(tokens.max())  # end-of-text kept in the last slot


def test_from_model_rejects_other_models() -> None:
    tokenizer = open_clip.tokenizer.SimpleTokenizer()
    with pytest.raises(TypeError, match="CLIP"):
        ClipEncoder.from_model(torch.nn.Linear(2, 2), tokenizer)  # type: ignore[arg-type]
