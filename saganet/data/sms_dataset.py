"""Training/validation datasets that read precomputed features and decode sync videos on the fly.

The Segmented Music Solos (SMS) splits, and URMP in the same form, are stored as:

* a **metadata table** (``tsv``): a ``.tsv`` or ``.csv`` whose header names ``id`` and
  ``label`` (further columns are ignored; read by :func:`saganet.tables.read_table`), each id
  on one row only;
* a **feature memmap** (``memmap_dir``): a ``TensorDict.memmap_`` folder with ``mean`` and
  ``std`` ``(n, 216, 40)`` (VAE posterior of the audio), ``clip_features`` ``(n, 40, 1024)`` and
  ``text_features`` ``(n, 77, 1024)``, plus **``ids.txt``** (:data:`MEMMAP_IDS_FILE`): UTF-8,
  one sample id per line, line ``i`` naming memmap row ``i``, no header, no duplicates. The
  extraction script writes it with :func:`write_memmap_ids`; this module is the one place that
  defines the format.
* the clips under ``root`` (paths per layout, see :class:`ClipPaths`).

Metadata rows are joined to memmap rows **by id**. The reference joined them by position after
dropping rows whose video was missing, so one missing file shifted every later sample onto the
wrong features; here a missing video or mask, or a row without features, only removes that
row (all counted and logged).

Only the Synchformer inputs are decoded per sample (CLIP and text features are precomputed):
frames and masks at 25 fps, squash-resized to 224x224, truncated to the clip length, plus their
focal crops, read from the precomputed ``*_detail.mp4`` / ``*_mask_detail.mp4`` when both exist
and computed with :func:`saganet.features.focal_crop` otherwise. Videos stay ``uint8``; the
training step converts them on the device. A sample that fails to load is logged and returned as
None; :class:`saganet.training.data.CountingCollate` drops and counts it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import torch
from torch.utils.data import Dataset

from saganet.errors import UserInputError
from saganet.features.focal_crop import focal_crop
from saganet.media.video import read_frames
from saganet.tables import read_table

log = logging.getLogger(__name__)

MEMMAP_IDS_FILE = "ids.txt"
MEMMAP_META_FILE = "meta.json"
METADATA_COLUMNS = ("id", "label")
# The per-sample entries of a feature memmap.
FEATURE_KEYS = ("mean", "std", "clip_features", "text_features")
SYNC_FPS = 25.0
FRAME_SIZE = 224
# Errors that mean "this clip is unusable", not "the code is wrong".
LOAD_ERRORS = (OSError, ValueError, RuntimeError, UserInputError, av.error.FFmpegError)


@dataclass(frozen=True)
class SampleShapes:
    """Shapes of one training sample (the contract shared with the synthetic dataset).

    A sample is a dict with ``id`` and ``caption`` (str); ``a_mean``, ``a_std``
    ``(latent_len, latent_dim)``; ``clip_features`` ``(clip_len, clip_dim)``;
    ``text_features`` ``(text_len, text_dim)`` (all float32); ``sync_video`` and
    ``sync_detail_video`` ``(sync_frames, 3, S, S)`` and ``mask_video`` and
    ``mask_detail_video`` ``(sync_frames, 1, S, S)``, all uint8 with S = ``frame_size``.

    Args:
        latent_len, latent_dim: audio latent tokens and channels.
        clip_len, clip_dim: CLIP frame tokens and width.
        text_len, text_dim: text tokens and width.
        sync_frames: video frames at 25 fps fed to the Synchformer.
        frame_size: side of the square Synchformer frames.
    """

    latent_len: int
    latent_dim: int
    clip_len: int
    clip_dim: int
    text_len: int
    text_dim: int
    sync_frames: int
    frame_size: int = FRAME_SIZE


@dataclass(frozen=True)
class ClipPaths:
    """The four videos of one sample, and its true audio.

    Args:
        video: the clip itself (frames at 25 fps are read from it).
        mask: the segmentation-mask video of the sounding object.
        detail: the precomputed focal crop of ``video`` (may not exist).
        mask_detail: the precomputed focal crop of ``mask`` (may not exist).
        audio: the sound of the object (SMS: the clip's own sound track; URMP: the player's
            isolated recording); the ground truth of evaluations.
    """

    video: Path
    mask: Path
    detail: Path
    mask_detail: Path
    audio: Path | None = None


def sms_paths(root: Path, sample_id: str) -> ClipPaths:
    """SMS layout: ``<root>/<id>.mp4`` and ``<root>/<id>/<stem>_{mask,detail,mask_detail}.mp4``.

    Args:
        root: the SMS data folder.
        sample_id: e.g. ``solos/violin/abc_1000_6000``.
    """
    folder = root / sample_id
    stem = Path(sample_id).name
    return ClipPaths(video=root / f"{sample_id}.mp4", mask=folder / f"{stem}_mask.mp4",
                     detail=folder / f"{stem}_detail.mp4",
                     mask_detail=folder / f"{stem}_mask_detail.mp4",
                     audio=root / f"{sample_id}.mp4")


def urmp_paths(root: Path, sample_id: str) -> ClipPaths:
    """URMP layout, from an id ``<piece dir>/<audio stem>``.

    Example: id ``09_Jesus_tpt_vn/AuSep_2_vn_09_Jesus_159092_164092`` gives
    ``Vid_09_Jesus_tpt_vn_159092_164092.mp4``, ``Vid_09_Jesus_2_vn_159092_164092_detail.mp4``,
    ``Masks_2_vn_09_Jesus_159092_164092.mp4``, ``..._detail.mp4`` and the player's recording
    ``AuSep_2_vn_09_Jesus_159092_164092.wav`` in ``<root>/<piece dir>``.

    Args:
        root: the URMP data folder.
        sample_id: piece folder and audio-file stem.
    """
    piece, audio_stem = sample_id.split("/", 1)
    fields = audio_stem.split("_")
    if len(fields) < 7:
        raise UserInputError(f"URMP id {sample_id!r} is not <piece>/AuSep_<n>_<instr>_<song#>_"
                             "<song>_<start>_<end>")
    instr_no, instr = fields[1], fields[2]
    start, end = fields[-2], fields[-1]
    song_no, song = piece.split("_")[:2]
    folder = root / piece
    mask = f"Masks_{instr_no}_{instr}_{song_no}_{song}_{start}_{end}"
    return ClipPaths(
        video=folder / f"Vid_{piece}_{start}_{end}.mp4",
        mask=folder / f"{mask}.mp4",
        detail=folder / f"Vid_{song_no}_{song}_{instr_no}_{instr}_{start}_{end}_detail.mp4",
        mask_detail=folder / f"{mask}_detail.mp4",
        audio=folder / f"{audio_stem}.wav",
    )


LAYOUTS = {"sms": sms_paths, "urmp": urmp_paths}


def write_memmap_ids(memmap_dir: str | os.PathLike[str], ids: Sequence[str]) -> Path:
    """Write the row ids of a feature memmap (the extraction script's side of the format).

    Args:
        memmap_dir: the ``TensorDict.memmap_`` folder.
        ids: one id per memmap row, in row order; unique, without tabs or newlines.
    """
    bad = [i for i in ids if not i or any(c in i for c in "\t\r\n")]
    if bad:
        raise ValueError(f"ids must be non-empty single-line strings: {bad[:3]}")
    if len(set(ids)) != len(ids):
        raise ValueError("memmap ids must be unique")
    path = Path(memmap_dir) / MEMMAP_IDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return path


def read_memmap_ids(memmap_dir: str | os.PathLike[str]) -> list[str]:
    """Read the row ids of a feature memmap.

    Args:
        memmap_dir: the ``TensorDict.memmap_`` folder.

    Raises:
        UserInputError: the ids file is missing or holds duplicates.
    """
    path = Path(memmap_dir) / MEMMAP_IDS_FILE
    if not path.is_file():
        raise UserInputError(f"missing {MEMMAP_IDS_FILE}: the feature extraction must write "
                             "one id per memmap row next to the features", path)
    ids = path.read_text(encoding="utf-8").splitlines()
    if len(set(ids)) != len(ids):
        raise UserInputError("duplicate ids", path)
    return ids


def read_metadata(tsv: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(id, label)`` rows of a split table (:func:`saganet.tables.read_table` rules).

    Args:
        tsv: a ``.tsv`` or ``.csv`` file with a header naming ``id`` and ``label``.
    """
    return [(row["id"], row["label"]) for row in read_table(tsv, METADATA_COLUMNS)]


def video_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames to the Synchformer's [-1, 1] range (ToDtype, then Normalize(0.5, 0.5))."""
    return (frames.float() / 255.0 - 0.5) / 0.5


def mask_to_unit(masks: torch.Tensor) -> torch.Tensor:
    """uint8 masks to [0, 1]."""
    return masks.float() / 255.0


class SMSDataset(Dataset):
    """One split of SMS (or URMP) with precomputed audio/CLIP/text features.

    Args:
        root: folder with the clips.
        tsv: metadata table (``id``, ``label``) listing the split.
        memmap_dir: feature memmap with its ``ids.txt``.
        shapes: expected sample shapes (checked against the memmap).
        layout: ``sms`` or ``urmp`` path scheme.
        duration: clip length in seconds (the number of sync frames is checked against it).
    """

    def __init__(self, root: str | os.PathLike[str], tsv: str | os.PathLike[str],
                 memmap_dir: str | os.PathLike[str], shapes: SampleShapes,
                 layout: Literal["sms", "urmp"] = "sms", duration: float = 5.0) -> None:
        if layout not in LAYOUTS:
            raise UserInputError(f"unknown dataset layout {layout!r}; choose one of "
                                 + ", ".join(LAYOUTS))
        self.root = Path(root)
        self.memmap_dir = Path(memmap_dir)
        self.shapes = shapes
        self.paths_of = LAYOUTS[layout]
        if round(duration * SYNC_FPS) < shapes.sync_frames:
            raise ValueError(f"{shapes.sync_frames} sync frames do not fit in {duration} s")
        self.duration = duration
        self._features: FeatureMemmap | None = None  # opened lazily, once per worker process
        if not self.memmap_dir.is_dir():
            raise UserInputError("feature memmap folder not found (run the feature extraction "
                                 "first, or set the data paths)", self.memmap_dir)

        row_of = {sample_id: row for row, sample_id in enumerate(read_memmap_ids(memmap_dir))}
        features = self.features
        if features.rows != len(row_of):
            raise UserInputError(f"{len(row_of)} ids for {features.rows} memmap rows",
                                 self.memmap_dir / MEMMAP_IDS_FILE)
        self._check_feature_shapes(features)

        metadata = read_metadata(tsv)
        counts = Counter(sample_id for sample_id, _ in metadata)
        repeated = [sample_id for sample_id, count in counts.items() if count > 1]
        if repeated:
            # Each repeat would be trained on once more per epoch, and evaluated into the
            # same output files.
            raise UserInputError(f"{len(repeated)} id(s) listed more than once (e.g. "
                                 f"{', '.join(repeated[:3])}); list each clip once", tsv)
        self.samples: list[tuple[str, str, int]] = []
        no_video, no_mask, no_features = [], [], []
        for sample_id, label in metadata:
            paths = self.paths_of(self.root, sample_id)
            if sample_id not in row_of:
                no_features.append(sample_id)
            elif not paths.video.is_file():
                no_video.append(sample_id)
            elif not paths.mask.is_file():
                # Found here, not at its first load: masks kept in another folder would
                # otherwise fail every sample of a whole epoch before the run stops.
                no_mask.append(sample_id)
            else:
                self.samples.append((sample_id, label, row_of[sample_id]))
        # Where the first missing mask was looked for: masks elsewhere are a layout mistake.
        mask_hint = (f"no mask file (the first: {self.paths_of(self.root, no_mask[0]).mask})"
                     if no_mask else "")
        for missing, what in ((no_video, "no video file"), (no_mask, mask_hint),
                              (no_features, "no features")):
            if missing:
                log.warning("%s: %d metadata row(s) skipped, %s (e.g. %s)", tsv, len(missing),
                            what, ", ".join(missing[:3]))
        self.skipped = {"no_video": len(no_video), "no_mask": len(no_mask),
                        "no_features": len(no_features)}
        log.info("%s: %d samples (%d memmap rows)", tsv, len(self.samples), len(row_of))
        if not self.samples:
            raise UserInputError("no usable samples: check root, metadata and memmap paths",
                                 tsv)

    @property
    def features(self) -> FeatureMemmap:
        if self._features is None:
            self._features = open_feature_memmap(self.memmap_dir)
        return self._features

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes reopen the memmap rather than pickling its handle.
        return {**self.__dict__, "_features": None}

    def _check_feature_shapes(self, features: FeatureMemmap) -> None:
        s = self.shapes
        expected = {"mean": (s.latent_len, s.latent_dim), "std": (s.latent_len, s.latent_dim),
                    "clip_features": (s.clip_len, s.clip_dim),
                    "text_features": (s.text_len, s.text_dim)}
        for key, shape in expected.items():
            if key not in features:
                raise UserInputError(f"memmap has no {key!r}", self.memmap_dir)
            got = tuple(features[key].shape[1:])
            if got != shape:
                raise UserInputError(f"memmap {key!r} has per-sample shape {got}, expected "
                                     f"{shape}", self.memmap_dir)

    def __len__(self) -> int:
        return len(self.samples)

    def sample_id(self, index: int) -> str:
        """The id of sample ``index`` (without loading it)."""
        return self.samples[index][0]

    def ground_truth_file(self, index: int) -> Path | None:
        """The file holding the true audio of sample ``index`` (see :class:`ClipPaths`)."""
        return self.paths_of(self.root, self.sample_id(index)).audio

    def latent_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (unbiased) std of the latent means over samples and time.

        Rows holding a NaN or infinity are left out, as :meth:`__getitem__` leaves them out
        of training: one such row would make every channel statistic it touches NaN, and with
        it every training loss.
        """
        means = self.features["mean"][[row for _, _, row in self.samples]]
        means = means[torch.isfinite(means).flatten(1).all(dim=1)]  # (n, L, C)
        flat = means.reshape(-1, means.shape[-1])  # (n * L, C)
        return flat.mean(dim=0), flat.std(dim=0)

    def _read(self, path: Path, gray: bool) -> torch.Tensor:
        frames = read_frames(path, SYNC_FPS, (self.shapes.frame_size, self.shapes.frame_size),
                             gray=gray, end=self.duration)
        if frames.shape[0] < self.shapes.sync_frames:
            raise ValueError(f"{path}: {frames.shape[0]} frames at {SYNC_FPS:g} fps, need "
                             f"{self.shapes.sync_frames}")
        return frames[: self.shapes.sync_frames]  # (T, C, S, S) uint8

    def load_videos(self, sample_id: str) -> dict[str, torch.Tensor]:
        """Decode the four Synchformer inputs of one sample (uint8).

        Args:
            sample_id: a metadata id.
        """
        paths = self.paths_of(self.root, sample_id)
        frames, masks = self._read(paths.video, gray=False), self._read(paths.mask, gray=True)
        if paths.detail.is_file() and paths.mask_detail.is_file():
            detail, mask_detail = (self._read(paths.detail, gray=False),
                                   self._read(paths.mask_detail, gray=True))
        else:
            detail, mask_detail = focal_crop(frames[None], masks[None], names=[sample_id])
            detail, mask_detail = detail[0], mask_detail[0]
        return {"sync_video": frames, "sync_detail_video": detail, "mask_video": masks,
                "mask_detail_video": mask_detail}

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        sample_id, label, row = self.samples[index]
        feats = self.features[row]
        # A NaN or infinite feature (a failed extraction) makes the batch's loss and gradient
        # non-finite: the optimiser step would be skipped, losing the whole batch, with no word
        # of which clip did it.
        broken = [key for key in FEATURE_KEYS if not torch.isfinite(feats[key]).all()]
        if broken:
            log.warning("sample %s failed to load (non-finite %s in %s)", sample_id,
                        ", ".join(broken), self.memmap_dir)
            return None
        try:
            videos = self.load_videos(sample_id)
        except LOAD_ERRORS as err:
            log.warning("sample %s failed to load (%s: %s)", sample_id, type(err).__name__, err)
            return None
        return {"id": sample_id, "caption": label,
                "a_mean": feats["mean"].clone(), "a_std": feats["std"].clone(),
                "clip_features": feats["clip_features"].clone(),
                "text_features": feats["text_features"].clone(), **videos}


class FeatureMemmap:
    """The ``rows`` rows of a feature memmap folder: ``memmap["mean"]`` is an entry's
    ``(rows, ...)`` tensor, ``memmap[row]`` a dict of every entry's row ``row``."""

    def __init__(self, rows: int, entries: dict[str, torch.Tensor]) -> None:
        self.rows, self.entries = rows, entries

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            return self.entries[key]
        return {name: tensor[key] for name, tensor in self.entries.items()}


def open_feature_memmap(memmap_dir: Path) -> FeatureMemmap:
    """The feature memmap of ``memmap_dir`` (read only), after checking that every file holds
    the bytes its ``meta.json`` states.

    The folder is TensorDict's ``memmap_`` format, read here without TensorDict: importing it
    imports ``torch._dynamo``, seconds of every training process's start. (TensorDict's own
    loader also opens the files writable and grows a short one with zeros, so a truncated copy
    would be trained on as zero rows, and the file on disk changed, without a word.)

    Raises:
        UserInputError: ``meta.json`` missing or unreadable, a file of the wrong size, an entry
            whose rows differ from the folder's, a nested (ragged) entry, or features that are
            not floating point.
    """
    meta_file = memmap_dir / MEMMAP_META_FILE
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserInputError(f"cannot read the memmap description: {err.strerror}",
                             meta_file) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"not a memmap description: {err}", meta_file) from None
    if not isinstance(meta, dict):
        raise UserInputError("not a memmap description (no JSON object)", meta_file)
    rows = meta.get("shape")
    if not (isinstance(rows, list) and len(rows) == 1):
        raise UserInputError(f"not a memmap of one row per clip (folder shape {rows!r})",
                             meta_file)
    entries = {}
    for key, entry in meta.items():
        if not (isinstance(entry, dict) and "shape" in entry and "dtype" in entry):
            continue  # the folder's own fields (batch size, format version)
        dtype = getattr(torch, str(entry["dtype"]).removeprefix("torch."), None)
        if not isinstance(dtype, torch.dtype):
            raise UserInputError(f"{key!r} has unknown dtype {entry['dtype']!r}", meta_file)
        numel = math.prod(entry["shape"])
        expected = numel * dtype.itemsize
        data = memmap_dir / f"{key}.memmap"
        size = data.stat().st_size if data.is_file() else None
        # TensorDict writes no file for an entry without elements.
        if size != expected and (expected or size is not None):
            found = "missing" if size is None else f"{size} bytes"
            raise UserInputError(f"{found}, expected {expected} for {key!r} of shape "
                                 f"{tuple(entry['shape'])} (truncated or partly copied?)", data)
        # An entry with more rows than the folder (TensorDict would read its first ones) is a
        # file from another extraction: its rows would pair with the wrong ids.
        if list(entry["shape"][:1]) != rows:
            raise UserInputError(f"{key!r} has {entry['shape'][0] if entry['shape'] else 0} "
                                 f"rows, the memmap {rows[0]} (files of different "
                                 "extractions?)", meta_file)
        if not dtype.is_floating_point:
            raise UserInputError(f"{key!r} holds {dtype}, not floating-point features",
                                 meta_file)
        if entry.get("is_nested"):
            raise UserInputError(f"{key!r} is a nested (ragged) entry, not one row per clip",
                                 meta_file)
        # shared=False maps the file copy-on-write: pages are read as rows are indexed and a
        # write to the tensor could never reach the file.
        flat = (torch.from_file(str(data), shared=False, size=numel, dtype=dtype) if numel
                else torch.empty(0, dtype=dtype))
        entries[key] = flat.view(entry["shape"])
    return FeatureMemmap(rows[0], entries)
