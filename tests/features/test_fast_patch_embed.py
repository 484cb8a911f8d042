"""Patch embeddings as matrix products (the CPU default) against the 3-D convolution."""

from __future__ import annotations

import pytest
import torch

from saganet.features import SynchformerConfig, SynchformerWithContext
from saganet.features.motionformer import PatchEmbed3d


@pytest.mark.parametrize(("channels", "size", "patch", "frames"),
                         [(3, 32, 16, 4), (1, 48, 16, 6), (3, 30, 8, 5)])
def test_patch_embedding_as_matmul_equals_the_convolution(channels: int, size: int,
                                                          patch: int, frames: int) -> None:
    embed = PatchEmbed3d(channels, 20, patch, 2)
    g = torch.Generator().manual_seed(size)
    x = torch.randn(2, channels, frames, size, size, generator=g, requires_grad=True)
    grads = {}
    outputs = {}
    for as_matmul in (True, False):
        embed.as_matmul = as_matmul
        outputs[as_matmul] = embed(x)
        grads[as_matmul] = torch.autograd.grad(outputs[as_matmul].square().sum(),
                                               [x, embed.proj.weight, embed.proj.bias])
    tokens = (frames // 2) * (size // patch) ** 2  # remainders are ignored, as by the conv
    assert outputs[True].shape == outputs[False].shape == (2, tokens, 20)
    torch.testing.assert_close(outputs[True], outputs[False], atol=1e-5, rtol=1e-5)
    for fast, reference in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_fast_synchformer_equals_the_reference() -> None:
    config = SynchformerConfig(img_size=32, embed_dim=24, depth=2, num_heads=2,
                               cross_attn_heads=12)
    torch.manual_seed(0)
    model = SynchformerWithContext(config).eval()
    encoder = model.vfeat_extractor
    encoder.patch_embed_3d_mask.proj.weight.normal_(0, 0.05)
    for layer in encoder.cross_attn_layers:
        layer.attn_factor.fill_(0.5)
        layer.mlp_factor.fill_(-0.3)
    g = torch.Generator().manual_seed(1)
    shape = (2, 3, config.frames_per_segment)
    frames = torch.rand(*shape, 3, 32, 32, generator=g) * 2 - 1
    masks = (torch.rand(*shape, 1, 32, 32, generator=g) > 0.5).float()
    fast = model(frames, masks, frames.flip(-1), masks.flip(-1))
    reference = model.set_fast_inference(False)(frames, masks, frames.flip(-1), masks.flip(-1))
    assert fast.shape == reference.shape == (2, 3, config.temporal_resolution, 24)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    assert not any(m.as_matmul for m in model.modules() if isinstance(m, PatchEmbed3d))
