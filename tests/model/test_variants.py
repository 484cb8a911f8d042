"""The registry of named network sizes (built on the meta device: nothing is allocated)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from saganet.errors import UserInputError
from saganet.model import CONFIG_44K, VARIANTS, FlowNetwork, NetworkConfig, build_network

# (state-dict keys, parameters) from the spec (network.md section 1).
EXPECTED = {
    "small_44k_sa": (275, 157_753_208),
    "small_44k_sa_no_lora": (251, 157_409_144),
    "medium_44k_sa": (275, 622_494_072),
    "medium_44k_sa_no_lora": (251, 621_805_944),
    "small_16k": (251, 157_283_644),
    "small_44k": (251, 157_409_144),
    "medium_44k": (251, 621_805_944),
    "large_44k": (416, 1_030_002_168),
    "large_44k_v2": (416, 1_030_575_608),
}
LORA_PARAMETERS = {"small_44k_sa": 344_064, "medium_44k_sa": 688_128}


def _meta(variant: str) -> FlowNetwork:
    with torch.device("meta"):
        return build_network(variant)


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_parameter_counts(variant: str) -> None:
    net = _meta(variant)
    keys, params = EXPECTED[variant]
    state_dict = net.state_dict()
    assert len(state_dict) == keys
    assert sum(v.numel() for v in state_dict.values()) == params
    assert sum(p.numel() for p in net.parameters()) == params
    lora = sum(v.numel() for k, v in state_dict.items() if k.endswith(("lora_A", "lora_B")))
    assert lora == LORA_PARAMETERS.get(variant, 0)


def test_every_variant_is_listed_and_builds() -> None:
    assert set(VARIANTS) == {*EXPECTED, "debug", "debug_no_lora"}
    for variant in VARIANTS:
        assert _meta(variant).config == VARIANTS[variant]


def test_debug_variant() -> None:
    config = VARIANTS["debug"]
    assert (config.hidden_dim, config.num_heads, config.head_dim) == (64, 1, 64)
    assert (config.depth, config.fused_depth, config.use_lora) == (2, 1, True)
    assert (config.latent_dim, config.clip_dim, config.sync_dim, config.text_dim) == (8, 64, 48,
                                                                                      64)
    net = build_network("debug")
    assert len([k for k in net.state_dict() if k.endswith("lora_A")]) == 2
    assert VARIANTS["debug_no_lora"] == dataclasses.replace(config, use_lora=False)


def test_sequence_never_changes_parameter_shapes() -> None:
    default = _meta("small_44k_sa")
    eight_seconds = _meta("small_44k_sa")
    with torch.device("meta"):
        eight_seconds = build_network("small_44k_sa", CONFIG_44K)
    assert eight_seconds.latent_seq_len == 345 and default.latent_seq_len == 216
    assert {k: v.shape for k, v in default.state_dict().items()} == {
        k: v.shape for k, v in eight_seconds.state_dict().items()}
    assert tuple(eight_seconds.latent_rot.shape) == (1, 345, 32, 2, 2)
    assert tuple(eight_seconds.clip_rot.shape) == (1, 64, 32, 2, 2)


def test_unknown_variant_lists_the_choices() -> None:
    with pytest.raises(UserInputError, match="small_44k_sa_no_lora") as err:
        build_network("saganet_small")
    assert "saganet_small" in str(err.value)


def test_config_round_trips_through_a_dict() -> None:
    config = VARIANTS["medium_44k_sa"]
    assert NetworkConfig.from_dict(dataclasses.asdict(config)) == config
    with pytest.raises(ValueError, match="unknown NetworkConfig fields"):
        NetworkConfig.from_dict({**dataclasses.asdict(config), "dropout": 0.1})


def test_config_rejects_impossible_shapes() -> None:
    base = dataclasses.asdict(VARIANTS["debug"])
    for change in ({"num_heads": 3}, {"fused_depth": 2}, {"sync_seq_len": 20}):
        with pytest.raises(ValueError):
            NetworkConfig(**{**base, **change})
