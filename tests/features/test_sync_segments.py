"""Cutting clips into Synchformer windows and batching them."""

from __future__ import annotations

import pytest
import torch

from saganet.errors import UserInputError
from saganet.features import (
    Synchformer,
    SynchformerConfig,
    SynchformerWithContext,
    encode_sync,
    encode_sync_plain,
    num_sync_windows,
)

TINY = SynchformerConfig(img_size=32, embed_dim=24, depth=1, num_heads=2, cross_attn_heads=12)


def _clip(seed: int, b: int, t: int, channels: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, channels, TINY.img_size, TINY.img_size, generator=g)


def _context_model() -> SynchformerWithContext:
    model = SynchformerWithContext(TINY).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.vfeat_extractor.patch_embed_3d_mask.proj.weight.normal_(0, 0.05, generator=g)
        for layer in model.vfeat_extractor.cross_attn_layers:
            layer.attn_factor.fill_(0.5)
            layer.mlp_factor.fill_(0.5)
    return model


def test_window_count() -> None:
    assert num_sync_windows(125) == 14
    assert num_sync_windows(16) == 1
    assert num_sync_windows(23) == 1
    assert num_sync_windows(24) == 2
    assert num_sync_windows(15) == 0


def test_chunked_equals_unchunked_and_windows_are_in_order() -> None:
    model = _context_model()
    b, t = 2, 40  # S = 4 windows per clip
    inputs = [_clip(0, b, t, 3), _clip(1, b, t, 1), _clip(2, b, t, 3), _clip(3, b, t, 1)]
    with torch.no_grad():
        whole = encode_sync(model, *inputs)
        chunked = encode_sync(model, *inputs, chunk_size=3)  # 8 windows: chunks 3, 3, 2
        assert whole.shape == (b, 8 * 4, TINY.embed_dim)
        torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)
        # Token 8 * s + j of clip b = window s (frames 8s .. 8s+15) of that clip.
        clip, s = 1, 2
        window = [x[clip:clip + 1, 8 * s:8 * s + 16].unsqueeze(1) for x in inputs]
        expected = model(*window)[0, 0]  # (8, D)
        torch.testing.assert_close(whole[clip, 8 * s:8 * s + 8], expected, atol=1e-6, rtol=1e-5)


def test_plain_variant() -> None:
    model = Synchformer(TINY).eval()
    frames = _clip(0, 1, 33, 3)  # 33 frames: 3 windows, the last frame unused
    with torch.no_grad():
        features = encode_sync_plain(model, frames, chunk_size=2)
        expected = model(frames[:, 16:32].unsqueeze(1))[0, 0]
    assert features.shape == (1, 24, TINY.embed_dim)
    torch.testing.assert_close(features[0, 16:24], expected, atol=1e-6, rtol=1e-5)


def test_too_short_and_mismatched_inputs() -> None:
    model = _context_model()
    short = [_clip(0, 1, 15, 3), _clip(1, 1, 15, 1), _clip(2, 1, 15, 3), _clip(3, 1, 15, 1)]
    with pytest.raises(UserInputError, match="15 frames"):
        encode_sync(model, *short)
    ok = [_clip(0, 1, 16, 3), _clip(1, 1, 16, 1), _clip(2, 1, 17, 3), _clip(3, 1, 16, 1)]
    with pytest.raises(ValueError, match="share"):
        encode_sync(model, *ok)


@pytest.mark.parametrize(("argument", "spoil"), [
    ("frames", lambda x: x[..., : TINY.img_size // 2, : TINY.img_size // 2]),
    ("masks", lambda x: x[:, :, :, : TINY.img_size // 2, : TINY.img_size // 2]),
    ("frames", lambda x: x[0]),
    ("detail_masks", lambda x: x.expand(-1, -1, 3, -1, -1)),
])
def test_inputs_of_the_wrong_size_name_the_argument(argument: str, spoil) -> None:
    """Frames of another size than the model's (or without the batch axis) are named in one
    line with the shape wanted, not reported from inside the patch embedding."""
    b, t = 1, 16
    inputs = {"frames": _clip(0, b, t, 3), "masks": _clip(1, b, t, 1),
              "detail_frames": _clip(2, b, t, 3), "detail_masks": _clip(3, b, t, 1)}
    inputs[argument] = spoil(inputs[argument])
    channels = 1 if "masks" in argument else 3
    with pytest.raises(ValueError, match=rf"^{argument} must be \(B, T, {channels}, "
                                         rf"{TINY.img_size}, {TINY.img_size}\)") as info:
        encode_sync(_context_model(), **inputs)
    assert str(tuple(inputs[argument].shape)) in str(info.value)
