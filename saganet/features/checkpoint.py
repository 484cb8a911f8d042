"""Strict weight loading for the Synchformer extractors from the published files.

* MMAudio's ``synchformer_state_dict.pth`` holds the whole audio-visual Synchformer. Only its
  ``vfeat_extractor.*`` group is ours; the named other groups (audio branch, projections,
  global transformer) are ignored explicitly. Loaded into :class:`SynchformerWithContext`, the
  SAGANet additions (mask embedding, cross-attention) are the only keys allowed to be missing
  and keep their initialisation.
* ``saganet.pth["synchformer"]`` holds all 456 keys of :class:`SynchformerWithContext`.

Every other difference (a missing backbone key, an unknown group, a wrong shape) raises
:class:`~saganet.state_dict.CheckpointMismatchError` naming the keys: the reference silently
ignores them; we never do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch

from saganet.features.synchformer import (
    CONTEXT_PARAMETER_PREFIXES,
    Synchformer,
    SynchformerWithContext,
)
from saganet.state_dict import (
    CheckpointMismatchError,
    load_checkpoint_file,
    load_state_dict_strict,
)

log = logging.getLogger(__name__)

# Groups of MMAudio's audio-visual Synchformer file that the video extractor does not use.
MMAUDIO_UNUSED_GROUPS = ("afeat_extractor.*", "vproj.*", "aproj.*", "transformer.*")
# SAGANet additions, absent from MMAudio's file.
CONTEXT_KEYS = tuple(f"vfeat_extractor.{p}*" for p in CONTEXT_PARAMETER_PREFIXES)

Source = str | os.PathLike[str] | Mapping[str, object]


def _read(source: Source) -> tuple[Mapping[str, object], str]:
    if isinstance(source, Mapping):
        return source, "state dict"
    return load_checkpoint_file(os.fspath(source)), os.fspath(source)


def load_mmaudio_synchformer(model: Synchformer | SynchformerWithContext, source: Source) -> None:
    """Load MMAudio's ``synchformer_state_dict.pth`` (path or loaded dict) into ``model``.

    Args:
        model: plain or segmentation-aware Synchformer at official size.
        source: path of the file, or its already loaded state dict.
    """
    state_dict, what = _read(source)
    allow_missing = CONTEXT_KEYS if isinstance(model, SynchformerWithContext) else ()
    load_state_dict_strict(model, state_dict, allow_missing=allow_missing,
                           allow_unexpected=MMAUDIO_UNUSED_GROUPS, what=what)
    if allow_missing:
        log.info("%s: loaded the Synchformer backbone; mask embedding and cross-attention keep "
                 "their initial values", what)


def load_saganet_synchformer(model: SynchformerWithContext, source: Source,
                             what: str | None = None) -> None:
    """Load the ``synchformer`` entry of a SAGANet checkpoint strictly (all 456 keys).

    Args:
        model: segmentation-aware Synchformer at official size.
        source: path of ``saganet.pth``, the loaded checkpoint dict
            (``{'network', 'synchformer', 'lora'}``), or its ``synchformer`` state dict.
        what: the file's name in error messages, for a ``source`` already loaded.
    """
    checkpoint, name = _read(source)
    what = what or name
    if "synchformer" in checkpoint:
        state_dict, what = checkpoint["synchformer"], f"{what}['synchformer']"
    else:
        state_dict = checkpoint
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointMismatchError(f"{what}: no 'synchformer' state dict (top-level keys: "
                                      f"{sorted(checkpoint)[:8]})")
    load_state_dict_strict(model, state_dict, what=what)
