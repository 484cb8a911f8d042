"""The ``debug`` variant: tiny random weights in the published layout, made on this machine.

Nothing of the ``debug`` variant is downloaded: its files are generated from a seed, the first
time they are needed, into ``<cache>/debug`` (or a folder of the user's choice), so the whole
pipeline runs on a fresh clone without network access. Zero-initialised layers get small
random values, so that different inputs give different audio.

    python -m saganet.debug_weights [DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from saganet.checkpoint import weights_file_dict
from saganet.cli import CACHE_DEFAULT
from saganet.codec import VAE, AudioCodec, AudioCodecConfig, BigVGAN
from saganet.codec.bigvgan import BigVGANConfig
from saganet.errors import UserInputError, report_user_error
from saganet.features import SynchformerConfig, SynchformerWithContext
from saganet.fileio import locked_folder
from saganet.model import CONFIG_44K_SA, build_network
from saganet.models import SAGANetModels
from saganet.state_dict import atomic_save, load_checkpoint_file
from saganet.weights import cache_dir, remove_leftovers

if TYPE_CHECKING:
    # Imported where the tiny CLIP is built: it imports open_clip (seconds).
    from saganet.features.clip import ClipEncoder

log = logging.getLogger(__name__)

# Layout of a debug weights folder, mirroring the published one (weights/ and ext_weights/).
DEBUG_FILES = {
    "checkpoint": Path("weights") / "saganet_debug.pth",
    "vae": Path("ext_weights") / "vae_debug.pth",
    "vocoder": Path("ext_weights") / "bigvgan_debug",
    "clip": Path("ext_weights") / "clip_debug.pth",
}
DEBUG_CLIP_SEED = 0


def debug_paths(root: str | os.PathLike[str]) -> dict[str, Path]:
    """Where the debug files of a weights folder are, by role."""
    root = Path(root).expanduser()
    return {name: root / rel for name, rel in DEBUG_FILES.items()}


def ensure_debug_weights(root: str | os.PathLike[str], seed: int = 0) -> dict[str, Path]:
    """The debug files under ``root``, written first if any is missing.

    Concurrent processes (test workers, ranks) write them once: the others wait for the lock
    and then find them complete.

    Args:
        root: the weights folder (``--weights_dir``, or the user cache).
        seed: seed of the random weights, for files that do not exist yet.
    """
    paths = debug_paths(root)
    remove_leftovers(root)
    if all(p.exists() for p in paths.values()):
        return paths
    root = Path(root).expanduser()
    with locked_folder(root, ".debug_weights.lock", lambda err: _unwritable(root, err)):
        if not all(p.exists() for p in paths.values()):
            log.info("writing the debug variant's random weights to %s", root)
            write_debug_weights(root, seed=seed)
    return paths


def _unwritable(root: Path, err: OSError) -> UserInputError:
    return UserInputError(f"cannot write the debug weights here ({err.strerror or err}); "
                          "choose a writable folder with --weights_dir (weights_dir= from "
                          "Python) or SAGANET_CACHE", root)


def load_debug_clip(path: Path) -> ClipEncoder:
    """The tiny CLIP stand-in written by :func:`write_debug_weights`."""
    from saganet.features.clip import tiny_clip
    content = load_checkpoint_file(os.fspath(path))
    clip = tiny_clip(**content["config"])
    clip.model.load_state_dict(content["state_dict"], strict=True)
    return clip


# Random tiny weights leave the mask's path to the audio far weaker than the other inputs'
# (the Synchformer tokens reach the network ~50x smaller than the time embedding) and the
# vocoder's HiFi-GAN initialisation (std 0.01) near silent: these gains make the debug variant's
# audio vary with its inputs, so end-to-end tests can tell whether the mask reaches the audio.
SYNC_TOKEN_GAIN = 100.0
ADALN_GAIN = 2.0
# Vocoder convolutions get variance-preserving weights (std gain / sqrt(fan_in)); the output
# convolution a smaller one, for audio at roughly -20 dBFS instead of clipping.
VOCODER_GAIN = 0.8
VOCODER_OUTPUT_GAIN = 0.1


def _debug_vocoder(config: BigVGANConfig) -> BigVGAN:
    """A BigVGAN with audible random weights, still weight-normalised (as published)."""
    vocoder = BigVGAN(config)
    with torch.no_grad():
        for layer in vocoder.weight_norm_layers():
            direction = layer.parametrizations.weight.original1
            if isinstance(layer, nn.ConvTranspose1d):
                fan_in = direction.shape[0] * direction.shape[2] / layer.stride[0]
            else:
                fan_in = direction.shape[1] * direction.shape[2]
            gain = VOCODER_OUTPUT_GAIN if layer is vocoder.conv_post else VOCODER_GAIN
            # The magnitude of each (dim 0) slice: its element count times the target variance.
            norm = gain * math.sqrt(direction[0].numel() / fan_in)
            layer.parametrizations.weight.original0.fill_(norm)
    return vocoder


def _debug_codec_modules(seed: int) -> tuple[VAE, BigVGAN]:
    """The debug VAE and vocoder as published files hold them (weight norm not folded)."""
    config = AudioCodecConfig.debug()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VAE(config.vae), _debug_vocoder(config.vocoder)


def build_debug_models(seed: int = 0) -> SAGANetModels:
    """Random tiny models of the ``debug`` variant (no files involved); equal to what
    :func:`write_debug_weights` writes for the same seed.

    Zero-initialised layers that would make the pipeline ignore its inputs (gates, LoRA,
    adaLN, final layer) get small random values, and the gains above make the audio follow
    the inputs.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network("debug")
        synchformer = SynchformerWithContext(SynchformerConfig.debug())
        stats = torch.randn(2, 1, 1, network.config.latent_dim)
        with torch.no_grad():
            network.latent_mean.copy_(stats[0] * 0.1)
            network.latent_std.copy_(stats[1].abs() * 0.1 + 0.5)
            network.empty_string_feat.normal_(std=0.1)
            for model in (network, synchformer):
                for param in model.parameters():
                    if not param.abs().any():
                        param.normal_(std=0.05)
            network.sync_input_proj[-1].w2.weight.mul_(SYNC_TOKEN_GAIN)
            for name, param in network.named_parameters():
                if "adaLN_modulation" in name:
                    param.mul_(ADALN_GAIN)
    vae, vocoder = _debug_codec_modules(seed)
    codec = AudioCodec(vae, vocoder, AudioCodecConfig.debug().mel)
    from saganet.features.clip import tiny_clip
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
    paths = debug_paths(directory)
    models = build_debug_models(seed)
    # The published VAE and vocoder files hold weights before normalisation is folded in,
    # so write the unfolded modules rather than the codec's folded ones.
    vae, vocoder = _debug_codec_modules(seed)
    atomic_save(weights_file_dict(models.network, models.synchformer, "debug"),
                paths["checkpoint"])
    atomic_save(vae.state_dict(), paths["vae"])
    atomic_save({"generator": vocoder.state_dict()}, paths["vocoder"] / "bigvgan_generator.pt")
    (paths["vocoder"] / "config.json").write_text(json.dumps(vocoder.config.to_dict(),
                                                             indent=2))
    clip = models.clip_encoder
    atomic_save({
        "config": {"embed_dim": clip.embed_dim, "text_width": clip.text_width,
                   "seed": DEBUG_CLIP_SEED},
        "state_dict": clip.model.state_dict(),
    }, paths["clip"])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m saganet.debug_weights [DIR] [--seed N]``: write the debug weights."""
    parser = argparse.ArgumentParser(prog="python -m saganet.debug_weights",
                                     description="Write random tiny weights of the debug "
                                                 "variant (nothing is downloaded).")
    parser.add_argument("directory", nargs="?", type=Path, default=None,
                        help=f"weights folder (default: {CACHE_DEFAULT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    root = cache_dir(args.directory)
    try:
        paths = write_debug_weights(root, seed=args.seed)
    except OSError as err:
        return report_user_error(parser.prog, _unwritable(root, err))
    for role, path in paths.items():
        print(f"{role}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
