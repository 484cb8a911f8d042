import pytest
import torch
from torch import nn

from saganet.state_dict import CheckpointMismatchError, check_state_dict, load_state_dict_strict


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def test_error_lists_missing_unexpected_and_misshaped():
    sd = _net().state_dict()
    del sd["1.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(_net(), sd, what="model.pth")
    text = str(info.value)
    assert "model.pth" in text
    assert "1 missing key(s): 1.bias" in text
    assert "1 unexpected key(s): extra.weight" in text
    assert "0.weight: checkpoint (5, 3) vs model (4, 3)" in text


def test_allowed_differences_load_and_keep_current_values():
    net, src = _net(), _net()
    sd = src.state_dict()
    del sd["1.bias"]
    sd["ignored"] = torch.ones(1)
    before = net[1].bias.detach().clone()
    load_state_dict_strict(net, sd, allow_missing=["1.*"], allow_unexpected=["ignored"])
    assert torch.equal(net[0].weight, src[0].weight)
    assert torch.equal(net[1].bias, before)
