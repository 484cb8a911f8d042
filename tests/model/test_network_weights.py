"""Strict loading with named tolerances, sequence-length changes and device/dtype moves."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from saganet.model import FlowNetwork, NetworkConfig
from saganet.state_dict import CheckpointMismatchError


def _forward(net, inputs):
    with torch.no_grad():
        return net(inputs["latent"], inputs["clip_f"], inputs["sync_f"], inputs["text_f"],
                   inputs["t"])


def test_strict_errors_name_every_problem(make_network) -> None:
    net = make_network()
    state_dict = net.state_dict()
    del state_dict["clip_cond_proj.bias"]
    state_dict["extra.weight"] = torch.zeros(1)
    state_dict["final_layer.conv.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError) as err:
        make_network().load_weights(state_dict, what="broken.pth")
    message = str(err.value)
    assert "broken.pth" in message
    assert "missing" in message and "clip_cond_proj.bias" in message
    assert "unexpected" in message and "extra.weight" in message
    assert "mis-shaped" in message and "final_layer.conv.bias" in message


def test_old_checkpoints_with_recomputed_buffers_load(make_network, inputs) -> None:
    net = make_network(seed=1)
    state_dict = {**net.state_dict(), "latent_rot": torch.zeros(3), "clip_rot": torch.zeros(3),
                  "t_embed.freqs": torch.zeros(3)}
    other = make_network(seed=2)
    other.load_weights(state_dict)
    torch.testing.assert_close(_forward(other, inputs), _forward(net, inputs))
    assert other.latent_rot.shape == net.latent_rot.shape


def test_base_checkpoint_into_lora_variant_needs_base_only(make_network, inputs,
                                                           tiny_config) -> None:
    base = make_network(seed=1, use_lora=False)
    lora = FlowNetwork(tiny_config)  # fresh adapters: zero lora_B
    with pytest.raises(CheckpointMismatchError, match="base_only=True"):
        lora.load_weights(base.state_dict(), what="mmaudio_small_44k.pth")
    lora.load_weights(base.state_dict(), base_only=True, what="mmaudio_small_44k.pth")
    torch.testing.assert_close(_forward(lora, inputs), _forward(base, inputs))
    # A file with factors is not a base checkpoint.
    with pytest.raises(CheckpointMismatchError, match="not a base"):
        lora.load_weights(make_network().state_dict(), base_only=True)


def test_no_lora_variant_rejects_lora_keys(make_network) -> None:
    with pytest.raises(CheckpointMismatchError, match="lora_A"):
        make_network(use_lora=False).load_weights(make_network().state_dict())


def test_config_rebuilds_the_network(make_network, inputs) -> None:
    net = make_network(seed=3)
    rebuilt = FlowNetwork(NetworkConfig.from_dict(dataclasses.asdict(net.config)))
    rebuilt.load_weights(net.state_dict())
    torch.testing.assert_close(_forward(rebuilt, inputs), _forward(net, inputs))


def test_update_seq_lengths(make_network, make_inputs, tiny_config) -> None:
    net = make_network()
    with pytest.raises(ValueError, match="tokens"):
        _forward(net, make_inputs(dataclasses.replace(tiny_config, latent_seq_len=40)))
    net.update_seq_lengths(40, 10, 24)
    assert tuple(net.latent_rot.shape) == (1, 40, 32, 2, 2)
    assert tuple(net.clip_rot.shape) == (1, 10, 32, 2, 2)
    longer = make_inputs(net.config)
    assert _forward(net, longer).shape == (2, 40, 8)
    # CLIP token 1 sits at latent position 40 / 10 = 4.
    torch.testing.assert_close(net.clip_rot[0, 1], net.latent_rot[0, 4])


def test_dtype_moves_keep_rope_in_fp32(make_network) -> None:
    net = make_network()
    tables = net.latent_rot.clone(), net.clip_rot.clone()
    freqs = net.t_embed.freqs.clone()
    net.to(torch.bfloat16)
    assert net.latent_rot.dtype == torch.float32 and net.clip_rot.dtype == torch.float32
    assert torch.equal(net.latent_rot, tables[0]) and torch.equal(net.clip_rot, tables[1])
    # The timestep frequencies follow the cast, like the reference's bf16 demo.
    assert net.t_embed.freqs.dtype == torch.bfloat16
    assert torch.equal(net.t_embed.freqs, freqs.bfloat16())


def test_meta_build_then_materialise(make_network, inputs, tiny_config) -> None:
    source = make_network(seed=4)
    with torch.device("meta"):
        net = FlowNetwork(tiny_config)
    net.to_empty(device="cpu")
    net.load_weights(source.state_dict())
    torch.testing.assert_close(_forward(net, inputs), _forward(source, inputs))


def test_latent_statistics(make_network, tiny_config) -> None:
    net = make_network()
    x = torch.randn(2, tiny_config.latent_seq_len, tiny_config.latent_dim)
    normalized = net.normalize(x)
    torch.testing.assert_close((normalized * net.latent_std + net.latent_mean), x)
    torch.testing.assert_close(net.unnormalize(normalized), x)
    assert torch.isnan(FlowNetwork(tiny_config).latent_mean).all()


def test_check_weights_raises_as_loading_would_and_loads_nothing(make_network) -> None:
    good = make_network(seed=1).state_dict()
    broken = {k: v for k, v in good.items() if k != next(iter(good))}
    net = make_network(seed=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as loading:
        make_network().load_weights(broken, what="broken.pth")
    with pytest.raises(CheckpointMismatchError) as checking:
        net.check_weights(broken, what="broken.pth")
    assert str(checking.value) == str(loading.value)
    net.check_weights(good)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
