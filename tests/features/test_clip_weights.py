"""Loading open_clip checkpoints with the weights held once (saganet.features.clip_weights)
against open_clip's own loading, on a tiny CLIP written in the layout of a hub folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from saganet.errors import UserInputError
from saganet.features.clip import ClipEncoder, open_clip, tiny_clip
from saganet.features.clip_weights import SkipParameterInit, load_open_clip
from saganet.state_dict import CheckpointMismatchError, load_state_dict_strict

TEXT_WIDTH = 48


def _write_folder(folder: Path, state_dict: dict[str, torch.Tensor], weights_name: str,
                  embed_dim: int) -> Path:
    """A ``local-dir:`` model folder: open_clip_config.json and one weights file."""
    config = {"embed_dim": embed_dim, "quick_gelu": True,
              "vision_cfg": {"layers": 1, "width": 64, "head_width": 32, "patch_size": 64,
                             "image_size": 384},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": TEXT_WIDTH,
                           "heads": 2, "layers": 1}}
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    path = folder / weights_name
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state_dict.items()}, path)
    else:
        torch.save(state_dict, path)
    return folder


@pytest.fixture(params=["open_clip_pytorch_model.bin", "open_clip_model.safetensors"])
def clip_folder(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    reference = tiny_clip(embed_dim=32, seed=5, text_width=TEXT_WIDTH).model
    return _write_folder(tmp_path / "clip", reference.state_dict(), request.param, embed_dim=32)


def test_weights_buffers_and_features_equal_open_clips_own_loading(clip_folder: Path) -> None:
    ours = load_open_clip(f"local-dir:{clip_folder}")
    theirs = open_clip.create_model_from_pretrained(f"local-dir:{clip_folder}",
                                                    return_transform=False).eval()
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert ours_state.keys() == theirs_state.keys()
    for key, value in theirs_state.items():
        assert torch.equal(ours_state[key], value), key
    # The causal mask is a buffer outside the checkpoint: it must be built, not skipped.
    assert torch.equal(ours.attn_mask, theirs.attn_mask)
    assert not ours.training
    assert not any(t.is_meta for t in [*ours.parameters(), *ours.buffers()])
    images = torch.rand(2, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    tokens = open_clip.tokenize(["a violin", "a trumpet played softly"])
    # Bit for bit where both models' weights lie in freshly allocated (64-byte aligned) memory.
    # Weights assigned from a safetensors file stay where they lie in its buffer, and a BLAS
    # (MKL outside its reproducible mode) may round a product differently when its operands
    # are aligned differently: there the same values, equal up to float rounding.
    aligned = all(t.data_ptr() % 64 == 0 for t in ours.state_dict().values())
    tolerance = {"rtol": 0, "atol": 0} if aligned else {"rtol": 1e-5, "atol": 1e-6}
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(images), theirs.encode_image(images),
                                   **tolerance)
        torch.testing.assert_close(ours.encode_text(tokens), theirs.encode_text(tokens),
                                   **tolerance)


def test_the_encoder_loads_through_it(clip_folder: Path) -> None:
    encoder = ClipEncoder.from_pretrained(f"local-dir:{clip_folder}")
    text = encoder.encode_text(["a violin"])
    assert text.shape == (1, encoder.context_length, TEXT_WIDTH)
    assert torch.isfinite(text).all()


def test_a_checkpoint_missing_a_key_names_it(tmp_path: Path) -> None:
    state = tiny_clip(embed_dim=32, text_width=TEXT_WIDTH).model.state_dict()
    dropped = sorted(state)[len(state) // 2]
    del state[dropped]
    folder = _write_folder(tmp_path / "clip", state, "open_clip_pytorch_model.bin", 32)
    with pytest.raises(CheckpointMismatchError, match=rf"1 missing key\(s\): {dropped}"):
        load_open_clip(f"local-dir:{folder}")


def test_a_folder_without_weights_is_a_user_error(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text("{}")
    with pytest.raises(UserInputError, match="no CLIP weights file"):
        load_open_clip(f"local-dir:{folder}")


class _WithBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((3, 4), 7.0))
        nn.init.zeros_(self.weight)  # dispatched by keyword
        with torch.no_grad():
            self.weight.uniform_()  # a tensor method
        self.register_buffer("mask", torch.empty(4, 4).fill_(-1.0).triu_(1), persistent=False)


def test_parameter_initialisers_are_skipped_and_buffers_are_built() -> None:
    with SkipParameterInit():
        module = _WithBuffer()
    assert torch.equal(module.weight, torch.full((3, 4), 7.0))
    assert torch.equal(module.mask, torch.full((4, 4), -1.0).triu(1))
    assert torch.equal(_WithBuffer().weight.detach() >= 0, torch.ones(3, 4, dtype=torch.bool))


def test_assigned_weights_keep_the_modules_dtype() -> None:
    module = nn.Linear(5, 3)
    state = {k: torch.randn(v.shape).half() for k, v in module.state_dict().items()}
    load_state_dict_strict(module, state, assign=True)
    assert module.weight.dtype == module.bias.dtype == torch.float32
    torch.testing.assert_close(module.weight, state["weight"].float(), rtol=0, atol=0)
    assert isinstance(module.weight, nn.Parameter) and module.weight.requires_grad
