"""The models of one SAGANet variant, built and loaded together.

A *pipeline variant* (the ``--variant`` of ``demo.py``) names a flow network size, the weights
file that holds its ``network``/``synchformer``/``lora`` entries, and the encoders and codec it
runs with. :func:`load_models` turns a name into a ready :class:`SAGANetModels`;
:func:`write_debug_weights` writes random tiny weights in the published layout so the whole
pipeline runs in tests and CI without downloads.

Weights files we write carry one extra entry, ``config``, with the architecture of the network
and the Synchformer, so a file trained with another size rebuilds its own models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from saganet import weights as weights_registry
from saganet.codec import VAE, AudioCodec, AudioCodecConfig, BigVGAN, load_vae, load_vocoder
from saganet.errors import UserInputError
from saganet.features import (
    ClipEncoder,
    SynchformerConfig,
    SynchformerWithContext,
    load_saganet_synchformer,
    tiny_clip,
)
from saganet.model import (
    CONFIG_44K_SA,
    FlowNetwork,
    NetworkConfig,
    SequenceConfig,
    build_network,
    lora_state_dict,
)
from saganet.state_dict import CheckpointMismatchError, atomic_save, load_checkpoint_file

log = logging.getLogger(__name__)

WEIGHTS_FILE_ENTRIES = ("network", "synchformer", "lora", "config")


@dataclass(frozen=True)
class PipelineVariant:
    """What one ``--variant`` runs.

    Args:
        network: key of :data:`saganet.model.VARIANTS`.
        checkpoint: registry name of the weights file (``network``, ``synchformer``, ``lora``).
        group: registry group prefetched by ``python -m saganet.weights fetch``.
        debug: tiny random encoders and codec read from a ``write_debug_weights`` folder.
    """

    network: str
    checkpoint: str
    group: str
    debug: bool = False


PIPELINES: dict[str, PipelineVariant] = {
    "saganet_small": PipelineVariant("small_44k_sa", "saganet.pth", "saganet_small"),
    "saganet_small_no_lora": PipelineVariant("small_44k_sa_no_lora", "saganet_no_lora.pth",
                                             "saganet_small_no_lora"),
    "debug": PipelineVariant("debug", "saganet_debug.pth", "debug", debug=True),
}

# Layout of a debug weights folder, mirroring the published one (weights/ and ext_weights/).
DEBUG_FILES = {
    "checkpoint": Path("weights") / "saganet_debug.pth",
    "vae": Path("ext_weights") / "vae_debug.pth",
    "vocoder": Path("ext_weights") / "bigvgan_debug",
    "clip": Path("ext_weights") / "clip_debug.pth",
}
DEBUG_CLIP_SEED = 0


class SAGANetModels(nn.Module):
    """Everything :func:`saganet.inference.generate` needs, moved and cast together.

    Args:
        network: the flow network.
        synchformer: the segmentation-aware Synchformer.
        clip: CLIP image/text encoder; ``None`` when features come precomputed (training).
        codec: VAE decoder + vocoder.
        sequence: clip duration and rates the network is set up for.
    """

    def __init__(self, network: FlowNetwork, synchformer: SynchformerWithContext,
                 clip: ClipEncoder | None, codec: AudioCodec, sequence: SequenceConfig) -> None:
        super().__init__()
        self.network = network
        self.synchformer = synchformer
        self.clip = clip
        self.codec = codec
        self.sequence = sequence

    @property
    def device(self) -> torch.device:
        return self.network.latent_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.network.latent_mean.dtype

    def set_duration(self, duration: float) -> SequenceConfig:
        """Set the clip length: new sequence lengths and RoPE tables (fp32, on the device).

        Call it after moving/casting the models, as the tables are rebuilt where they live.
        """
        self.sequence = self.sequence.with_duration(duration)
        self.network.update_seq_lengths(self.sequence.latent_seq_len,
                                        self.sequence.clip_seq_len, self.sequence.sync_seq_len)
        return self.sequence


def pipeline_variant(name: str) -> PipelineVariant:
    """Look up a ``--variant`` name; unknown names list the valid ones."""
    if name not in PIPELINES:
        raise UserInputError(f"unknown variant {name!r}; choose one of {', '.join(PIPELINES)}")
    return PIPELINES[name]


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


def read_weights_file(path: str | os.PathLike[str]) -> dict:
    """Load a SAGANet weights file and check its top-level layout."""
    content = load_checkpoint_file(os.fspath(path))
    unknown = sorted(set(content) - set(WEIGHTS_FILE_ENTRIES))
    if unknown or "network" not in content or "synchformer" not in content:
        raise CheckpointMismatchError(
            f"{path}: not a SAGANet weights file: expected entries network, synchformer "
            f"[, lora, config], found {sorted(content)}")
    return content


def build_from_weights(content: Mapping, what: str, default_network: str | None = None,
                       ) -> tuple[FlowNetwork, SynchformerWithContext]:
    """Build the network and Synchformer a weights file describes and load it strictly.

    Args:
        content: a loaded weights file (:func:`read_weights_file`).
        what: the file's name for error messages.
        default_network: network variant for files without a ``config`` entry (the published
            ones, whose Synchformer is the official size); such files are refused without it.
    """
    config = content.get("config")
    if config is not None:
        network = FlowNetwork(NetworkConfig.from_dict(config["network"]))
        synchformer = SynchformerWithContext(SynchformerConfig.from_dict(config["synchformer"]))
    elif default_network is not None:
        network = build_network(default_network)
        synchformer = SynchformerWithContext(SynchformerConfig())
    else:
        raise CheckpointMismatchError(f"{what}: no 'config' entry, so the model sizes are "
                                      "unknown; name the variant it belongs to")
    network.load_weights(content["network"], what=f"{what}['network']")
    if "lora" in content:
        network.load_lora_weights(content["lora"], what=f"{what}['lora']")
    load_saganet_synchformer(synchformer, content["synchformer"])
    return network.eval(), synchformer.eval().requires_grad_(False)


def load_models(
    variant: str,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    offline: bool | None = None,
    need_clip: bool = True,
    need_vae_encoder: bool = False,
) -> SAGANetModels:
    """Build a pipeline variant and load its weights (downloading what is missing).

    Args:
        variant: a key of :data:`PIPELINES` (``saganet_small``, ``saganet_small_no_lora``,
            ``debug``).
        weights_dir: weights folder (default: the user cache); for ``debug`` the folder that
            ``python -m saganet.weights debug DIR`` wrote.
        checkpoint: a weights file to use instead of the variant's published one (e.g. one
            written by ``train.py``); its ``config`` entry, if any, decides the sizes.
        device: where the models run.
        dtype: parameter dtype (bf16 halves memory on GPUs; fp32 on CPU).
        offline: never download (default: ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``).
        need_clip: load CLIP (not needed when CLIP/text features are precomputed).
        need_vae_encoder: keep the VAE encoder (only feature extraction for training needs it).
    """
    spec = pipeline_variant(variant)
    if spec.debug:
        files = _debug_paths(weights_dir)
        ckpt = Path(checkpoint) if checkpoint is not None else files["checkpoint"]
        vae_path, vocoder_source, clip_source = files["vae"], files["vocoder"], files["clip"]
    else:
        ckpt = (Path(checkpoint) if checkpoint is not None
                else weights_registry.resolve(spec.checkpoint, weights_dir, offline))
        vae_path = weights_registry.resolve("v1-44.pth", weights_dir, offline)
        vocoder_source = weights_registry.resolve(weights_registry.VOCODER_REPO, weights_dir,
                                                  offline)
        clip_source = (weights_registry.resolve(weights_registry.CLIP_REPO, weights_dir, offline)
                       if need_clip else None)
    if not ckpt.is_file():
        raise UserInputError("weights file not found", ckpt)
    network, synchformer = build_from_weights(read_weights_file(ckpt), str(ckpt), spec.network)
    codec_mode = "debug" if spec.debug else "44k"
    vae = load_vae(vae_path, codec_mode, need_encoder=need_vae_encoder)
    vocoder = load_vocoder(vocoder_source, local_files_only=True)
    codec = AudioCodec(vae, vocoder, AudioCodecConfig.for_mode("44k").mel)
    clip = None
    if need_clip:
        clip = (_load_debug_clip(clip_source) if spec.debug
                else ClipEncoder.from_pretrained(f"local-dir:{clip_source}"))
    models = SAGANetModels(network, synchformer, clip, codec, CONFIG_44K_SA)
    models.to(device=device, dtype=dtype)
    models.set_duration(CONFIG_44K_SA.duration)
    log.info("loaded variant %s from %s (%s, %s)", variant, ckpt, device, dtype)
    return models


def _debug_paths(weights_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    if weights_dir is None:
        raise UserInputError("the debug variant needs --weights_dir: create one with "
                             "`python -m saganet.weights debug DIR`")
    root = Path(weights_dir).expanduser()
    paths = {name: root / rel for name, rel in DEBUG_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise UserInputError(f"debug weights missing ({', '.join(missing)}); create them with "
                             f"`python -m saganet.weights debug {root}`", root)
    return paths


def _load_debug_clip(path: Path) -> ClipEncoder:
    content = load_checkpoint_file(os.fspath(path))
    clip = tiny_clip(**content["config"])
    clip.model.load_state_dict(content["state_dict"], strict=True)
    return clip


def build_debug_models(seed: int = 0) -> SAGANetModels:
    """Random tiny models of the ``debug`` variant (no files involved).

    Zero-initialised layers that would make the pipeline ignore its inputs (gates, LoRA,
    adaLN, final layer) get small random values, so different inputs give different audio.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network("debug")
        synchformer = SynchformerWithContext(SynchformerConfig.debug())
        codec = AudioCodec.from_config(AudioCodecConfig.debug())
        stats = torch.randn(2, 1, 1, network.config.latent_dim)
        with torch.no_grad():
            network.latent_mean.copy_(stats[0] * 0.1)
            network.latent_std.copy_(stats[1].abs() * 0.1 + 0.5)
            network.empty_string_feat.normal_(std=0.1)
            for model in (network, synchformer):
                for param in model.parameters():
                    if not param.abs().any():
                        param.normal_(std=0.05)
    clip = tiny_clip(embed_dim=network.config.clip_dim, text_width=network.config.text_dim,
                     seed=DEBUG_CLIP_SEED)
    return SAGANetModels(network.eval(), synchformer.eval(), clip, codec.eval(), CONFIG_44K_SA)


def write_debug_weights(directory: str | os.PathLike[str], seed: int = 0) -> dict[str, Path]:
    """Write random tiny ``debug`` weights in the published layout.

    Args:
        directory: output folder; gets ``weights/saganet_debug.pth`` (network, synchformer,
            lora, config), ``ext_weights/vae_debug.pth``, ``ext_weights/bigvgan_debug/``
            (``config.json`` + ``bigvgan_generator.pt``) and ``ext_weights/clip_debug.pth``.
        seed: seed of the random weights.

    Returns:
        The written paths by role.
    """
    root = Path(directory).expanduser()
    paths = {name: root / rel for name, rel in DEBUG_FILES.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        models = build_debug_models(seed)
        codec_config = AudioCodecConfig.debug()
        # The published VAE and vocoder files hold weights before normalisation is folded in,
        # so write freshly built (unfolded) modules rather than the folded ones above.
        vae, vocoder = VAE(codec_config.vae), BigVGAN(codec_config.vocoder)
    atomic_save(weights_file_dict(models.network, models.synchformer, "debug"),
                paths["checkpoint"])
    atomic_save(vae.state_dict(), paths["vae"])
    atomic_save({"generator": vocoder.state_dict()}, paths["vocoder"] / "bigvgan_generator.pt")
    (paths["vocoder"] / "config.json").write_text(json.dumps(codec_config.vocoder.to_dict(),
                                                             indent=2))
    clip = models.clip
    atomic_save({
        "config": {"embed_dim": clip.embed_dim, "text_width": clip.text_width,
                   "seed": DEBUG_CLIP_SEED},
        "state_dict": clip.model.state_dict(),
    }, paths["clip"])
    return paths
