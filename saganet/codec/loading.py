"""Loading the published codec weights: the VAE checkpoints and the BigVGAN vocoders.

* VAE: ``v1-44.pth`` / ``v1-16.pth``, flat state dicts, loaded strictly.
* Vocoder (44.1 kHz): a Hugging Face repo (``nvidia/bigvgan_v2_44khz_128band_512x``) or a
  local directory holding its two files, ``config.json`` and ``bigvgan_generator.pt``
  (``{"generator": state_dict}``). Hub files go through the Hugging Face cache; offline mode
  (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) never touches the network and says which
  files are missing and where to put them.
* Vocoder (16 kHz): the single file ``best_netG.pt`` with the named v1 config.

Everything returned is in eval mode with gradients off and weight norms folded.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from torch import nn

from saganet.codec.bigvgan import BigVGAN, BigVGANConfig
from saganet.codec.vae import VAE, VAEConfig, vae_config
from saganet.errors import UserInputError
from saganet.state_dict import CheckpointMismatchError, load_checkpoint_file, load_state_dict_strict

log = logging.getLogger(__name__)

VOCODER_REPO_44K = "nvidia/bigvgan_v2_44khz_128band_512x"
VOCODER_CONFIG_FILE = "config.json"
VOCODER_WEIGHTS_FILE = "bigvgan_generator.pt"
_VOCODER_FILES = (VOCODER_CONFIG_FILE, VOCODER_WEIGHTS_FILE)
_TRUE = {"1", "ON", "YES", "TRUE"}


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter; returns ``module``."""
    module.eval()
    module.requires_grad_(False)
    return module


def load_vae(path: str | os.PathLike[str], mode: str = "44k", need_encoder: bool = True, *,
             config: VAEConfig | None = None) -> VAE:
    """Build the VAE of ``mode``, load ``path`` strictly and fold its weight normalisation.

    Args:
        path: ``v1-44.pth`` (modes "44k"/"44k_sa") or ``v1-16.pth`` ("16k").
        mode: sampling-rate family, selects the size.
        need_encoder: keep the encoder (training-data extraction); inference only decodes.
        config: architecture overriding ``mode`` (tests use the tiny "debug" size).
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError("VAE checkpoint not found (download it with the weights "
                             "registry or pass the right path)", path)
    vae = VAE(config if config is not None else vae_config(mode)).eval()
    load_state_dict_strict(vae, load_checkpoint_file(str(path)), what=str(path))
    # Fold in fp32, once, right after loading and before any dtype cast.
    vae.remove_weight_norm()
    if not need_encoder:
        vae.drop_encoder()
    return freeze(vae)


def _hub_offline(local_files_only: bool | None) -> bool:
    if local_files_only is not None:
        return local_files_only
    # huggingface_hub reads the variable at import; read it again so a later export counts.
    return hf_constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def _download_vocoder_files(repo_id: str, *, local_files_only: bool | None,
                            cache_dir: str | os.PathLike[str] | None,
                            revision: str | None) -> tuple[Path, Path]:
    """Fetch (or find in the cache) ``config.json`` and ``bigvgan_generator.pt`` of a repo."""
    offline = _hub_offline(local_files_only)
    found: dict[str, Path] = {}
    missing: list[str] = []
    failure = ""
    for filename in _VOCODER_FILES:
        try:
            found[filename] = Path(hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=cache_dir,
                local_files_only=offline))
        except LocalEntryNotFoundError as err:
            # Not cached, and either offline or the Hub could not be reached.
            missing.append(filename)
            failure = str(err).splitlines()[0] if str(err) else type(err).__name__
        except RepositoryNotFoundError as err:
            raise UserInputError(f"vocoder: no Hugging Face repo {repo_id!r} (or it needs a "
                                 f"token); and no local directory of that name exists") from err
        except RevisionNotFoundError as err:
            raise UserInputError(f"vocoder: repo {repo_id!r} has no revision {revision!r}") from err
        except EntryNotFoundError as err:
            raise UserInputError(f"vocoder: repo {repo_id!r} has no file {filename!r}; "
                                 f"it is not a BigVGAN repo") from err
    if missing:
        cache = Path(cache_dir) if cache_dir is not None else Path(hf_constants.HF_HUB_CACHE)
        why = ("downloads are off (HF_HUB_OFFLINE=1 or local_files_only)" if offline
               else f"the download failed ({failure})")
        both = " and ".join(_VOCODER_FILES)
        raise UserInputError(
            f"vocoder {repo_id}: {', '.join(missing)} not in the Hugging Face cache ({cache}) and "
            f"{why}. Either run once online to fill the cache, or put {both} (from "
            f"https://huggingface.co/{repo_id}) in one directory and pass that directory as the "
            f"vocoder source")
    return found[VOCODER_CONFIG_FILE], found[VOCODER_WEIGHTS_FILE]


def _read_vocoder_config(path: Path) -> BigVGANConfig:
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserInputError(f"not valid JSON ({err})", path) from err
    try:
        return BigVGANConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"not a BigVGAN generator config ({err})", path) from err


def _looks_like_repo_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))


def load_vocoder(source: str | os.PathLike[str], *, config: BigVGANConfig | None = None,
                 local_files_only: bool | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, revision: str | None = None,
                 fold_weight_norm: bool = True) -> BigVGAN:
    """Load a BigVGAN generator from a hub repo, a local directory or a checkpoint file.

    Args:
        source: a Hugging Face repo id (e.g. ``nvidia/bigvgan_v2_44khz_128band_512x``), a
            directory holding ``config.json`` and ``bigvgan_generator.pt``, or a generator
            checkpoint file (``{"generator": state_dict}``, e.g. the 16 kHz ``best_netG.pt``).
        config: generator hyper-parameters; default: the ``config.json`` of the source
            (required for a bare checkpoint file without a ``config.json`` beside it).
        local_files_only: never download; ``None`` follows ``HF_HUB_OFFLINE``.
        cache_dir: Hugging Face cache directory (default: the library's).
        revision: hub revision (default: latest, as the reference does).
        fold_weight_norm: fold weight normalisation into plain weights (for inference).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        missing = [name for name in _VOCODER_FILES if not (path / name).is_file()]
        if config is not None and VOCODER_CONFIG_FILE in missing:
            missing.remove(VOCODER_CONFIG_FILE)
        if missing:
            raise UserInputError(f"vocoder directory lacks {', '.join(missing)} (expected "
                                 f"{' and '.join(_VOCODER_FILES)})", path)
        config_path, weights_path = path / VOCODER_CONFIG_FILE, path / VOCODER_WEIGHTS_FILE
    elif path.is_file():
        config_path, weights_path = path.parent / VOCODER_CONFIG_FILE, path
        if config is None and not config_path.is_file():
            raise UserInputError("vocoder checkpoint file needs a config (pass one, or put its "
                                 f"{VOCODER_CONFIG_FILE} beside it)", path)
    elif _looks_like_repo_id(str(source)):
        config_path, weights_path = _download_vocoder_files(
            str(source), local_files_only=local_files_only, cache_dir=cache_dir,
            revision=revision)
    else:
        raise UserInputError("vocoder source is neither a directory, a file nor a Hugging Face "
                             "repo id (owner/name)", source)

    if config is None:
        config = _read_vocoder_config(config_path)
    vocoder = BigVGAN(config)
    checkpoint = load_checkpoint_file(str(weights_path))
    if not isinstance(checkpoint, dict) or "generator" not in checkpoint:
        keys = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointMismatchError(f"{weights_path}: no 'generator' entry (found {keys})")
    vocoder.load_weights(checkpoint["generator"], what=f"{weights_path} ['generator']")
    if fold_weight_norm:
        vocoder.remove_weight_norm()
    log.info("loaded vocoder from %s (%d-x upsampling)", source, config.upsample_factor)
    return freeze(vocoder)
