"""CLIP's image-tower attention through SDPA against nn.MultiheadAttention's own forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from saganet.features import tiny_clip
from saganet.features.clip_attention import SdpaSelfAttention, use_sdpa_attention


def _pair(width: int, heads: int, seed: int) -> tuple[nn.MultiheadAttention, SdpaSelfAttention]:
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(width, heads, batch_first=True).eval()
    with torch.no_grad():  # a non-zero output bias, so that it is checked too
        reference.out_proj.bias.normal_()
    adopted = SdpaSelfAttention.adopt(reference)
    return reference, adopted


def _kernels(run) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize(("width", "heads", "length"), [(16, 2, 5), (48, 3, 37), (64, 1, 2)])
def test_self_attention_equals_the_modules_own(width: int, heads: int, length: int) -> None:
    reference, adopted = _pair(width, heads, seed=width)
    x = torch.randn(3, length, width)
    with torch.inference_mode():
        expected = reference(x, x, x, need_weights=False)[0]
        out, weights = adopted(x, x, x, need_weights=False)
        kernels = _kernels(lambda: adopted(x, x, x, need_weights=False))
    assert weights is None
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    assert not torch.equal(out, torch.zeros_like(out))
    assert "aten::_native_multi_head_attention" not in kernels
    assert any("scaled_dot_product" in k for k in kernels)


def test_parameters_are_shared_and_state_dict_keys_unchanged() -> None:
    reference, adopted = _pair(16, 2, seed=0)
    assert adopted.in_proj_weight is reference.in_proj_weight
    assert adopted.out_proj is reference.out_proj
    theirs, ours = reference.state_dict(), adopted.state_dict()
    assert list(theirs) == list(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    assert not any(p.is_meta for p in adopted.parameters())


def test_other_calls_take_the_modules_own_forward() -> None:
    reference, adopted = _pair(16, 2, seed=1)
    x, y = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    causal = torch.triu(torch.full((6, 6), float("-inf")), diagonal=1)
    with torch.no_grad():
        for args, kwargs in [((x, x, x), {"attn_mask": causal, "need_weights": False}),
                             ((x, y, y), {"need_weights": False}),
                             ((x, x, x), {"need_weights": True})]:
            expected = reference(*args, **kwargs)
            got = adopted(*args, **kwargs)
            assert torch.equal(got[0], expected[0])
            assert (got[1] is None) == (expected[1] is None)
        adopted.use_sdpa = False
        assert torch.equal(adopted(x, x, x, need_weights=False)[0],
                           reference(x, x, x, need_weights=False)[0])


@pytest.mark.parametrize("options", [{"kdim": 8, "vdim": 8}, {"add_bias_kv": True},
                                     {"add_zero_attn": True}])
def test_other_layouts_are_refused(options: dict) -> None:
    with pytest.raises(ValueError, match="fused"):
        SdpaSelfAttention.adopt(nn.MultiheadAttention(16, 2, batch_first=True, **options))


def test_a_module_built_directly_takes_sdpa() -> None:
    torch.manual_seed(2)
    module = SdpaSelfAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        fast = module(x, x, x, need_weights=False)[0]
        module.use_sdpa = False
        torch.testing.assert_close(fast, module(x, x, x, need_weights=False)[0],
                                   atol=1e-6, rtol=1e-5)


def test_clip_image_features_with_and_without_sdpa() -> None:
    clip = tiny_clip(embed_dim=32, seed=4)
    blocks = clip.model.visual.transformer.resblocks
    assert all(isinstance(block.attn, SdpaSelfAttention) for block in blocks)
    frames = torch.rand(2, 3, 3, clip.image_size, clip.image_size,
                        generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fast = clip.encode_images(frames)
        fast_kernels = _kernels(lambda: clip.encode_images(frames))
        reference = clip.set_fast_inference(False).encode_images(frames)
        reference_kernels = _kernels(lambda: clip.encode_images(frames))
        assert torch.equal(clip.set_fast_inference(True).encode_images(frames), fast)
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=1e-5)
    assert "aten::_native_multi_head_attention" in reference_kernels
    assert "aten::_native_multi_head_attention" not in fast_kernels
    # The text tower keeps open_clip's own attention (its calls carry the causal mask).
    assert not any(isinstance(m, SdpaSelfAttention) for m in clip.model.transformer.modules())


def test_use_sdpa_attention_counts_and_switches() -> None:
    stack = nn.Sequential(*(nn.TransformerEncoderLayer(16, 2, batch_first=True)
                            for _ in range(3)))
    assert use_sdpa_attention(stack) == len(stack)
    assert all(layer.self_attn.use_sdpa for layer in stack)
    assert use_sdpa_attention(stack, enabled=False) == len(stack)
    assert not any(layer.self_attn.use_sdpa for layer in stack)
