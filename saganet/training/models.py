"""Building the two trained networks: from the recipe (random + base weights) or from a weights
file we wrote, and turning them back into the published weights layout.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saganet import weights
from saganet.checkpoint import build_from_weights, read_weights_file, weights_file_dict
from saganet.debug_weights import build_debug_models
from saganet.errors import UserInputError
from saganet.features.checkpoint import load_mmaudio_synchformer
from saganet.features.config import SYNCHFORMER_SIZES
from saganet.features.synchformer import CONTEXT_PARAMETER_PREFIXES, SynchformerWithContext
from saganet.model import FlowNetwork, NetworkConfig, SequenceConfig, network_config
from saganet.state_dict import MismatchReport, load_checkpoint_file
from saganet.training.checkpoint import cpu_state_dict
from saganet.training.config import ModelSetup

log = logging.getLogger(__name__)

DEBUG_INIT = "debug"
CONTEXT_KEY_PREFIXES = tuple(f"vfeat_extractor.{p}" for p in CONTEXT_PARAMETER_PREFIXES)


@dataclass
class TrainModels:
    """The flow network and the segmentation-aware Synchformer of a run.

    Args:
        network: the flow network.
        synchformer: the Synchformer with context.
        variant: the network variant name (recorded in weights files).
    """

    network: FlowNetwork
    synchformer: SynchformerWithContext
    variant: str

    def weights_file(self) -> dict[str, Any]:
        """The published weights layout (:func:`saganet.checkpoint.weights_file_dict`) on CPU.

        The network's ``state_dict()`` holds ``qkv.weight`` with the LoRA update merged in
        (the published semantics) without changing the live weights.
        """
        content = weights_file_dict(self.network, self.synchformer, self.variant)
        for key in ("network", "synchformer", "lora"):
            if key in content:
                content[key] = cpu_state_dict(content[key])
        return content


@functools.cache
def _debug_base_weights() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Stand-ins for pre-trained base weights of the ``debug`` sizes.

    The debug pipeline's random models (:func:`saganet.debug_weights.build_debug_models`) have no
    zero-initialised output layers, unlike a fresh network, whose zero final layer would give
    the LoRA factors no gradient at all. Returned as (network without LoRA factors, Synchformer
    backbone without context layers), i.e. shaped like MMAudio's two files. Cached (building
    the debug pipeline takes seconds); callers only read the tensors.
    """
    models = build_debug_models(seed=0)
    network = {k: v for k, v in models.network.state_dict().items()
               if not k.endswith((".lora_A", ".lora_B"))}
    synchformer = {k: v for k, v in models.synchformer.state_dict().items()
                   if not k.startswith(CONTEXT_KEY_PREFIXES)}
    return network, synchformer


def _resolve(name_or_path: str, weights_dir: str | None) -> Path:
    """A registry name (``mmaudio_small_44k.pth``) through the weights cache, else a path."""
    if name_or_path in weights.REGISTRY:
        return weights.resolve(name_or_path, weights_dir)
    return Path(name_or_path)


def check_base_weights(setup: ModelSetup) -> None:
    """Raise a :class:`UserInputError` for a base-weights setting that names neither a
    registry entry nor a file: torch's FileNotFoundError traceback came only when the weights
    was loaded, after the other file had been downloaded. Not checked on a resume, which takes
    every weight from its training state.

    Args:
        setup: the base files (``model.network_init``, ``model.synchformer_init``).
    """
    for name, value in (("network_init", setup.network_init),
                        ("synchformer_init", setup.synchformer_init)):
        if value in (None, DEBUG_INIT) or value in weights.REGISTRY or Path(value).is_file():
            continue
        raise UserInputError(f"model.{name}={value} is neither a registered weights file "
                             "(python -m saganet.weights list) nor a file")


def build_models(setup: ModelSetup, sequence: SequenceConfig) -> TrainModels:
    """Randomly initialised networks of the recipe (see :func:`load_base_weights`).

    Args:
        setup: variant and Synchformer size.
        sequence: clip duration and rates (sets the network's token counts).
    """
    if setup.synchformer not in SYNCHFORMER_SIZES:
        raise UserInputError(f"unknown Synchformer size {setup.synchformer!r}; choose one of "
                             + ", ".join(SYNCHFORMER_SIZES))
    synchformer = SynchformerWithContext(SYNCHFORMER_SIZES[setup.synchformer]())
    config = network_config(setup.variant, sequence)
    if setup.architecture:
        config = _changed_architecture(config, setup.architecture)
    return TrainModels(FlowNetwork(config), synchformer, setup.variant)


def _changed_architecture(config: NetworkConfig, changes: dict[str, Any]) -> NetworkConfig:
    """``config`` with the fields of ``model.architecture`` replaced, or a one-line error."""
    derived = {"latent_seq_len", "clip_seq_len", "sync_seq_len"}
    fields = [f.name for f in dataclasses.fields(NetworkConfig) if f.name not in derived]
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        kind = ("set by duration" if set(unknown) <= derived
                else "unknown; the fields are " + ", ".join(fields))
        raise UserInputError(f"model.architecture: {', '.join(unknown)}: {kind}")
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"model.architecture={dict(changes)}: {err}") from err


def load_base_weights(models: TrainModels, setup: ModelSetup,
                      weights_dir: str | None = None) -> None:
    """Initialise the networks from the configured base weights (downloading them if needed).

    The network takes MMAudio's weights (the LoRA factors keep their fresh initialisation,
    zero ``lora_B``); the Synchformer takes MMAudio's backbone (the mask embedding and
    cross-attention keep theirs, zero gates). Without a base file a module stays random;
    ``debug`` names the stand-ins of :func:`_debug_base_weights`.

    Args:
        models: networks from :func:`build_models`.
        setup: the base files.
        weights_dir: weights cache folder (None: the default cache).

    Raises:
        UserInputError: a base file is neither a registry name nor a file (before anything
            is downloaded).
        CheckpointMismatchError: a base file does not fit its module; when both do not, one
            error lists the missing, unexpected and mis-shaped keys of each.
    """
    check_base_weights(setup)
    network, synchformer = models.network, models.synchformer
    debug_network, debug_synchformer = (
        _debug_base_weights() if DEBUG_INIT in (setup.network_init, setup.synchformer_init)
        else ({}, {}))
    # Both files are tried, so that one error names every part that does not fit; the models
    # are fresh from build_models, and a run whose base weights fail is not started.
    report = MismatchReport("base weights")
    with report.part():
        if setup.network_init == DEBUG_INIT:
            network.load_weights(debug_network, base_only=setup.use_lora,
                                 what="debug base weights")
        elif setup.network_init:
            path = _resolve(setup.network_init, weights_dir)
            network.load_weights(load_checkpoint_file(str(path)), base_only=setup.use_lora,
                                 what=str(path))
    with report.part():
        if setup.synchformer_init == DEBUG_INIT:
            load_mmaudio_synchformer(synchformer, debug_synchformer)
        elif setup.synchformer_init:
            load_mmaudio_synchformer(synchformer, _resolve(setup.synchformer_init, weights_dir))
    report.raise_if_any()


def build_from_weights_file(path: str | os.PathLike[str]) -> TrainModels:
    """Rebuild the networks of a weights file that carries its own ``config`` entry.

    Args:
        path: a file written by the trainer (``<exp_name>_last.pth`` and the like).
    """
    content = read_weights_file(path)
    network, synchformer = build_from_weights(content, str(path))
    return TrainModels(network, synchformer, content["config"]["variant"])


def has_latent_stats(network: FlowNetwork) -> bool:
    """Whether the network holds finite latent statistics (a fresh one holds NaNs)."""
    stats = torch.cat([network.latent_mean.flatten(), network.latent_std.flatten()])
    return bool(torch.isfinite(stats).all())


def set_latent_stats(network: FlowNetwork, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Give a network without base weights the training data's latent statistics.

    Args:
        network: the flow network.
        mean: ``(latent_dim,)`` per-channel mean of the training latents.
        std: ``(latent_dim,)`` per-channel std.
    """
    with torch.no_grad():
        network.latent_mean.copy_(mean.view_as(network.latent_mean))
        network.latent_std.copy_(std.view_as(network.latent_std))
    log.info("latent statistics taken from the training data (no base weights)")
