"""Evaluation datasets for batch generation: URMP and the SMS test split, read from raw videos.

Each dataset lists its clips from a metadata table once (files are checked then; rows whose
video or mask is missing are counted, logged and kept in :attr:`EvalDataset.missing`, never
dropped silently) and decodes one clip per ``__getitem__``:

* CLIP frames: the FULL video at 8 fps, squash-resized to 384x384;
* Synchformer frames: the video at 25 fps, squash-resized to 224x224;
* masks: the mask video at 25 fps in FFmpeg's 8-bit gray, squash-resized to 224x224;

all through :func:`saganet.media.video.read_frames` (FFmpeg ``fps``-filter frame choice), as
uint8, truncated to ``int(fps * duration)`` frames. The focal crop is left to
:func:`saganet.inference.generate` unless ``detail_files`` asks for the precomputed
``*_detail.mp4`` / ``*_mask_detail.mp4`` files (used when both exist).

The reference's URMP evaluation dataset replaced the CLIP frames with the first 40 frames of
the *detail* video read at 25 fps (1.6 s of the focal crop); this module does not.

Clip ids are the file stems (URMP: the isolated-audio stem ``AuSep_<n>_<instr>_<song#>_<song>_
<start>_<end>``; SMS: the clip stem), so that generated files and ground truth share stems in
flat folders, which is how ``python -m saganet.evaluation`` pairs them. Duplicate stems are an
error.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import torch
from torch.utils.data import Dataset

from saganet.data.sms_dataset import sms_paths
from saganet.errors import UserInputError
from saganet.media.video import CLIP_FPS, CLIP_SIZE, SYNC_FPS, SYNC_SIZE, read_frames
from saganet.tables import read_table

log = logging.getLogger(__name__)

# Columns of the evaluation tables, read by name (any order; other columns are ignored).
URMP_COLUMNS = ("video_id", "audio_id", "mask_id", "label", "s_ts", "e_ts")
SMS_COLUMNS = ("id", "label")
# Errors that make one clip unusable (bad or short file) without being a bug.
LOAD_ERRORS = (UserInputError, OSError, av.error.FFmpegError)
# How many example ids a log line about missing files names.
_EXAMPLES = 3


@dataclass(frozen=True)
class EvalClip:
    """Where one evaluation clip's files are.

    Args:
        id: output name (unique within the dataset; may contain "/" for sub-folders).
        source_id: the row's id in the metadata table.
        caption: the text prompt (the instrument label).
        video: the video to sonify.
        mask: the mask video of the sounding object.
        ground_truth: the clip's true audio (URMP: the player's isolated ``.wav``; SMS: the
            video's own audio track), or None when it is missing.
        detail: precomputed focal crop of ``video`` (may not exist).
        mask_detail: precomputed focal crop of ``mask`` (may not exist).
    """

    id: str
    source_id: str
    caption: str
    video: Path
    mask: Path
    ground_truth: Path | None
    detail: Path | None = None
    mask_detail: Path | None = None


@dataclass(frozen=True)
class MissingClip:
    """A metadata row that cannot be generated because a file is missing.

    Args:
        id: the row's clip id.
        reason: what is missing (with the path).
    """

    id: str
    reason: str


@dataclass
class EvalSample:
    """One decoded clip (uint8 frames; see the module docstring for rates and sizes).

    Args:
        clip: the clip's files and caption.
        clip_frames: ``(Tc, 3, 384, 384)`` uint8.
        sync_frames: ``(Ts, 3, 224, 224)`` uint8.
        masks: ``(Ts, 1, 224, 224)`` uint8.
        detail_frames: ``(Ts, 3, 224, 224)`` uint8 precomputed focal crop, or None.
        detail_masks: ``(Ts, 1, 224, 224)`` uint8 precomputed focal-crop masks, or None.
    """

    clip: EvalClip
    clip_frames: torch.Tensor
    sync_frames: torch.Tensor
    masks: torch.Tensor
    detail_frames: torch.Tensor | None = None
    detail_masks: torch.Tensor | None = None


@dataclass(frozen=True)
class LoadFailure:
    """A clip whose files exist but could not be decoded (corrupt, too short, ...).

    Args:
        clip: the clip.
        error: one-line reason.
    """

    clip: EvalClip
    error: str


class EvalDataset(Dataset):
    """Clips of one evaluation set; items are :class:`EvalSample` or :class:`LoadFailure`.

    Args:
        name: the dataset's name (``urmp``, ``sms``).
        clips: the clips whose video and mask exist.
        missing: rows skipped because a file is missing.
        duration: seconds per clip; shorter clips fail to load.
        detail_files: use precomputed focal crops when both files exist.
    """

    def __init__(self, name: str, clips: Sequence[EvalClip], missing: Sequence[MissingClip],
                 duration: float, detail_files: bool = False) -> None:
        counts = Counter([c.id for c in clips] + [m.id for m in missing])
        duplicates = sorted(i for i, n in counts.items() if n > 1)
        if duplicates:
            raise UserInputError(f"{name}: clip ids must be unique (they name the output "
                                 f"files); repeated: {', '.join(duplicates[:_EXAMPLES])}")
        if not duration > 0:
            raise UserInputError(f"duration must be positive, got {duration}")
        self.name = name
        self.clips = list(clips)
        self.missing = list(missing)
        self.duration = duration
        self.detail_files = detail_files

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_clip_frames(self) -> int:
        return int(CLIP_FPS * self.duration)

    @property
    def num_sync_frames(self) -> int:
        return int(SYNC_FPS * self.duration)

    def log_summary(self) -> None:
        """Log how many clips are usable and which rows are missing files."""
        no_gt = [c.id for c in self.clips if c.ground_truth is None]
        log.info("%s: %d clips, %d rows skipped for missing files", self.name, len(self.clips),
                 len(self.missing))
        for missing in self.missing:
            log.warning("%s: skipping %s: %s", self.name, missing.id, missing.reason)
        if no_gt:
            log.warning("%s: %d clips have no ground-truth audio (e.g. %s); they are generated "
                        "but cannot be scored", self.name, len(no_gt),
                        ", ".join(no_gt[:_EXAMPLES]))

    def _read(self, path: Path, fps: int, size: int, count: int, gray: bool) -> torch.Tensor:
        frames = read_frames(path, fps, size, gray=gray, end=self.duration)
        if frames.shape[0] < count:
            raise UserInputError(f"too short: {frames.shape[0]} frames at {fps} fps, need "
                                 f"{count} for {self.duration:g} s", path)
        return frames[:count]  # (T, C, S, S) uint8

    def load(self, clip: EvalClip) -> EvalSample:
        """Decode one clip.

        Args:
            clip: the clip.

        Raises:
            UserInputError: a file cannot be decoded or is shorter than the duration.
        """
        n_clip, n_sync = self.num_clip_frames, self.num_sync_frames
        sample = EvalSample(
            clip=clip,
            clip_frames=self._read(clip.video, CLIP_FPS, CLIP_SIZE, n_clip, gray=False),
            sync_frames=self._read(clip.video, SYNC_FPS, SYNC_SIZE, n_sync, gray=False),
            masks=self._read(clip.mask, SYNC_FPS, SYNC_SIZE, n_sync, gray=True),
        )
        if (self.detail_files and clip.detail is not None and clip.mask_detail is not None
                and clip.detail.is_file() and clip.mask_detail.is_file()):
            sample.detail_frames = self._read(clip.detail, SYNC_FPS, SYNC_SIZE, n_sync,
                                              gray=False)
            sample.detail_masks = self._read(clip.mask_detail, SYNC_FPS, SYNC_SIZE, n_sync,
                                             gray=True)
        return sample

    def __getitem__(self, index: int) -> EvalSample | LoadFailure:
        clip = self.clips[index]
        try:
            return self.load(clip)
        except LOAD_ERRORS as err:
            return LoadFailure(clip, str(err))


# ----------------------------------------------------------------------------------------------
# Metadata tables


def _urmp_detail_paths(root: Path, audio_id: str, mask: Path, start: str,
                       end: str) -> tuple[Path | None, Path]:
    """Precomputed focal crops: ``<piece>/Vid_<song#>_<song>_<instr#>_<instr>_<s>_<e>_detail.mp4``
    (song from the piece folder, instrument from the audio stem) and ``<mask>_detail.mp4``."""
    piece, _, stem = audio_id.partition("/")
    song, fields = piece.split("_"), stem.split("_")
    mask_detail = mask.with_name(f"{mask.stem}_detail.mp4")
    if not stem or len(song) < 2 or len(fields) < 3:
        return None, mask_detail
    name = f"Vid_{song[0]}_{song[1]}_{fields[1]}_{fields[2]}_{start}_{end}_detail.mp4"
    return root / piece / name, mask_detail


def read_urmp_clips(root: str | os.PathLike[str], metadata: str | os.PathLike[str]
                    ) -> tuple[list[EvalClip], list[MissingClip]]:
    """Clips of the URMP evaluation table.

    The table (read with :func:`saganet.tables.read_table`: ``.tsv`` or ``.csv``, header,
    columns by name) has the columns ``video_id``, ``audio_id``, ``mask_id``, ``label``,
    ``s_ts`` and ``e_ts`` (any order, more allowed), where the ids are paths relative to
    ``root`` without extension (``<piece>/Vid_...`` for the ensemble ``.mp4``,
    ``<piece>/AuSep_...`` for the player's ``.wav``, ``<piece>/Masks_...`` for the mask
    ``.mp4``), ``label`` is the prompt and ``s_ts``/``e_ts`` the clip's start and end in ms.

    Args:
        root: folder the ids are relative to.
        metadata: the table.

    Returns:
        The usable clips and the rows whose video or mask is missing.
    """
    root = Path(root)
    clips, missing = [], []
    for row in read_table(metadata, URMP_COLUMNS):
        audio_id, start, end = row["audio_id"], row["s_ts"], row["e_ts"]
        video, mask = root / f"{row['video_id']}.mp4", root / f"{row['mask_id']}.mp4"
        audio = root / f"{audio_id}.wav"
        clip_id = Path(audio_id).name
        absent = [p for p in (video, mask) if not p.is_file()]
        if absent:
            missing.append(MissingClip(clip_id, "not found: " + ", ".join(map(str, absent))))
            continue
        detail, mask_detail = _urmp_detail_paths(root, audio_id, mask, start, end)
        clips.append(EvalClip(id=clip_id, source_id=audio_id, caption=row["label"],
                              video=video, mask=mask,
                              ground_truth=audio if audio.is_file() else None,
                              detail=detail, mask_detail=mask_detail))
    return clips, missing


def read_sms_clips(root: str | os.PathLike[str], metadata: str | os.PathLike[str]
                   ) -> tuple[list[EvalClip], list[MissingClip]]:
    """Clips of an SMS split table (e.g. the test split).

    The table (read with :func:`saganet.tables.read_table`) has the columns ``id`` and
    ``label``.
    Files follow the SMS layout: ``<root>/<id>.mp4`` (its audio track is the ground truth) and
    ``<root>/<id>/<stem>_mask.mp4``; optional focal crops ``<stem>_detail.mp4`` and
    ``<stem>_mask_detail.mp4`` in the same folder.

    Args:
        root: the SMS data folder.
        metadata: the table.

    Returns:
        The usable clips and the rows whose video or mask is missing.
    """
    root = Path(root)
    clips, missing = [], []
    for row in read_table(metadata, SMS_COLUMNS):
        source_id = row["id"]
        paths = sms_paths(root, source_id)
        clip_id = Path(source_id).name
        absent = [p for p in (paths.video, paths.mask) if not p.is_file()]
        if absent:
            missing.append(MissingClip(clip_id, "not found: " + ", ".join(map(str, absent))))
            continue
        clips.append(EvalClip(id=clip_id, source_id=source_id, caption=row["label"],
                              video=paths.video, mask=paths.mask, ground_truth=paths.video,
                              detail=paths.detail, mask_detail=paths.mask_detail))
    return clips, missing


EVAL_DATASETS: dict[str, Callable[[str | os.PathLike[str], str | os.PathLike[str]],
                                  tuple[list[EvalClip], list[MissingClip]]]] = {
    "urmp": read_urmp_clips,
    "sms": read_sms_clips,
}


def build_eval_dataset(name: str, root: str | os.PathLike[str],
                       metadata: str | os.PathLike[str], duration: float,
                       detail_files: bool = False) -> EvalDataset:
    """An evaluation dataset by name.

    Args:
        name: a key of :data:`EVAL_DATASETS` (``urmp``, ``sms``).
        root: the folder with the clips.
        metadata: the metadata table (see :func:`read_urmp_clips`, :func:`read_sms_clips`).
        duration: seconds per clip.
        detail_files: use precomputed focal crops when present.

    Raises:
        UserInputError: unknown name, unreadable table, duplicate ids, or no row at all.
    """
    if name not in EVAL_DATASETS:
        raise UserInputError(f"unknown evaluation dataset {name!r}; choose one of "
                             + ", ".join(EVAL_DATASETS))
    if not Path(root).is_dir():
        raise UserInputError("dataset root is not a folder", root)
    clips, missing = EVAL_DATASETS[name](root, metadata)
    if not clips and not missing:
        raise UserInputError("the metadata table lists no clips", metadata)
    return EvalDataset(name, clips, missing, duration, detail_files)
