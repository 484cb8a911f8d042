"""Strict loading of MMAudio's Synchformer file and of saganet.pth['synchformer']."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saganet.features import (
    Synchformer,
    SynchformerConfig,
    SynchformerWithContext,
    load_mmaudio_synchformer,
    load_saganet_synchformer,
)
from saganet.state_dict import CheckpointMismatchError

TINY = SynchformerConfig(img_size=32, embed_dim=24, depth=1, num_heads=2, cross_attn_heads=12)


def _mmaudio_file() -> dict[str, torch.Tensor]:
    """An MMAudio-style audio-visual Synchformer dict: video branch plus the unused groups."""
    source = Synchformer(TINY)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # distinguishable from a fresh model
    state = dict(source.state_dict())
    state["afeat_extractor.patch_embed.proj.weight"] = torch.zeros(2, 1, 3, 3)
    state["vproj.weight"] = torch.zeros(2, 2)
    state["aproj.bias"] = torch.zeros(2)
    state["transformer.blocks.0.attn.qkv.weight"] = torch.zeros(6, 2)
    return state


@pytest.mark.parametrize("cls", [Synchformer, SynchformerWithContext])
def test_mmaudio_file_loads(cls: type[torch.nn.Module], tmp_path: Path) -> None:
    state = _mmaudio_file()
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(state, path)
    model = cls(TINY)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    load_mmaudio_synchformer(model, path)
    loaded = model.state_dict()
    torch.testing.assert_close(loaded["vfeat_extractor.blocks.0.attn.qkv.weight"],
                               state["vfeat_extractor.blocks.0.attn.qkv.weight"])
    for key in loaded:
        if key not in state:  # context keys keep their initial values
            torch.testing.assert_close(loaded[key], fresh[key])


def test_missing_backbone_key_is_named() -> None:
    state = _mmaudio_file()
    del state["vfeat_extractor.blocks.0.mlp.fc1.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.0\.mlp\.fc1\.bias"):
        load_mmaudio_synchformer(SynchformerWithContext(TINY), state)


def test_unknown_group_is_rejected() -> None:
    state = _mmaudio_file()
    state["something_else.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="something_else"):
        load_mmaudio_synchformer(Synchformer(TINY), state)


def test_saganet_checkpoint_is_strict() -> None:
    source = SynchformerWithContext(TINY)
    with torch.no_grad():
        for layer in source.vfeat_extractor.cross_attn_layers:
            layer.attn_factor.fill_(0.25)
    checkpoint = {"network": {}, "synchformer": source.state_dict(), "lora": {}}
    model = SynchformerWithContext(TINY)
    load_saganet_synchformer(model, checkpoint)
    assert model.vfeat_extractor.cross_attn_layers[0].attn_factor.item() == 0.25

    partial = dict(source.state_dict())
    del partial["vfeat_extractor.cross_attn_layers.0.mlp_factor"]
    with pytest.raises(CheckpointMismatchError, match=r"cross_attn_layers\.0\.mlp_factor"):
        load_saganet_synchformer(model, {"synchformer": partial})
