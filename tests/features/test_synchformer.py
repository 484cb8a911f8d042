"""Properties of the plain and segmentation-aware Synchformer at a tiny size."""

from __future__ import annotations

import pytest
import torch

from saganet.features import Synchformer, SynchformerConfig, SynchformerWithContext
from saganet.features.cross_attention import FocalContextAttention

# 32 px frames, 2 x 2 patches: fast, but every path (CLS, time/space groups) is exercised.
TINY = SynchformerConfig(img_size=32, embed_dim=24, depth=2, num_heads=2, cross_attn_heads=12)


def _windows(seed: int, channels: int, b: int = 2, s: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, s, TINY.frames_per_segment, channels, TINY.img_size, TINY.img_size,
                      generator=g) * 2 - 1


def _perturb_context(model: SynchformerWithContext, seed: int = 0) -> None:
    """Give the zero-initialised SAGANet parameters random values."""
    g = torch.Generator().manual_seed(seed)
    encoder = model.vfeat_extractor
    with torch.no_grad():
        encoder.patch_embed_3d_mask.proj.weight.normal_(0, 0.05, generator=g)
        for layer in encoder.cross_attn_layers:
            layer.attn_factor.fill_(0.5)
            layer.mlp_factor.fill_(-0.3)


def test_shapes_and_config_round_trip() -> None:
    model = SynchformerWithContext(TINY).eval()
    x, m = _windows(0, 3), _windows(1, 1).clamp(min=0)
    assert model(x, m, x, m).shape == (2, 2, TINY.temporal_resolution, TINY.embed_dim)
    assert SynchformerConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown"):
        SynchformerConfig.from_dict({"embed_dims": 3})


def test_debug_config() -> None:
    config = SynchformerConfig.debug()
    assert (config.embed_dim, config.depth, config.num_heads, config.img_size) == (48, 2, 2, 224)
    assert config.frames_per_segment == 16 and config.patches_per_frame == 196


def test_initialisation_and_trainable_parameters() -> None:
    model = SynchformerWithContext(TINY)
    encoder = model.vfeat_extractor
    assert torch.count_nonzero(encoder.patch_embed_3d_mask.proj.weight) == 0
    assert torch.count_nonzero(encoder.patch_embed_3d_mask.proj.bias) > 0
    assert all(layer.attn_factor.item() == 0 and layer.mlp_factor.item() == 0
               for layer in encoder.cross_attn_layers)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    prefixes = ("vfeat_extractor.patch_embed_3d_mask.", "vfeat_extractor.cross_attn_layers.")
    assert trainable and all(n.startswith(prefixes) for n in trainable)
    assert len(trainable) == 2 + 18 * TINY.depth  # 218 keys at official size
    model.set_context_trainable(False)
    assert not any(p.requires_grad for p in model.parameters())


def test_zero_context_equals_plain_model_on_the_crop() -> None:
    """Mask embedding (weight and bias) and gates at zero: pass 2 is the plain encoder on xd."""
    context_model = SynchformerWithContext(TINY).eval()
    _perturb_context(context_model)
    with torch.no_grad():
        context_model.vfeat_extractor.patch_embed_3d_mask.proj.weight.zero_()
        context_model.vfeat_extractor.patch_embed_3d_mask.proj.bias.zero_()
        for layer in context_model.vfeat_extractor.cross_attn_layers:
            layer.attn_factor.zero_()
            layer.mlp_factor.zero_()
    plain = Synchformer(TINY).eval()
    backbone = {k: v for k, v in context_model.state_dict().items()
                if k in plain.state_dict()}
    plain.load_state_dict(backbone, strict=True)
    x, xd = _windows(0, 3), _windows(2, 3)
    m, md = _windows(1, 1).clamp(min=0), _windows(3, 1).clamp(min=0)
    with torch.no_grad():
        torch.testing.assert_close(context_model(x, m, xd, md), plain(xd), atol=1e-6, rtol=1e-5)


def test_mask_and_context_change_the_features() -> None:
    model = SynchformerWithContext(TINY).eval()
    _perturb_context(model)
    x, xd = _windows(0, 3), _windows(2, 3)
    m, md = _windows(1, 1).clamp(min=0), _windows(3, 1).clamp(min=0)
    with torch.no_grad():
        reference = model(x, m, xd, md)
        other_mask = model(x, 1 - m, xd, md)
        other_frames = model(-x, m, xd, md)
    assert (reference - other_mask).abs().max() > 1e-3
    assert (reference - other_frames).abs().max() > 1e-3


def test_gradients_reach_only_the_context_parameters_through_pass_two() -> None:
    model = SynchformerWithContext(TINY).train()
    _perturb_context(model)
    x, m = _windows(0, 3, b=1, s=1), _windows(1, 1, b=1, s=1).clamp(min=0)
    model(x, m, x, m).square().mean().backward()
    encoder = model.vfeat_extractor
    assert encoder.cross_attn_layers[0].cross_attn.kv.weight.grad is not None
    assert encoder.patch_embed_3d_mask.proj.weight.grad is not None
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


def test_focal_context_attention_head_split() -> None:
    """First third of the heads read only the focal stream, the rest only the context."""
    attn = FocalContextAttention(dim=24, num_heads=12).eval()
    g = torch.Generator().manual_seed(0)
    focal, context = torch.randn(1, 5, 24, generator=g), torch.randn(1, 5, 24, generator=g)
    with torch.no_grad():
        # Look at the head outputs directly: identity output projection.
        attn.out_proj.weight.copy_(torch.eye(24))
        attn.out_proj.bias.zero_()
        base = attn(focal, context)
        changed_context = attn(focal, context + torch.randn(1, 5, 24, generator=g))
        changed_focal = attn(focal + torch.randn(1, 5, 24, generator=g), context)
    head_dim, focal_heads = 2, 4
    split = focal_heads * head_dim
    torch.testing.assert_close(changed_context[..., :split], base[..., :split])
    torch.testing.assert_close(changed_focal[..., split:], base[..., split:])
    assert (changed_context[..., split:] - base[..., split:]).abs().max() > 1e-3
    assert (changed_focal[..., :split] - base[..., :split]).abs().max() > 1e-3


def test_wrong_input_size_is_reported() -> None:
    model = Synchformer(TINY)
    with pytest.raises(ValueError, match="frames"):
        model(torch.zeros(1, 1, 16, 3, 48, 48))
