"""Evaluate a folder of generated audio against a folder of ground truth.

Owns :func:`evaluate_directories`, the one evaluation path (the ``python -m
saganet.evaluation`` command only parses arguments and prints its report). Files pair by stem;
every generated file needs a ground-truth file, while extra ground-truth files are allowed and
only enter the un-paired metrics (Fréchet distances), as in av-benchmark. Each feature source
is either ``"av-bench"`` (the paper's protocol, see :mod:`saganet.evaluation.av_bench`) or a
registered :class:`~saganet.evaluation.embedders.AudioEmbedder`; every metric records which
source produced it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saganet.errors import UserInputError, check_seconds
from saganet.evaluation.audio import audio_seconds, list_audio_files, load_for_extractor
from saganet.evaluation.av_bench import run_av_bench
from saganet.evaluation.embedders import EMBEDDING, LOGITS, AudioEmbedder, build_embedder
from saganet.evaluation.protocol import (
    add_frechet_distance,
    add_inception_score,
    add_kl,
    match_names,
)
from saganet.evaluation.results import MetricResults
from saganet.progress import progress_bar

log = logging.getLogger(__name__)

AV_BENCH = "av-bench"


@dataclass(frozen=True)
class AvBenchOptions:
    """Settings of the av-benchmark feature source (see :func:`run_av_bench`).

    Attributes:
        gt_cache: ground-truth feature cache; default ``<gt_dir>/cache``.
        pred_cache: generated-audio feature cache; default ``<pred_dir>/cache``.
        device: torch device for extraction and Synchformer.
        batch_size: extraction batch for generated audio.
        gt_batch_size: extraction batch for ground truth.
        num_workers: data-loader workers.
        recompute: re-extract even when caches exist.
        video_metrics: compute IB-Score and DeSync.
    """

    gt_cache: Path | None = None
    pred_cache: Path | None = None
    device: str = "cuda"
    batch_size: int = 32
    gt_batch_size: int = 1
    num_workers: int = 8
    recompute: bool = False
    video_metrics: bool = True


@dataclass
class EvaluationReport:
    """What :func:`evaluate_directories` found.

    Attributes:
        pred_dir: folder of generated audio.
        gt_dir: folder of ground-truth audio.
        audio_length: seconds kept per clip.
        n_pred: generated files.
        n_gt: ground-truth files.
        feature_sources: the sources asked for, in order.
        results: metric values, their sources, skipped metrics and notes.
    """

    pred_dir: str
    gt_dir: str
    audio_length: float
    n_pred: int
    n_gt: int
    feature_sources: list[str]
    results: MetricResults = field(default_factory=MetricResults)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: run description, ``metrics``, ``sources``, ``skipped``, ``notes``."""
        return {
            "pred_dir": self.pred_dir,
            "gt_dir": self.gt_dir,
            "audio_length": self.audio_length,
            "n_pred": self.n_pred,
            "n_gt": self.n_gt,
            "feature_sources": self.feature_sources,
            "metrics": self.results.values,
            "sources": self.results.sources,
            "skipped": self.results.skipped,
            "notes": self.results.notes,
        }

    def format_table(self) -> str:
        """Metrics as an aligned text table (metric, value, feature source), then skips/notes."""
        rows = [
            (name, f"{value:.4f}", self.results.sources[name])
            for name, value in self.results.values.items()
        ]
        rows += [(name, "skipped", reason) for name, reason in self.results.skipped.items()]
        header = ("metric", "value", "features")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
        lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}" for r in [header, *rows]]
        lines += [f"note: {note}" for note in self.results.notes]
        return "\n".join(lines)


def embed_files(
    embedder: AudioEmbedder,
    files: Mapping[str, Path],
    *,
    audio_length: float | None,
    batch_size: int = 16,
    desc: str = "",
) -> dict[str, np.ndarray]:
    """Load, preprocess and embed files with an :class:`AudioEmbedder`.

    Args:
        embedder: the feature extractor.
        files: name -> path; output rows follow this order.
        audio_length: seconds kept per clip (truncation only).
        batch_size: clips per :meth:`AudioEmbedder.embed` call.
        desc: progress-bar label.

    Returns:
        The embedder's outputs with one row per file.
    """
    names = list(files)
    outputs: dict[str, list[np.ndarray]] = defaultdict(list)
    starts = range(0, len(names), batch_size)
    for start in progress_bar(starts, desc=desc or embedder.name, leave=False):
        waves = [
            load_for_extractor(
                files[n], embedder.sample_rate, audio_length, remove_dc=embedder.remove_dc
            )
            for n in names[start : start + batch_size]
        ]
        for key, value in embedder.embed(waves).items():
            outputs[key].append(np.asarray(value))
    return {key: np.concatenate(chunks) for key, chunks in outputs.items()}


def evaluate_with_embedder(
    embedder: AudioEmbedder,
    pred_files: Mapping[str, Path],
    gt_files: Mapping[str, Path],
    *,
    audio_length: float | None = 5.0,
    batch_size: int = 16,
) -> MetricResults:
    """FD, KL and IS from one embedder's features.

    ``"embedding"`` gives ``FD-<name>`` (all items of both sides); ``"logits"`` gives
    ``KL-<name>-softmax`` (paired by name) and ``ISC-<name>-mean/std`` (generated items).

    Args:
        embedder: the feature extractor.
        pred_files: generated audio, name -> path.
        gt_files: ground-truth audio, name -> path (a superset of the generated names).
        audio_length: seconds kept per clip.
        batch_size: clips per embedding call.

    Raises:
        PairingError: a generated file has no ground-truth file of the same stem.
    """
    pairs = match_names(gt_files, pred_files, what="audio files")
    pred = embed_files(
        embedder, pred_files, audio_length=audio_length, batch_size=batch_size, desc="generated"
    )
    gt = embed_files(
        embedder, gt_files, audio_length=audio_length, batch_size=batch_size, desc="ground truth"
    )
    source = f"{embedder.name}: {embedder.description}"
    results = MetricResults()
    if EMBEDDING in pred:
        add_frechet_distance(results, f"FD-{embedder.name}", pred[EMBEDDING], gt[EMBEDDING], source)
    if LOGITS in pred:
        gt_row = {name: i for i, name in enumerate(gt_files)}
        gt_logits = gt[LOGITS][[gt_row[pairs[name]] for name in pred_files]]
        add_kl(results, f"KL-{embedder.name}-softmax", gt_logits, pred[LOGITS], source)
        add_inception_score(results, f"ISC-{embedder.name}", pred[LOGITS], source)
    return results


# Kept lengths (after truncation to audio_length) that differ by more than this are noted:
# codecs pad a few milliseconds, a shorter clip differs by much more.
_LENGTH_SLACK_S = 0.05


def length_note(pred_files: Mapping[str, Path], gt_files: Mapping[str, Path],
                audio_length: float) -> str | None:
    """A note when generated clips and their ground truth differ in length over the
    ``audio_length`` seconds kept (clips are truncated, never padded): the metrics then compare
    audio of unequal length, silently, as av-benchmark does. None when all pairs agree.

    Args:
        pred_files: generated audio, name -> path.
        gt_files: ground-truth audio, name -> path.
        audio_length: seconds kept per clip.

    Raises:
        PairingError: a generated file has no ground-truth file of the same stem.
    """
    pairs = match_names(gt_files, pred_files, what="audio files")
    unequal = []
    for name, gt_name in pairs.items():
        pred_s, gt_s = audio_seconds(pred_files[name]), audio_seconds(gt_files[gt_name])
        if pred_s is None or gt_s is None:
            continue
        kept = min(pred_s, audio_length), min(gt_s, audio_length)
        if abs(kept[0] - kept[1]) > _LENGTH_SLACK_S:
            unequal.append((name, *kept))
    if not unequal:
        return None
    name, pred_s, gt_s = unequal[0]
    shortest = min(min(kept) for _, *kept in unequal)
    return (f"{len(unequal)} of {len(pairs)} generated clips differ in length from their ground "
            f"truth within the {audio_length:g} s kept (e.g. {name}: {pred_s:.2f} s generated, "
            f"{gt_s:.2f} s true): the metrics compare audio of unequal length; an audio length "
            f"of {math.floor(shortest * 100) / 100:g} s keeps equal lengths")


def evaluate_directories(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    feature_sources: Sequence[str] = (AV_BENCH,),
    audio_length: float = 5.0,
    av_bench: AvBenchOptions | None = None,
    batch_size: int = 16,
) -> EvaluationReport:
    """Compute every metric the requested feature sources allow.

    Args:
        pred_dir: folder of generated ``.flac``/``.wav`` files.
        gt_dir: folder of ground-truth audio with the same stems.
        feature_sources: ``"av-bench"`` and/or registered embedder names.
        audio_length: seconds kept per clip (5 in the paper).
        av_bench: settings of the ``"av-bench"`` source.
        batch_size: clips per call for registered embedders.

    Raises:
        UserInputError: missing folders or files, unpaired names, an unknown source,
            av-benchmark not installed (with the install command), an ``audio_length`` that is
            not a positive finite number, or a ``batch_size`` below 1.
    """
    # Zero or negative lengths truncate every clip to nothing and still "score" it (silently
    # meaningless numbers); NaN and infinity fail deep in the slicing.
    audio_length = check_seconds(audio_length, "audio_length", positive=True)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        # range() fails on 0 and yields no batch for less: no features, an empty report.
        raise UserInputError(f"batch_size must be a whole number of at least 1, got "
                             f"{batch_size!r}")
    pred_files, gt_files = list_audio_files(pred_dir), list_audio_files(gt_dir)
    report = EvaluationReport(
        pred_dir=str(pred_dir),
        gt_dir=str(gt_dir),
        audio_length=audio_length,
        n_pred=len(pred_files),
        n_gt=len(gt_files),
        feature_sources=list(feature_sources),
    )
    for source in feature_sources:
        if source == AV_BENCH:
            options = av_bench or AvBenchOptions()
            results = run_av_bench(pred_dir, gt_dir, audio_length=audio_length,
                                   **dataclasses.asdict(options))
        else:
            try:
                embedder = build_embedder(source)
            except KeyError as err:
                raise UserInputError(str(err.args[0])) from err
            results = evaluate_with_embedder(
                embedder, pred_files, gt_files, audio_length=audio_length, batch_size=batch_size
            )
        report.results.update(results)
    note = length_note(pred_files, gt_files, audio_length)
    if note is not None:
        report.results.notes.append(note)
    return report
