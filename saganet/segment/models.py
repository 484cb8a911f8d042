"""Which segmentation model tracks the objects, and loading it (Hugging Face ``transformers``).

Clicks and boxes are tracked by SAM 2.1 (``tiny`` by default; ``small``, ``base-plus``,
``large``), phrases by SAM 3. Weights come through :mod:`saganet.weights` (a hub download
into the user's cache, a folder placed by hand, offline mode) or from any local folder written
by ``save_pretrained``. SAM 3 is gated on the hub and under its own licence, so it is never
downloaded as a side effect of tracking: ``python -m saganet.weights fetch segment_text``
downloads it on request, once access is granted.

``transformers`` is imported only here, inside the loaders: it takes seconds to import.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saganet import weights
from saganet.dist import resolve_device
from saganet.errors import UserInputError
from saganet.fileio import exclusive
from saganet.leftovers import owned_folder
from saganet.weights.registry import SAM2_REPOS, SAM3_REPO

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "tiny"
# Tiny random weights generated on first use (no download): runs the whole path, means nothing.
DEBUG_MODEL = "debug"
# Accepted spellings of the SAM 2.1 sizes (the hub writes base-plus, Python names base_plus).
_ALIASES = {"base_plus": "base-plus", "baseplus": "base-plus", "b+": "base-plus"}

SAM3_ACCESS = (f"text prompts need SAM 3 ({SAM3_REPO}, gated, SAM License), which is never "
               f"downloaded automatically: request access at https://huggingface.co/{SAM3_REPO}"
               ", log in with `hf auth login`, then run `python -m saganet.weights fetch "
               "segment_text`; or pass a local copy with --segment_text_model (demo.py, the "
               "batch command), --text_model (app.py, python -m saganet.segment) or "
               "text_model= from Python (track_objects)")


@dataclass
class Segmenter:
    """A loaded model and its processor.

    Args:
        model: ``Sam2VideoModel`` (clicks, boxes) or ``Sam3VideoModel`` (phrases).
        processor: the matching ``Sam2VideoProcessor`` / ``Sam3VideoProcessor``.
        source: where the weights came from (for messages).
        device: where the model runs.
    """

    model: Any
    processor: Any
    source: str
    device: torch.device


def _local_folder(name: str | os.PathLike[str]) -> Path | None:
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def _check_loading(info: dict[str, Any], source: str) -> None:
    """Strict semantics: every key of the network is in the checkpoint and nothing else."""
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = list(info.get(kind) or [])
        if keys:
            shown = ", ".join(str(k) for k in keys[:5])
            problems.append(f"{len(keys)} {kind.replace('_', ' ')} ({shown}"
                            f"{', ...' if len(keys) > 5 else ''})")
    if problems:
        raise UserInputError(f"the checkpoint does not fit the model: {'; '.join(problems)}",
                             source)


def sam2_folder(model: str | os.PathLike[str] = DEFAULT_MODEL,
                weights_dir: str | os.PathLike[str] | None = None,
                offline: bool | None = None) -> Path:
    """Local folder holding a SAM 2.1 video model, downloading a published size if needed.

    Args:
        model: ``tiny``, ``small``, ``base-plus`` or ``large``, ``debug`` (tiny random weights
            made locally), or a folder written by ``Sam2VideoModel.save_pretrained``.
        weights_dir: cache folder (see :func:`saganet.weights.cache_dir`).
        offline: forbid downloads; None reads ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``.

    Raises:
        UserInputError: unknown size, or offline with the files missing.
    """
    folder = _local_folder(model)
    if folder is not None:
        return folder
    if str(model) == DEBUG_MODEL:
        return _debug_folder(weights_dir)
    size = _ALIASES.get(str(model), str(model))
    if size not in SAM2_REPOS:
        raise UserInputError(f"unknown segmentation model {model!r}: use one of "
                             f"{', '.join(SAM2_REPOS)}, {DEBUG_MODEL} or a local model folder")
    return weights.resolve(SAM2_REPOS[size], weights_dir, offline)


def tracker_for(choice: str | None, debug: bool) -> str:
    """The SAM 2.1 model that tracks clicks and boxes: the user's ``choice``, else the tiny
    published one, or the random debug one next to the ``debug`` variant (nothing to download).

    Args:
        choice: a ``--segment_model`` value, or None.
        debug: the sound model is the debug variant.
    """
    if choice is not None:
        return choice
    return DEBUG_MODEL if debug else DEFAULT_MODEL


def required_files(model: str | os.PathLike[str] = DEFAULT_MODEL) -> list[str]:
    """Registry names of the published files tracking with ``model`` needs (none for a local
    folder or ``debug``), e.g. to list what offline mode lacks before anything runs."""
    if _local_folder(model) is not None or str(model) == DEBUG_MODEL:
        return []
    size = _ALIASES.get(str(model), str(model))
    return [SAM2_REPOS[size]] if size in SAM2_REPOS else []


def _debug_folder(weights_dir: str | os.PathLike[str] | None) -> Path:
    """``<cache>/debug/sam2_video``: tiny random SAM 2 weights, written on first use."""
    folder = weights.cache_dir(weights_dir) / "debug" / "sam2_video"
    if (folder / "model.safetensors").is_file():
        return folder
    from saganet.segment.debug_models import write_tiny_sam2

    folder.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(folder.parent / ".sam2_video.lock"):
        if not (folder / "model.safetensors").is_file():
            # Written beside and renamed, so a half-written folder is never found.
            with owned_folder(folder.parent, f".{folder.name}.") as tmp:
                os.replace(write_tiny_sam2(tmp / "model"), folder)
    return folder


def sam3_folder(model: str | os.PathLike[str] | None = None,
                weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Local folder holding SAM 3; never downloads (the model is gated).

    Args:
        model: a local folder, or None for the cache's copy of ``facebook/sam3``.
        weights_dir: cache folder (see :func:`saganet.weights.cache_dir`).

    Raises:
        UserInputError: no local copy; the message says how to get one.
    """
    if model is not None:
        folder = _local_folder(model)
        if folder is None:
            raise UserInputError(f"SAM 3 model folder {model} does not exist; {SAM3_ACCESS}")
        return folder
    try:
        return weights.resolve(SAM3_REPO, weights_dir, offline=True)
    except UserInputError as err:
        where = weights.cache_dir(weights_dir) / "hub" / SAM3_REPO
        raise UserInputError(f"{SAM3_ACCESS} (or put its files into {where}/)") from err


def load_sam2(folder: Path, device: str | torch.device = "cpu") -> Segmenter:
    """Load a SAM 2.1 video model and build its processor.

    The processor is SAM 2's own preprocessing (squash resize to the model's square input,
    ImageNet mean and std) sized from the model's ``image_size``, so a folder needs only the
    network's ``config.json`` and weights.

    Args:
        folder: a folder with ``config.json`` and ``model.safetensors``.
        device: where to run.

    Raises:
        UserInputError: the folder does not hold a SAM 2 video model, or its weights do not fit.
    """
    from transformers import (
        Sam2ImageProcessor,
        Sam2VideoConfig,
        Sam2VideoModel,
        Sam2VideoProcessor,
        Sam2VideoVideoProcessor,
    )

    try:
        config = Sam2VideoConfig.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise UserInputError(f"not a SAM 2 video model folder ({err})".replace("\n", " "),
                             folder) from None
    if config.model_type != "sam2_video":
        raise UserInputError(f"holds a {config.model_type!r} model, not a SAM 2 video model",
                             folder)
    with transformers_bars_off():
        model, info = Sam2VideoModel.from_pretrained(folder, config=config, dtype=torch.float32,
                                                     output_loading_info=True)
    _check_loading(info, str(folder))
    device = resolve_device(device)
    size = {"height": config.image_size, "width": config.image_size}
    processor = Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size=size),
                                   video_processor=Sam2VideoVideoProcessor(size=size),
                                   target_size=config.image_size)
    return Segmenter(model.to(device).eval(), processor, str(folder), device)


@contextmanager
def transformers_bars_off() -> Iterator[None]:
    """transformers' own progress bars off while a model loads or saves ('Loading weights',
    'Writing model shards'): a fraction of a second each, they were only noise in the logs of
    the demo, the segment command and the app. Its setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_sam3(folder: Path, device: str | torch.device = "cpu") -> Segmenter:
    """Load SAM 3 (video, text prompts) and its processor from a local folder.

    Args:
        folder: a folder written by ``save_pretrained`` (model, processor and tokenizer).
        device: where to run.

    Raises:
        UserInputError: the folder does not hold a SAM 3 video model, or its weights do not fit.
    """
    from transformers import Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor

    try:
        config = Sam3VideoConfig.from_pretrained(folder)
        processor = Sam3VideoProcessor.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as err:
        raise UserInputError(f"not a SAM 3 video model folder ({err})".replace("\n", " "),
                             folder) from None
    with transformers_bars_off():
        model, info = Sam3VideoModel.from_pretrained(folder, config=config, dtype=torch.float32,
                                                     output_loading_info=True)
    _check_loading(info, str(folder))
    device = resolve_device(device)
    return Segmenter(model.to(device).eval(), processor, str(folder), device)


class SegmenterCache:
    """Loaded segmentation models kept for reuse, one per folder and device.

    A long-running caller (the web app) tracks many times with the same model; this loads it
    once. The models are only read while tracking (each run has its own session), so runs may
    share them.
    """

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, Path, str], Segmenter] = {}
        self._lock = threading.Lock()

    def _get(self, kind: str, folder: Path, device: str | torch.device) -> Segmenter:
        key = (kind, Path(folder).resolve(), str(resolve_device(device)))
        with self._lock:
            if key not in self._loaded:
                loader = load_sam2 if kind == "sam2" else load_sam3
                self._loaded[key] = loader(folder, device)
            return self._loaded[key]

    def sam2(self, folder: Path, device: str | torch.device = "cpu") -> Segmenter:
        """The SAM 2.1 model in ``folder`` (see :func:`load_sam2`), loaded on first use."""
        return self._get("sam2", folder, device)

    def sam3(self, folder: Path, device: str | torch.device = "cpu") -> Segmenter:
        """The SAM 3 model in ``folder`` (see :func:`load_sam3`), loaded on first use."""
        return self._get("sam3", folder, device)

    def __len__(self) -> int:
        return len(self._loaded)
