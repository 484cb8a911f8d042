"""SAGANet weights files: the published layout, plus the ``config`` entry of files we write.

A published file (``saganet.pth``) is ``{"network": ..., "synchformer": ..., "lora": ...}``;
``network`` holds every key with the LoRA updates merged into ``qkv.weight``. Files we write
(debug weights, ``train.py``) add ``config``: the architecture of the network and the
Synchformer, so a file trained at another size rebuilds its own models.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from saganet.features import SynchformerConfig, SynchformerWithContext, load_saganet_synchformer
from saganet.model import FlowNetwork, NetworkConfig, build_network, lora_state_dict
from saganet.state_dict import (
    CheckpointMismatchError,
    MismatchReport,
    check_weights_file,
    load_checkpoint_file,
)

WEIGHTS_FILE_ENTRIES = ("network", "synchformer", "lora", "config")
MAX_NAMED_ENTRIES = 12


def weights_file_dict(network: FlowNetwork, synchformer: SynchformerWithContext,
                      variant: str) -> dict:
    """A weights file in the published layout plus our ``config`` entry.

    ``network`` holds every key with LoRA updates merged into ``qkv.weight`` (as published),
    ``lora`` only the LoRA factors, ``synchformer`` all ``vfeat_extractor.*`` keys.
    """
    content = {"network": network.state_dict(), "synchformer": synchformer.state_dict()}
    if network.config.use_lora:
        content["lora"] = lora_state_dict(network)
    content["config"] = {"variant": variant, "network": dataclasses.asdict(network.config),
                         "synchformer": synchformer.config.to_dict()}
    return content


def check_weights_layout(path: str | os.PathLike[str]) -> str | None:
    """Before anything slow runs: ``path`` is a SAGANet weights file (its top-level layout;
    the tensors are mapped, not read, so this costs about the pickle). The strict check of
    every key happens when it is loaded.

    Returns:
        The network variant the file records (files written by training do), else None (the
        published files).

    Raises:
        UserInputError: missing, empty, not a PyTorch checkpoint, or another layout.
    """
    check_weights_file(path)
    config = read_weights_file(path, mmap=True).get("config")
    variant = config.get("variant") if isinstance(config, Mapping) else None
    return variant if isinstance(variant, str) else None


def read_weights_file(path: str | os.PathLike[str], *, mmap: bool = False) -> dict:
    """Load a SAGANet weights file and check its top-level layout (``mmap``: tensors mapped
    from the file, see :func:`load_checkpoint_file`)."""
    content = load_checkpoint_file(os.fspath(path), mmap=mmap)
    expected = "expected entries network, synchformer [, lora, config]"
    if not isinstance(content, Mapping):
        raise CheckpointMismatchError(f"{path}: not a SAGANet weights file: {expected}, found "
                                      f"a {type(content).__name__}")
    entries = sorted(map(str, content))
    if set(entries) - set(WEIGHTS_FILE_ENTRIES) or not {"network", "synchformer"} <= set(entries):
        # A bare state dict (a common mistake) has thousands of entries: name a few.
        shown = ", ".join(entries[:MAX_NAMED_ENTRIES])
        more = f", ... ({len(entries)} entries)" if len(entries) > MAX_NAMED_ENTRIES else ""
        raise CheckpointMismatchError(f"{path}: not a SAGANet weights file: {expected}, found "
                                      f"{shown or 'none'}{more}")
    return content


def build_from_weights(content: Mapping, what: str, default_network: str | None = None,
                       ) -> tuple[FlowNetwork, SynchformerWithContext]:
    """Build the network and Synchformer a weights file describes and load it strictly.

    Every entry that does not fit is named in one error (missing, unexpected and mis-shaped
    keys of each), and nothing is returned then.

    Args:
        content: a loaded weights file (:func:`read_weights_file`).
        what: the file's name for error messages.
        default_network: network variant for files without a ``config`` entry (the published
            ones, whose Synchformer is the official size); such files are refused without it.
    """
    config = content.get("config")
    if config is not None:
        try:
            network = FlowNetwork(NetworkConfig.from_dict(config["network"]))
            synchformer = SynchformerWithContext(
                SynchformerConfig.from_dict(config["synchformer"]))
        except (KeyError, TypeError, ValueError) as err:
            # Edited by hand, or written by another version of saganet.
            raise CheckpointMismatchError(f"{what}: its 'config' entry does not describe the "
                                          f"models ({type(err).__name__}: {err})") from err
    elif default_network is not None:
        network = build_network(default_network)
        synchformer = SynchformerWithContext(SynchformerConfig())
    else:
        raise CheckpointMismatchError(f"{what}: no 'config' entry, so the model sizes are "
                                      "unknown; name the variant it belongs to")
    # Every entry is tried, so that one error names all that do not fit; the models are this
    # function's own, so nothing is left half-loaded when it raises.
    report = MismatchReport(what)
    with report.part():
        network.load_weights(content["network"], what=f"{what}['network']")
    if "lora" in content:
        with report.part():
            network.load_lora_weights(content["lora"], what=f"{what}['lora']")
    with report.part():
        load_saganet_synchformer(synchformer, content, what=what)
    report.raise_if_any()
    return network.eval(), synchformer.eval().requires_grad_(False)
