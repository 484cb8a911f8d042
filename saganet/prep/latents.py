"""Offline training features of one split: VAE posterior of the audio, CLIP frames, CLIP text.

Owns the library side of ``training/extract_video_training_latents.py``. Per clip (as the
reference prepared its training data):

* audio: the first stream of the clip at 44.1 kHz, mono, zero-padded or truncated to the
  network's sample count (5 s: 221184) -> mel -> VAE encoder -> posterior ``mean`` and ``std``
  ``(216, 40)``;
* ``clip_features``: the full video at 8 fps, squash-resized to 384x384 -> CLIP image features
  ``(40, 1024)``;
* ``text_features``: the label through the CLIP text tower ``(77, 1024)``.

Each rank of a ``torchrun`` job (or the single process) takes a strided part of the split and
writes per-rank shard files; after a barrier rank 0 merges them into the TensorDict memmap and
metadata table that :class:`saganet.data.sms_dataset.SMSDataset` reads, rows **sorted by id**
(so the result does not depend on the number of ranks or on shard names, unlike the reference),
with the row ids stored by :func:`saganet.data.sms_dataset.write_memmap_ids`. Clips that cannot
be used (unreadable, no audio, audio or video too short) are counted and listed with the reason,
never silently dropped.

Every clip goes through the encoders with the same tensor shapes whatever the batching (one
waveform per VAE pass, one clip's frames per CLIP pass, each label alone, cached: a split has
a few dozen labels), so the features do not depend on the batch size or the number of ranks.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tensordict import TensorDict
from torch.utils.data import DataLoader, Dataset

from saganet import dist
from saganet.codec import AudioCodec
from saganet.data.sms_dataset import (
    FEATURE_KEYS,
    LOAD_ERRORS,
    ClipPaths,
    sms_paths,
    write_memmap_ids,
)
from saganet.errors import UserInputError
from saganet.fileio import temporary_sibling
from saganet.media.audio import load_mono_audio
from saganet.media.video import CLIP_FPS, CLIP_SIZE, clip_input, read_frames
from saganet.model.sequence import SequenceConfig
from saganet.prep.focal_prompts import SplitClip, write_problem_list
from saganet.progress import progress_bar
from saganet.runtime import loader_worker_start

if TYPE_CHECKING:
    from saganet.features.clip import ClipEncoder

log = logging.getLogger(__name__)

# Clips a little shorter than the duration are padded with silence, as in the reference (5 s of
# audio is 220500 samples, 684 short of 221184 anyway); more missing audio than this fails.
MAX_AUDIO_SHORTFALL_S = 0.05
# Samples per shard file: about 140 MB at the published widths.
SAMPLES_PER_SHARD = 256


@dataclass(frozen=True)
class SplitOutputs:
    """Where the features of one split go (``<name>-<split>``, as the data configs expect).

    Args:
        memmap_dir: the TensorDict memmap folder with its ``ids.txt``.
        tsv: the metadata table (``id``, ``label``), one row per memmap row, same order.
        failed_list: clips that could not be used, with reasons (``id``, ``status``,
            ``reason``).
        shard_dir: per-rank shard files while the extraction runs (removed after the merge).
    """

    memmap_dir: Path
    tsv: Path
    failed_list: Path
    shard_dir: Path

    @classmethod
    def for_split(cls, output_dir: str | os.PathLike[str], name: str,
                  split: str) -> SplitOutputs:
        """``<output_dir>/<name>-<split>/``, ``.tsv``, ``.failed.tsv`` and a hidden shard dir.

        Args:
            output_dir: e.g. ``data/sms/memmaps``.
            name: dataset name, e.g. ``sms``.
            split: e.g. ``train``.
        """
        base = Path(output_dir)
        stem = f"{name}-{split}"
        return cls(memmap_dir=base / stem, tsv=base / f"{stem}.tsv",
                   failed_list=base / f"{stem}.failed.tsv", shard_dir=base / f".{stem}.shards")

    def check_writable(self, overwrite: bool) -> None:
        """Refuse to replace finished outputs unless ``overwrite``.

        Raises:
            UserInputError: the memmap or the table exists and ``overwrite`` is False.
        """
        for path in (self.memmap_dir, self.tsv):
            if path.exists() and not overwrite:
                raise UserInputError("output exists; pass --overwrite (overwrite=True from "
                                     "Python) to replace it", path)


class ClipSource(Dataset):
    """Decoded inputs of the clips of a split: CLIP frames and the fixed-length waveform.

    An item is ``{"id", "label", "clip_frames": uint8 (Tc, 3, 384, 384), "audio": float32
    (N,)}``, or ``{"id", "label", "error": reason}`` when the clip cannot be used.

    Args:
        root: the clip folder.
        clips: the clips to read.
        sequence: clip duration and audio rates (``Tc = clip_seq_len``,
            ``N = num_audio_samples``).
        paths_of: the dataset layout, ``(root, id) -> ClipPaths``.
    """

    def __init__(self, root: str | os.PathLike[str], clips: Sequence[SplitClip],
                 sequence: SequenceConfig,
                 paths_of: Callable[[Path, str], ClipPaths] = sms_paths) -> None:
        self.root = Path(root)
        self.clips = list(clips)
        self.sequence = sequence
        self.paths_of = paths_of
        self.min_audio_samples = max(
            1, round((sequence.duration - MAX_AUDIO_SHORTFALL_S) * sequence.sampling_rate))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        item: dict[str, Any] = {"id": clip.id, "label": clip.label}
        path = self.paths_of(self.root, clip.id).video
        try:
            if not path.is_file():
                raise UserInputError("clip video not found", path)
            frames = read_frames(path, CLIP_FPS, CLIP_SIZE, end=self.sequence.duration)
            needed = self.sequence.clip_seq_len
            if frames.shape[0] < needed:
                raise UserInputError(f"video too short: {frames.shape[0]} frames at "
                                     f"{CLIP_FPS} fps, need {needed}", path)
            audio = load_mono_audio(path, self.sequence.num_audio_samples,
                                    self.sequence.sampling_rate, self.min_audio_samples)
        except LOAD_ERRORS as err:
            item["error"] = " ".join(f"{type(err).__name__}: {err}".split())
            return item
        item["clip_frames"] = frames[:needed]  # (Tc, 3, 384, 384) uint8
        item["audio"] = audio.waveform  # (N,)
        return item


@dataclass
class ClipBatch:
    """Collated :class:`ClipSource` items: the usable clips stacked, the failures listed.

    Args:
        ids: ids of the usable clips.
        labels: their labels.
        clip_frames: ``(B, Tc, 3, 384, 384)`` uint8, or None when no clip is usable.
        audio: ``(B, N)`` float32, or None likewise.
        failed: ``(id, reason)`` of the clips that could not be read.
    """

    ids: list[str]
    labels: list[str]
    clip_frames: torch.Tensor | None
    audio: torch.Tensor | None
    failed: list[tuple[str, str]] = field(default_factory=list)


def collate_clips(items: Sequence[dict[str, Any]]) -> ClipBatch:
    """Stack the usable items of a batch and keep the failures aside."""
    good = [item for item in items if "error" not in item]
    failed = [(item["id"], item["error"]) for item in items if "error" in item]
    if not good:
        return ClipBatch([], [], None, None, failed)
    return ClipBatch(ids=[item["id"] for item in good], labels=[item["label"] for item in good],
                     clip_frames=torch.stack([item["clip_frames"] for item in good]),
                     audio=torch.stack([item["audio"] for item in good]), failed=failed)


class FeatureExtractor:
    """The VAE encoder (with its mel converter) and CLIP, frozen, on one device.

    Args:
        codec: an :class:`~saganet.codec.AudioCodec` with its VAE encoder.
        clip: a :class:`~saganet.features.ClipEncoder`.
        device: where they run.
    """

    def __init__(self, codec: AudioCodec, clip: ClipEncoder,
                 device: str | torch.device = "cpu") -> None:
        if not codec.has_encoder:
            raise ValueError("the codec has no VAE encoder (load it with need_vae_encoder)")
        self.device = torch.device(device)
        self.codec = codec.to(self.device, torch.float32).eval()
        self.clip_encoder = clip.to(self.device, torch.float32).eval()
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_variant(cls, variant: str, weights_dir: str | os.PathLike[str] | None = None,
                     device: str | torch.device = "cpu",
                     offline: bool | None = None) -> FeatureExtractor:
        """The encoders of a pipeline variant (published weights, or ``debug`` ones).

        Args:
            variant: a key of :data:`saganet.pipeline.PIPELINES`.
            weights_dir: weights folder (default: the user cache; ``debug`` weights are
                generated there on first use).
            device: where the encoders run.
            offline: never download (default: ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``).
        """
        # Imported here: the pipeline pulls in the flow network, which only loading needs.
        from saganet.pipeline import load_models

        # Loaded on the CPU; only the encoders move to the device, the rest is dropped.
        models = load_models(variant, weights_dir=weights_dir, offline=offline,
                             need_clip=True, need_vae_encoder=True)
        return cls(models.codec, models.clip_encoder, device)

    @property
    def samples_per_latent(self) -> int:
        """Waveform samples per latent (the audio length must be a multiple of it)."""
        return self.codec.samples_per_latent

    def text_features(self, labels: Sequence[str]) -> torch.Tensor:
        """``(B, 77, text_width)`` CPU float32, each label encoded alone once and cached."""
        for label in labels:
            if label not in self._text_cache:
                self._text_cache[label] = self.clip_encoder.encode_text([label])[0].float().cpu()
        return torch.stack([self._text_cache[label] for label in labels])

    @torch.inference_mode()
    def __call__(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        """Features of the usable clips of a batch, on the CPU in float32.

        Returns:
            ``mean``, ``std`` ``(B, latent_len, latent_dim)``, ``clip_features``
            ``(B, Tc, clip_dim)``, ``text_features`` ``(B, 77, text_dim)``.
        """
        if batch.audio is None or batch.clip_frames is None:
            raise ValueError("the batch has no usable clip")
        # One waveform per VAE pass and one clip per CLIP pass: see the module docstring.
        posteriors = [self.codec.encode(audio[None].to(self.device)) for audio in batch.audio]
        frames = clip_input(batch.clip_frames.to(self.device))  # (B, Tc, 3, S, S) in [0, 1]
        clip_features = self.clip_encoder.encode_images(frames, chunk_size=frames.shape[1])
        return {"mean": torch.cat([p.mean for p in posteriors]).float().cpu(),  # (B, N', C)
                "std": torch.cat([p.std for p in posteriors]).float().cpu(),
                "clip_features": clip_features.float().cpu(),
                "text_features": self.text_features(batch.labels)}


class ShardWriter:
    """Buffers one rank's features and writes them as numbered shard files.

    A shard is ``r<rank>_<n>.pt``: ``{"ids": [...], "failed": [[id, reason], ...]}`` plus one
    ``(k, ...)`` tensor per feature key when ``k > 0``. Written to a temporary name, then renamed.

    Args:
        shard_dir: the folder of the shard files.
        rank: this process' global rank.
        samples_per_shard: rows buffered before a file is written.
    """

    def __init__(self, shard_dir: str | os.PathLike[str], rank: int,
                 samples_per_shard: int = SAMPLES_PER_SHARD) -> None:
        self.shard_dir = Path(shard_dir)
        self.rank = rank
        self.samples_per_shard = samples_per_shard
        self.written = 0
        self._ids: list[str] = []
        self._features: list[dict[str, torch.Tensor]] = []
        self._failed: list[list[str]] = []

    def add(self, ids: Sequence[str], features: dict[str, torch.Tensor] | None,
            failed: Sequence[tuple[str, str]] = ()) -> None:
        """Buffer a batch (``features`` None when it has no usable clip)."""
        if ids:
            if features is None:
                raise ValueError("ids without features")
            self._ids.extend(ids)
            self._features.append(features)
        self._failed.extend([clip_id, reason] for clip_id, reason in failed)
        if len(self._ids) >= self.samples_per_shard:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered (nothing when the buffer is empty)."""
        if not self._ids and not self._failed:
            return
        content: dict[str, Any] = {"ids": self._ids, "failed": self._failed}
        if self._ids:
            for key in FEATURE_KEYS:
                content[key] = torch.cat([f[key] for f in self._features])
        path = self.shard_dir / f"r{self.rank:04d}_{self.written:06d}.pt"
        tmp = temporary_sibling(path, ".tmp")
        try:
            torch.save(content, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self.written += 1
        self._ids, self._features, self._failed = [], [], []


def extract_part(dataset: ClipSource, extractor: FeatureExtractor, writer: ShardWriter,
                 batch_size: int = 3, num_workers: int = 0, progress: bool = True) -> int:
    """Compute and shard the features of every clip of ``dataset``.

    Args:
        dataset: this rank's clips.
        extractor: the encoders.
        writer: this rank's shard writer (flushed at the end).
        batch_size: clips per forward pass.
        num_workers: DataLoader processes decoding clips.
        progress: show a tqdm bar.

    Returns:
        The number of clips that failed.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_clips, worker_init_fn=loader_worker_start)
    failed = 0
    for batch in progress_bar(loader, desc="features", unit="batch", disable=not progress):
        features = extractor(batch) if batch.ids else None
        ids, problems = batch.ids, list(batch.failed)
        if features is not None:
            ids, features, broken = _drop_non_finite(ids, features)
            problems += broken
        writer.add(ids, features, problems)
        failed += len(problems)
    writer.flush()
    return failed


def _drop_non_finite(ids: Sequence[str], features: dict[str, torch.Tensor]
                     ) -> tuple[list[str], dict[str, torch.Tensor] | None, list[tuple[str, str]]]:
    """Set aside the clips with a NaN or infinite feature (a corrupt sound track can give
    them): listed as failed here, they would otherwise be found only when training loads them.

    Returns:
        The ids and features of the finite clips (None when there is none), and
        ``(id, reason)`` of the others.
    """
    bad = {key: ~torch.isfinite(value).flatten(1).all(dim=1).cpu()  # (B,)
           for key, value in features.items()}
    broken = [(clip_id, "non-finite " + ", ".join(key for key in bad if bad[key][i]))
              for i, clip_id in enumerate(ids) if any(flags[i] for flags in bad.values())]
    if not broken:
        return list(ids), features, []
    keep = ~torch.stack(list(bad.values())).any(dim=0)  # (B,)
    kept = [clip_id for clip_id, ok in zip(ids, keep.tolist(), strict=True) if ok]
    return kept, ({key: value[keep.to(value.device)] for key, value in features.items()}
                  if kept else None), broken


@dataclass(frozen=True)
class MergeSummary:
    """What the merge wrote.

    Args:
        rows: samples in the memmap and table.
        failed: ``(id, reason)`` of the clips that could not be used.
        shapes: per-sample shape of each feature.
    """

    rows: int
    failed: list[tuple[str, str]]
    shapes: dict[str, tuple[int, ...]]


def _install(memmap_tmp: Path, tsv_tmp: Path, outputs: SplitOutputs) -> None:
    """Put the new memmap folder and table in place of the old pair, or leave the old pair.

    Two paths cannot be renamed at once, so the old memmap folder is moved aside (under a name
    that :mod:`saganet.leftovers` removes once this process is dead) and put back when a rename
    fails; a table that does not match its memmap is never left behind by an error.
    """
    final = outputs.memmap_dir
    old = temporary_sibling(final, ".old") if final.exists() else None
    if old is not None:
        os.replace(final, old)
    moved_in = False
    try:
        os.replace(memmap_tmp, final)
        moved_in = True
        os.replace(tsv_tmp, outputs.tsv)
    except BaseException:
        if moved_in:
            shutil.rmtree(final, ignore_errors=True)
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old)


def merge_shards(outputs: SplitOutputs, labels: dict[str, str]) -> MergeSummary:
    """Merge every shard into the memmap and table, rows sorted by id; remove the shards.

    Args:
        outputs: the split's output paths.
        labels: id -> label of every clip of the split.

    Raises:
        UserInputError: no clip could be used.
        ValueError: shards that disagree (duplicate ids, other feature shapes).
    """
    shard_paths = sorted(outputs.shard_dir.glob("r*.pt"))
    # mmap: only the ids are read now; each shard's tensors are read once, when copied.
    shards = [torch.load(path, weights_only=True, mmap=True) for path in shard_paths]
    ids = [clip_id for shard in shards for clip_id in shard["ids"]]
    failed = sorted((clip_id, reason) for shard in shards for clip_id, reason in shard["failed"])
    if len(set(ids)) != len(ids):
        raise ValueError(f"{outputs.shard_dir}: a clip appears in several shards")
    if not ids:
        raise UserInputError(f"no clip could be used ({len(failed)} failed, e.g. "
                             f"{failed[:1]}); nothing written", outputs.memmap_dir)
    order = sorted(ids)
    row_of = {clip_id: row for row, clip_id in enumerate(order)}
    first = next(shard for shard in shards if shard["ids"])
    shapes = {key: tuple(first[key].shape[1:]) for key in FEATURE_KEYS}
    template = TensorDict(
        {key: torch.zeros(1, *shape).expand(len(order), *shape) for key, shape in shapes.items()},
        batch_size=[len(order)])
    tmp_dir = temporary_sibling(outputs.memmap_dir, ".tmp")
    try:
        _write_memmap(tmp_dir, template, shards, shapes, row_of, order)
        tsv_tmp = temporary_sibling(outputs.tsv, ".tmp")
        try:
            with tsv_tmp.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                writer.writerow(["id", "label"])
                writer.writerows([clip_id, labels[clip_id]] for clip_id in order)
            _install(tmp_dir, tsv_tmp, outputs)
        finally:
            tsv_tmp.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    del shards
    shutil.rmtree(outputs.shard_dir)
    return MergeSummary(rows=len(order), failed=failed, shapes=shapes)


def _write_memmap(folder: Path, template: TensorDict, shards: list[dict[str, Any]],
                  shapes: dict[str, tuple[int, ...]], row_of: dict[str, int],
                  order: list[str]) -> None:
    """Write every shard's rows into a new memmap folder, with its ids file."""
    memmap = template.memmap_like(str(folder))  # zero-filled files, nothing in RAM
    for shard in shards:
        if not shard["ids"]:
            continue
        part = {key: shard[key] for key in FEATURE_KEYS}
        for key, tensor in part.items():
            if tuple(tensor.shape[1:]) != shapes[key]:
                raise ValueError(f"shards disagree on the shape of {key!r}: "
                                 f"{tuple(tensor.shape[1:])} vs {shapes[key]}")
        rows = torch.tensor([row_of[clip_id] for clip_id in shard["ids"]])
        memmap[rows] = TensorDict(part, batch_size=[len(rows)])
    write_memmap_ids(folder, order)


def extract_split_features(root: str | os.PathLike[str], clips: Sequence[SplitClip],
                           outputs: SplitOutputs, extractor: FeatureExtractor,
                           sequence: SequenceConfig, missing: Sequence[tuple[str, str]] = (),
                           batch_size: int = 3, num_workers: int = 0,
                           progress: bool = True) -> MergeSummary | None:
    """Extract the features of a split with every rank of the job (or one process).

    Rank ``r`` of ``W`` takes clips ``r, r + W, ...`` of the id-sorted list and writes its
    shards; after a barrier rank 0 merges them (:func:`merge_shards`) and writes the list of
    failed and missing clips. Call it on every rank, after :func:`saganet.dist.init`.

    Args:
        root: the clip folder.
        clips: the split's clips (the same list on every rank).
        outputs: where the results go.
        extractor: this rank's encoders.
        sequence: clip duration and audio rates.
        missing: ``(clip name, reason)`` of rows without a clip video, listed with the failures.
        batch_size: clips per forward pass.
        num_workers: DataLoader processes per rank.
        progress: show a tqdm bar on rank 0.

    Returns:
        The merge summary on rank 0, None on the other ranks.

    Raises:
        UserInputError: on rank 0 only, no clip could be used (the other ranks return None;
            the job still fails, by rank 0's exit status).
    """
    if sequence.num_audio_samples % extractor.samples_per_latent:
        raise ValueError(f"{sequence.num_audio_samples} audio samples is not a whole number of "
                         f"latents of {extractor.samples_per_latent} samples")
    rank, world = dist.rank(), dist.world_size()
    made_output_dir = not outputs.shard_dir.parent.exists()
    if rank == 0:
        # Shards of an interrupted run are stale: their rank split may differ from this one.
        if outputs.shard_dir.exists():
            shutil.rmtree(outputs.shard_dir)
        outputs.shard_dir.mkdir(parents=True)
    dist.barrier()
    ordered = sorted(clips, key=lambda clip: clip.id)
    part = ClipSource(root, ordered[rank::world], sequence)
    log.info("rank %d/%d: %d of %d clips", rank, world, len(part), len(ordered))
    extract_part(part, extractor, ShardWriter(outputs.shard_dir, rank), batch_size=batch_size,
                 num_workers=num_workers, progress=progress and rank == 0)
    dist.barrier()
    summary, error = None, None
    if rank == 0:
        try:
            summary = merge_shards(outputs, {clip.id: clip.label for clip in clips})
            write_problem_list(outputs.failed_list, summary.failed, missing)
        except UserInputError as err:
            # Nothing usable: the shards hold no clip worth keeping for a rerun.
            shutil.rmtree(outputs.shard_dir, ignore_errors=True)
            if made_output_dir:
                with contextlib.suppress(OSError):  # only if nothing else went there
                    outputs.shard_dir.parent.rmdir()
            error = err
    # The other ranks wait for rank 0's outcome (they would otherwise sit in the next
    # collective until the launcher kills the job); rank 0 alone reports an error.
    failed = dist.broadcast_object(error is not None)
    if error is not None:
        raise error
    if failed:
        log.info("rank %d: rank 0 found nothing to merge", rank)
    return summary
