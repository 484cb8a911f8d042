"""Pipeline variants: from a ``--variant`` name to loaded :class:`SAGANetModels`.

A *pipeline variant* names a flow network size, the weights file that holds its
``network``/``synchformer``/``lora`` entries, and the encoders and codec it runs with.
:func:`load_models` resolves the files through the weight cache (downloading what is missing,
or generating the ``debug`` variant's random weights on first use) and loads them strictly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from saganet import dist
from saganet import weights as weights_registry
from saganet.checkpoint import build_from_weights, check_weights_layout, read_weights_file
from saganet.codec import AudioCodec, AudioCodecConfig, load_vae, load_vocoder
from saganet.debug_weights import ensure_debug_weights, load_debug_clip
from saganet.errors import UserInputError
from saganet.model import CONFIG_44K_SA, VARIANTS, SequenceConfig, merge_lora
from saganet.models import SAGANetModels
from saganet.state_dict import check_weights_file

if TYPE_CHECKING:
    # Imported where CLIP is built: it imports open_clip (seconds).
    from saganet.features.clip import ClipEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineVariant:
    """What one ``--variant`` runs.

    Args:
        network: key of :data:`saganet.model.VARIANTS`.
        checkpoint: registry name of the weights file (``network``, ``synchformer``, ``lora``).
        group: registry group prefetched by ``python -m saganet.weights fetch``.
        debug: tiny random weights generated on first use (:mod:`saganet.debug_weights`).
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

def pipeline_variant(name: str) -> PipelineVariant:
    """Look up a ``--variant`` name; unknown names list the valid ones."""
    if name not in PIPELINES:
        raise UserInputError(f"unknown variant {name!r}; choose one of {', '.join(PIPELINES)}")
    return PIPELINES[name]


# What a network takes in: a pipeline variant's encoders and codec feed any network size that
# takes the same (a file from training a medium network runs with saganet_small's encoders).
_INPUT_FIELDS = ("latent_dim", "clip_dim", "sync_dim", "text_dim", "latent_seq_len",
                 "clip_seq_len", "sync_seq_len", "text_seq_len")


def _same_inputs(network: str, other: str) -> bool:
    """Whether two network sizes (keys of :data:`saganet.model.VARIANTS`) take the same
    features, in width and length."""
    first, second = VARIANTS.get(network), VARIANTS.get(other)
    return (first is not None and second is not None
            and all(getattr(first, f) == getattr(second, f) for f in _INPUT_FIELDS))


def check_checkpoint(variant: str, checkpoint: str | os.PathLike[str], *,
                     option: str = "variant {!r}") -> None:
    """Before anything slow runs: ``checkpoint`` is a SAGANet weights file whose network (when
    it records one, as training's files do) takes the features of pipeline ``variant``'s
    encoders. Its size may differ (the file rebuilds its own network): a medium network trained
    here runs with ``saganet_small``'s CLIP, Synchformer and codec.

    Args:
        variant: the pipeline variant whose encoders will feed the file's network.
        checkpoint: the weights file.
        option: how the caller's user chooses a variant, ``{}`` for its name (the hint of the
            error): the argument for Python callers (the default), a command's
            ``--variant {}`` or a Hydra override.

    Raises:
        UserInputError: not such a file, or a network fed by other encoders (naming the
            variants that fit).
    """
    recorded = check_weights_layout(checkpoint)
    expected = pipeline_variant(variant).network
    if recorded is not None and not _same_inputs(recorded, expected):
        fitting = [name for name, spec in PIPELINES.items()
                   if _same_inputs(recorded, spec.network)]
        hint = f"; pass {' or '.join(map(option.format, fitting))}" if fitting else ""
        raise UserInputError(f"holds a {recorded!r} network, which variant {variant!r}'s "
                             f"encoders do not feed{hint}", checkpoint)


def required_files(variant: str, *, checkpoint: str | os.PathLike[str] | None = None,
                   need_clip: bool = True) -> list[str]:
    """Registry names of the published files a variant loads (none for ``debug``)."""
    spec = pipeline_variant(variant)
    if spec.debug:
        return []
    names = [] if checkpoint is not None else [spec.checkpoint]
    names += ["v1-44.pth", weights_registry.VOCODER_REPO]
    return names + ([weights_registry.CLIP_REPO] if need_clip else [])


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
        weights_dir: weights folder (default: the user cache). The ``debug`` variant's files
            are generated there on first use.
        checkpoint: a weights file to use instead of the variant's published one (e.g. one
            written by ``train.py``); its ``config`` entry, if any, decides the sizes.
        device: where the models run: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a :class:`torch.device`; checked before
            anything loads.
        dtype: parameter dtype (bf16 halves memory on GPUs; fp32 on CPU).
        offline: never download (default: ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``).
        need_clip: load CLIP (not needed when CLIP/text features are precomputed).
        need_vae_encoder: keep the VAE encoder (only feature extraction for training needs it).
    """
    spec = pipeline_variant(variant)
    # Before any file is read: a machine without the device (or a dtype torch cannot cast
    # modules to) fails in a second, not after gigabytes of weights have loaded.
    device = dist.resolve_device(device)
    check_dtype(dtype)
    if checkpoint is not None:
        # Before anything is fetched: a mistyped path must not wait for (or, offline, be
        # reported as) missing downloads.
        check_weights_file(checkpoint)
    if spec.debug:
        files = ensure_debug_weights(weights_registry.cache_dir(weights_dir))
        ckpt = Path(checkpoint) if checkpoint is not None else files["checkpoint"]
        vae_path, vocoder_source, clip_source = files["vae"], files["vocoder"], files["clip"]
    else:
        files = weights_registry.resolve_all(
            required_files(variant, checkpoint=checkpoint, need_clip=need_clip), weights_dir,
            offline)
        ckpt = Path(checkpoint) if checkpoint is not None else files[spec.checkpoint]
        vae_path = files["v1-44.pth"]
        vocoder_source = files[weights_registry.VOCODER_REPO]
        clip_source = files.get(weights_registry.CLIP_REPO)
    # Building the modules draws their (overwritten) initial weights: from a forked generator,
    # so that loading models leaves the caller's torch.manual_seed sequence where it was.
    with torch.random.fork_rng(devices=[]):
        network, synchformer = build_from_weights(read_weights_file(ckpt), str(ckpt),
                                                  spec.network)
        # Inference only: fold the LoRA updates in once instead of adding them at every call
        # (the same arithmetic, so the same values).
        merge_lora(network)
        codec_mode = "debug" if spec.debug else "44k"
        vae = load_vae(vae_path, codec_mode, need_encoder=need_vae_encoder)
        vocoder = load_vocoder(vocoder_source, local_files_only=True)
        codec = AudioCodec(vae, vocoder, AudioCodecConfig.for_mode("44k").mel)
        clip = _build_clip(clip_source, spec.debug) if need_clip else None
    models = SAGANetModels(network, synchformer, clip, codec, CONFIG_44K_SA)
    models.variant = variant
    models.checkpoint_name = None if checkpoint is None else Path(checkpoint).name
    models.to(device=device, dtype=dtype)
    models.set_duration(CONFIG_44K_SA.duration)
    log.info("loaded variant %s from %s (%s, %s)", variant, ckpt, device, dtype)
    return models


def load_clip(
    variant: str,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    offline: bool | None = None,
) -> ClipEncoder:
    """CLIP alone, as :func:`load_models` would load it (downloading it if missing).

    A one-shot run encodes every CLIP feature with it, releases it and only then loads the
    other models with ``need_clip=False`` (:func:`saganet.soundtrack.encode_clip_features`):
    the two never share the memory.

    Args:
        variant: a key of :data:`PIPELINES`.
        weights_dir: weights folder (default: the user cache).
        device: where CLIP runs (as for :func:`load_models`).
        dtype: parameter dtype.
        offline: never download (default: ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``).
    """
    spec = pipeline_variant(variant)
    device = dist.resolve_device(device)
    check_dtype(dtype)
    if spec.debug:
        source = ensure_debug_weights(weights_registry.cache_dir(weights_dir))["clip"]
    else:
        source = weights_registry.resolve_all([weights_registry.CLIP_REPO], weights_dir,
                                              offline)[weights_registry.CLIP_REPO]
    with torch.random.fork_rng(devices=[]):  # as in load_models
        clip = _build_clip(source, spec.debug)
    return clip.to(device=device, dtype=dtype)


def check_dtype(dtype: object) -> torch.dtype:
    """``dtype`` if models can run in it: a floating-point ``torch.dtype``.

    Raises:
        UserInputError: anything else (a string such as ``"bfloat16"``, an integer dtype).
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise UserInputError(f"dtype must be a floating-point torch.dtype (torch.float32, "
                             f"torch.bfloat16, torch.float16), got {dtype!r}")
    return dtype


def window_layout(variant: str) -> tuple[SequenceConfig, int]:
    """How :func:`load_models`' models cut a long video: the clip length they were trained on,
    and waveform samples per latent (what :func:`saganet.soundtrack.plan_soundtrack` needs
    before any model is loaded)."""
    codec = AudioCodecConfig.debug() if pipeline_variant(variant).debug else \
        AudioCodecConfig.for_mode("44k")
    return CONFIG_44K_SA, codec.samples_per_latent


def _build_clip(source: Path, debug: bool) -> ClipEncoder:
    if debug:
        return load_debug_clip(source)
    from saganet.features.clip import ClipEncoder
    return ClipEncoder.from_pretrained(f"local-dir:{source}")
