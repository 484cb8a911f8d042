"""The flow network (MM-DiT + LoRA), flow matching, sequence lengths and named variants."""

from saganet.model.config import NetworkConfig
from saganet.model.flow_matching import FlowMatching
from saganet.model.lora import (
    lora_parameters,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unmerge_lora,
)
from saganet.model.network import Conditions, FlowNetwork
from saganet.model.sequence import CONFIG_16K, CONFIG_44K, CONFIG_44K_SA, SequenceConfig
from saganet.model.variants import VARIANTS, build_network, network_config

__all__ = [
    "CONFIG_16K",
    "CONFIG_44K",
    "CONFIG_44K_SA",
    "VARIANTS",
    "Conditions",
    "FlowMatching",
    "FlowNetwork",
    "NetworkConfig",
    "SequenceConfig",
    "build_network",
    "lora_parameters",
    "lora_state_dict",
    "mark_only_lora_trainable",
    "merge_lora",
    "network_config",
    "unmerge_lora",
]
