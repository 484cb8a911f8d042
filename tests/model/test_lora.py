"""LoRA: adapted rows, merged vs unmerged, and the published (merged) checkpoint layout."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from saganet.model import (
    lora_parameters,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unmerge_lora,
)
from saganet.model.lora import LoRALinear, lora_layers
from saganet.state_dict import CheckpointMismatchError, load_checkpoint_file

QKV_KEYS = ("joint_blocks.0.latent_block.attn.qkv", "fused_blocks.0.attn.qkv")


def _forward(net, inputs):
    with torch.no_grad():
        return net(inputs["latent"], inputs["clip_f"], inputs["sync_f"], inputs["text_f"],
                   inputs["t"])


def _base_weights(net) -> dict[str, torch.Tensor]:
    return {k: net.get_submodule(k).weight.detach().clone() for k in QKV_KEYS}


def test_update_covers_row_blocks_0_and_2_only() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(8, 24, rank=2, alpha=6)
    torch.nn.init.normal_(layer.lora_B)
    delta = layer.delta_weight()
    a, b = layer.lora_A.detach(), layer.lora_B.detach()
    assert delta.shape == (24, 8)
    torch.testing.assert_close(delta[:8], b[:8] @ a[:2])
    assert torch.equal(delta[8:16], torch.zeros(8, 8))
    torch.testing.assert_close(delta[16:], b[8:] @ a[2:])
    x = torch.randn(3, 8)
    expected = x @ (layer.weight + 3.0 * delta).T + layer.bias
    torch.testing.assert_close(layer(x), expected)


def test_fresh_adapter_is_the_identity_update() -> None:
    layer = LoRALinear(8, 24, rank=2, alpha=4)
    assert not layer.weight.requires_grad
    assert torch.equal(layer.delta_weight(), torch.zeros(24, 8))


def test_lora_sits_only_on_the_latent_stream(make_network) -> None:
    net = make_network()
    names = {n for n, m in net.named_modules() if isinstance(m, LoRALinear)}
    assert names == set(QKV_KEYS)
    assert not lora_layers(make_network(use_lora=False))


def test_merged_equals_unmerged(make_network, inputs) -> None:
    net = make_network()
    base = _base_weights(net)
    unmerged = _forward(net, inputs)
    state_before = net.state_dict()
    merge_lora(net)
    torch.testing.assert_close(_forward(net, inputs), unmerged, atol=1e-5, rtol=1e-5)
    # The published layout does not depend on the in-memory mode.
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state_before[key], atol=1e-6, rtol=1e-6)
    unmerge_lora(net)
    for key, weight in _base_weights(net).items():
        torch.testing.assert_close(weight, base[key], atol=1e-6, rtol=1e-6)


def test_state_dict_publishes_the_merged_weight(make_network) -> None:
    net = make_network()
    state_dict = net.state_dict()
    for key in QKV_KEYS:
        layer = net.get_submodule(key)
        update = state_dict[f"{key}.lora_B"][:64] @ state_dict[f"{key}.lora_A"][:16]
        stored = state_dict[f"{key}.weight"]
        torch.testing.assert_close(stored[:64], layer.weight[:64] + 2.0 * update)
        assert torch.equal(stored[64:128], layer.weight[64:128])


def test_save_load_reproduces_outputs_and_resume_recovers_base(make_network, inputs,
                                                               tmp_path: Path) -> None:
    trained = make_network(seed=3)
    expected = _forward(trained, inputs)
    path = tmp_path / "network.pth"
    torch.save({"network": trained.state_dict(), "lora": lora_state_dict(trained)}, path)

    published = load_checkpoint_file(str(path))
    resumed = make_network(seed=4)
    resumed.load_weights(published["network"], what=str(path))
    torch.testing.assert_close(_forward(resumed, inputs), expected, atol=1e-5, rtol=1e-5)
    for key, weight in _base_weights(resumed).items():
        torch.testing.assert_close(weight, _base_weights(trained)[key], atol=1e-6, rtol=1e-6)
    # The published "lora" dict after the network (the demo's order) changes nothing.
    resumed.load_lora_weights(published["lora"], what=str(path))
    torch.testing.assert_close(_forward(resumed, inputs), expected, atol=1e-5, rtol=1e-5)


def test_plain_module_round_trip_and_deepcopy(make_network, inputs) -> None:
    # EMA wrappers deepcopy the network and use load_state_dict/state_dict directly.
    net = make_network(seed=5)
    expected = _forward(net, inputs)
    other = make_network(seed=6)
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(_forward(other, inputs), expected, atol=1e-5, rtol=1e-5)
    twin = copy.deepcopy(net)
    for key, value in twin.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key
    merge_lora(twin)
    assert not lora_layers(net)[0].merged


def test_published_weight_is_used_as_stored(make_network, inputs) -> None:
    # Published semantics: a stored qkv.weight already holds the update; it must not be added again.
    net = make_network(seed=7)
    state_dict = net.state_dict()
    unmerged_reading = make_network(seed=8)
    unmerged_reading.load_weights(state_dict, lora_merged=False)
    merged_reading = make_network(seed=8)
    merged_reading.load_weights(state_dict)
    expected = _forward(net, inputs)
    torch.testing.assert_close(_forward(merged_reading, inputs), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_forward(unmerged_reading, inputs), expected, atol=1e-3)


def test_loading_new_factors_keeps_the_adapted_weight(make_network, inputs) -> None:
    net = make_network(seed=9)
    expected, before = _forward(net, inputs), net.state_dict()
    new_factors = lora_state_dict(make_network(seed=10))
    net.load_lora_weights(new_factors)
    torch.testing.assert_close(_forward(net, inputs), expected, atol=1e-5, rtol=1e-5)
    after = net.state_dict()
    for key in QKV_KEYS:
        torch.testing.assert_close(after[f"{key}.weight"], before[f"{key}.weight"])
        assert torch.equal(after[f"{key}.lora_A"], new_factors[f"{key}.lora_A"])
    with pytest.raises(CheckpointMismatchError, match="unexpected"):
        net.load_lora_weights({**new_factors, "latent_mean": before["latent_mean"]})
    with pytest.raises(CheckpointMismatchError, match="missing"):
        net.load_lora_weights({f"{QKV_KEYS[0]}.lora_A": new_factors[f"{QKV_KEYS[0]}.lora_A"]})


def test_only_lora_and_its_biases_train(make_network) -> None:
    net = make_network()
    mark_only_lora_trainable(net)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {f"{k}.{p}" for k in QKV_KEYS for p in ("lora_A", "lora_B", "bias")}
    assert {id(p) for p in lora_parameters(net)} == {
        id(p) for p in net.parameters() if p.requires_grad}


def test_gradients_reach_the_factors(make_network, inputs) -> None:
    net = make_network()
    mark_only_lora_trainable(net)
    net(inputs["latent"], inputs["clip_f"], inputs["sync_f"], inputs["text_f"],
        inputs["t"]).square().mean().backward()
    for param in lora_parameters(net):
        assert param.grad is not None and param.grad.abs().sum() > 0
