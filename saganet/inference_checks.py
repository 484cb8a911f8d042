"""What :func:`saganet.inference.generate` accepts: the checks and conversions of a
:class:`~saganet.inference.GenerationBatch` before any model runs.

A batch built by hand (a notebook, a script) is checked against the models it is about to run
on, so that a wrong shape, a batch that disagrees with itself, a clip of another length than
the models are set to, or a prompt given as a bare string is one
:class:`~saganet.errors.UserInputError` naming the field, instead of a traceback from deep
inside the Synchformer or the network (or, for some mistakes, no error and wrong audio).

Frames and masks may also come as read from files: uint8 frames (0-255) and uint8 or bool
masks are converted exactly as :func:`saganet.media.load_video_inputs` converts them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from saganet.errors import UserInputError
from saganet.media.video import SYNC_SIZE, clip_input, mask_input, sync_input
from saganet.model.sequence import CLIP_FPS, SYNC_FPS, SYNC_SEGMENT_FRAMES, SYNC_SEGMENT_STEP

if TYPE_CHECKING:
    from saganet.inference import GenerationBatch
    from saganet.model import SequenceConfig


def checked_batch(batch: GenerationBatch, sequence: SequenceConfig,
                  clip_image_size: int | None, *, clip_dim: int | None = None,
                  sync_dim: int | None = None,
                  text_shape: tuple[int, int] | None = None) -> GenerationBatch:
    """``batch`` checked against the models' clip length, with uint8/bool inputs converted.

    Float tensors are passed on as they are (not copied: clips that share memory are encoded
    once by CLIP).

    Args:
        batch: the clips.
        sequence: the clip length the models are set to (``models.sequence``).
        clip_image_size: side of CLIP's frames (None: no CLIP encoder loaded).
        clip_dim: channels of the network's CLIP features (None: not checked).
        sync_dim: channels of the network's Synchformer features (None: not checked).
        text_shape: tokens and channels of the network's text features (None: not checked).

    Raises:
        UserInputError: the first problem found, on one line.
    """
    size = len(_five_dims(batch.sync_frames, "sync_frames"))
    if size == 0:
        raise UserInputError("GenerationBatch is empty: sync_frames hold no clip")
    sync = _frames(batch.sync_frames, "sync_frames", 3, sync_input)
    _square(sync, "sync_frames", SYNC_SIZE)
    masks = _frames(batch.masks, "masks", 1, mask_input)
    _same_frames(masks, "masks", sync, "sync_frames")
    _check_sync_length(sync, sequence)
    detail_frames = detail_masks = None
    if batch.detail_frames is not None or batch.detail_masks is not None:
        if batch.detail_frames is None or batch.detail_masks is None:
            raise UserInputError("GenerationBatch: give detail_frames and detail_masks "
                                 "together (or neither, to crop them from the masks)")
        detail_frames = _frames(batch.detail_frames, "detail_frames", 3, sync_input)
        detail_masks = _frames(batch.detail_masks, "detail_masks", 1, mask_input)
        _same_frames(detail_frames, "detail_frames", sync, "sync_frames")
        _same_frames(detail_masks, "detail_masks", sync, "sync_frames")
    clip_frames = None
    if batch.clip_features is not None:
        _features(batch.clip_features, "clip_features", size, sequence.clip_seq_len, clip_dim)
    elif batch.clip_frames is not None:
        clip_frames = _frames(batch.clip_frames, "clip_frames", 3, clip_input)
        _batch_matches(clip_frames, "clip_frames", size)
        if clip_image_size is not None:
            _square(clip_frames, "clip_frames", clip_image_size)
        if clip_frames.shape[1] != sequence.clip_seq_len:
            raise UserInputError(
                f"GenerationBatch.clip_frames hold {clip_frames.shape[1]} frames, the models "
                f"are set to {sequence.duration:g} s ({sequence.clip_seq_len} frames at "
                f"{CLIP_FPS} fps): call models.set_duration() with the clips' duration")
    if batch.sync_features is not None:
        _features(batch.sync_features, "sync_features", size, sequence.sync_seq_len, sync_dim)
    for name in ("text_features", "negative_text_features"):
        value = getattr(batch, name)
        if value is not None:
            _features(value, name, size, *(text_shape or (None, None)))
    for name in ("texts", "negative_texts"):
        _texts(getattr(batch, name), name, size)
    if batch.names is not None and len(batch.names) != size:
        raise UserInputError(f"GenerationBatch.names hold {len(batch.names)} name(s) for "
                             f"{size} clip(s): give one per clip")
    return dataclasses.replace(batch, sync_frames=sync, masks=masks,
                               clip_frames=clip_frames if clip_frames is not None
                               else batch.clip_frames,
                               detail_frames=detail_frames, detail_masks=detail_masks)


def _tensor(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise UserInputError(f"GenerationBatch.{name} must be a torch.Tensor, got "
                             f"{type(value).__name__} (torch.from_numpy converts arrays)")
    return value


def _five_dims(value: object, name: str) -> torch.Tensor:
    tensor = _tensor(value, name)
    if tensor.dim() != 5:
        raise UserInputError(f"GenerationBatch.{name} must be 5-D (B, T, C, H, W), got shape "
                             f"{tuple(tensor.shape)} (one clip: add the batch dimension, x[None])")
    return tensor


def _frames(value: object, name: str, channels: int,
            convert: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """A 5-D frame or mask tensor with ``channels`` channels, uint8/bool converted to float."""
    tensor = _five_dims(value, name)
    if tensor.shape[2] != channels:
        raise UserInputError(f"GenerationBatch.{name} must have {channels} channel(s) in "
                             f"dimension 2 (B, T, C, H, W), got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.bool and channels == 1:
        return tensor.float()
    if tensor.dtype == torch.uint8:
        # As read from a file: the same conversion as load_video_inputs.
        return convert(tensor)
    if not tensor.is_floating_point():
        raise UserInputError(f"GenerationBatch.{name} must be float (or uint8 as read from a "
                             f"file), got {tensor.dtype}")
    return tensor


def _square(tensor: torch.Tensor, name: str, side: int) -> None:
    if tuple(tensor.shape[-2:]) != (side, side):
        raise UserInputError(f"GenerationBatch.{name} must be {side}x{side} frames, got "
                             f"{tensor.shape[-2]}x{tensor.shape[-1]}")


def _batch_matches(tensor: torch.Tensor, name: str, size: int) -> None:
    if tensor.shape[0] != size:
        raise UserInputError(f"GenerationBatch.{name} hold {tensor.shape[0]} clip(s), "
                             f"sync_frames {size}")


def _same_frames(tensor: torch.Tensor, name: str, reference: torch.Tensor,
                 reference_name: str) -> None:
    """Same clips, frame count and frame size as ``reference``."""
    _batch_matches(tensor, name, reference.shape[0])
    if tensor.shape[1] != reference.shape[1] or tensor.shape[-2:] != reference.shape[-2:]:
        raise UserInputError(
            f"GenerationBatch.{name} {tuple(tensor.shape)} must have as many frames of the "
            f"same size as {reference_name} {tuple(reference.shape)}")


def _check_sync_length(sync: torch.Tensor, sequence: SequenceConfig) -> None:
    frames = sync.shape[1]
    windows = (frames - SYNC_SEGMENT_FRAMES) // SYNC_SEGMENT_STEP + 1
    if frames < SYNC_SEGMENT_FRAMES or windows != sequence.num_sync_segments:
        raise UserInputError(
            f"GenerationBatch.sync_frames hold {frames} frames ({frames / SYNC_FPS:g} s at "
            f"{SYNC_FPS} fps), the models are set to {sequence.duration:g} s "
            f"({int(sequence.num_sync_frames)} frames): call models.set_duration() with the "
            "clips' duration")


def _features(value: object, name: str, size: int, length: int | None,
              channels: int | None = None) -> None:
    tensor = _tensor(value, name)
    if tensor.dim() != 3:
        raise UserInputError(f"GenerationBatch.{name} must be 3-D (B, N, C), got shape "
                             f"{tuple(tensor.shape)}")
    _batch_matches(tensor, name, size)
    if length is not None and tensor.shape[1] != length:
        # CLIP and Synchformer features follow the duration; text features are always 77
        # tokens.
        fix = (": call models.set_duration() with the clips' duration"
               if name in ("clip_features", "sync_features")
               else " (features of another text encoder?)")
        unit = "frames" if name == "clip_features" else "tokens"
        raise UserInputError(f"GenerationBatch.{name} hold {tensor.shape[1]} {unit}, the models "
                             f"expect {length}{fix}")
    if channels is not None and tensor.shape[2] != channels:
        # Otherwise a matrix-shape error from inside the network's projection.
        raise UserInputError(f"GenerationBatch.{name} have {tensor.shape[2]} channels, the "
                             f"network takes {channels} (features of another encoder?)")


def _texts(value: Sequence[str] | None, name: str, size: int) -> None:
    if value is None:
        return
    if isinstance(value, str) or not all(isinstance(text, str) for text in value):
        raise UserInputError(f"GenerationBatch.{name} must be a list of strings, one per clip, "
                             f"got {value!r:.60}")
    if len(value) != size:
        raise UserInputError(f"GenerationBatch.{name} hold {len(value)} prompt(s) for "
                             f"{size} clip(s): give one per clip")
