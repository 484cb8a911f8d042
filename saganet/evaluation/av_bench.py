"""Adapter to av-benchmark (``av_bench``), the toolkit behind the paper's metrics.

Feature extraction is left to av-benchmark itself (its ``extract`` reads the files, resamples
with torchaudio and runs PANNs, VGGish, PaSST, ImageBind and the Synchformer audio branch on
the GPU, writing ``*.pth`` caches), so the features are exactly the paper's. The metric
arithmetic is then ours (:mod:`saganet.evaluation.metrics`) on those caches, and DeSync uses
av-benchmark's Synchformer to compare the ground-truth video's features with the generated
audio's on the first and last 14 segments.

Ground-truth video features (``imagebind_video.pth``, ``synchformer_video.pth``) must be put
in the ground-truth cache beforehand with av-benchmark's ``extract_video.py --audio_length 5``;
without them IB-Score and DeSync are reported as skipped.

Deviations from av-benchmark's ``evaluate``: a generated file without a ground-truth match is
an error (av-benchmark prints and drops it); ``clean_sample_name`` is a fallback used only
when the exact name has no match (av-benchmark applies it to some metrics and not others).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from saganet.errors import CPU_ARGUMENT, UserInputError
from saganet.evaluation.audio import list_audio_files
from saganet.evaluation.metrics import desync, mean_cosine_similarity, sync_offset_grid
from saganet.evaluation.protocol import (
    add_frechet_distance,
    add_inception_score,
    add_kl,
    match_names,
)
from saganet.evaluation.results import MetricResults

log = logging.getLogger(__name__)

AV_BENCH_URL = "https://github.com/hkchengrex/av-benchmark"
INSTALL_COMMAND = f"pip install git+{AV_BENCH_URL}"
# av_bench looks for its weights in `weights/` next to the folder that holds the package.
REQUIRED_WEIGHTS = {
    "synchformer_state_dict.pth": (
        "https://github.com/hkchengrex/MMAudio/releases/download/v0.1/synchformer_state_dict.pth"
    ),
    "music_speech_audioset_epoch_15_esc_89.98.pt": (
        "https://huggingface.co/lukewys/laion_clap/resolve/main/"
        "music_speech_audioset_epoch_15_esc_89.98.pt"
    ),
}

# Cache files written by av-benchmark's extract() / extract_video.py.
PANN_FEATURES = "pann_features.pth"
VGGISH_FEATURES = "vggish_features.pth"
PASST_EMBEDDINGS = "passt_features_embed.pth"
PASST_LOGITS = "passt_logits.pth"
IMAGEBIND_AUDIO = "imagebind_audio.pth"
IMAGEBIND_VIDEO = "imagebind_video.pth"
SYNCHFORMER_AUDIO = "synchformer_audio.pth"
SYNCHFORMER_VIDEO = "synchformer_video.pth"
AUDIO_CACHE_FILES = (PANN_FEATURES, VGGISH_FEATURES, PASST_EMBEDDINGS, PASST_LOGITS)

# Synchformer compares 14 segments (4.8 s) at a time; DeSync averages the first and last 14.
SYNC_SEGMENTS = 14
SYNC_BATCH = 16

SOURCE_PANNS = "PANNs Cnn14 16 kHz (av-benchmark)"
SOURCE_VGGISH = "VGGish (av-benchmark)"
SOURCE_PASST = "PaSST (av-benchmark)"
SOURCE_IMAGEBIND = "ImageBind-huge video vs audio (av-benchmark)"
SOURCE_SYNCHFORMER = "Synchformer video vs audio (av-benchmark)"

SyncLogitsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class AvBenchUnavailableError(UserInputError):
    """av-benchmark (or one of its dependencies or weight files) is not installed.

    Args:
        problem: what is missing (the first line of the message).
        command: the command that fixes it, shown on its own line (None: no command).
    """

    def __init__(self, problem: str, command: str | None = INSTALL_COMMAND) -> None:
        self.command = command
        super().__init__(problem if command is None else f"{problem}\n    {command}")


@dataclass(frozen=True)
class AvBench:
    """The parts of av-benchmark the adapter uses.

    Attributes:
        extract: ``av_bench.extract.extract``.
        synchformer_cls: ``av_bench.synchformer.synchformer.Synchformer``.
        clean_sample_name: ``av_bench.utils.clean_sample_name``.
        weights_dir: where av_bench expects its weight files.
    """

    extract: Callable[..., Any]
    synchformer_cls: type
    clean_sample_name: Callable[[str], str]
    weights_dir: Path


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        missing = err.name or name
        if missing.split(".")[0] == "av_bench":
            raise AvBenchUnavailableError(
                "av-benchmark (av_bench) is not installed; it computes the paper's metrics "
                "(the built-in melstats embedder gives a quick check whose numbers are not "
                "comparable). "
                "Install it, then put "
                + " and ".join(REQUIRED_WEIGHTS)
                + " in the weights/ folder beside the installed av_bench package:"
            ) from err
        raise AvBenchUnavailableError(
            f"av-benchmark is installed but its dependency {missing!r} is missing; reinstall "
            "it with its dependencies:"
        ) from err


def load_av_bench() -> AvBench:
    """Import av-benchmark and check that its weight files are in place.

    Raises:
        AvBenchUnavailableError: the package, a dependency or a weight file is missing; the
            message gives the install command and where each file goes.
    """
    package = _import("av_bench")
    if package.__file__ is None:
        # A bare `av_bench/` folder on the path imports as an empty namespace package.
        raise AvBenchUnavailableError(
            f"'av_bench' resolves to a folder without the package ({list(package.__path__)})"
            "; install av-benchmark with:"
        )
    extract_module = _import("av_bench.extract")
    sync_module = _import("av_bench.synchformer.synchformer")
    utils_module = _import("av_bench.utils")
    weights_dir = Path(package.__file__).resolve().parent.parent / "weights"
    missing = [name for name in REQUIRED_WEIGHTS if not (weights_dir / name).is_file()]
    if missing:
        raise AvBenchUnavailableError(
            "av-benchmark weights missing: "
            + ", ".join(f"{weights_dir / n} (download {REQUIRED_WEIGHTS[n]})" for n in missing),
            command=None,
        )
    return AvBench(
        extract=extract_module.extract,
        synchformer_cls=sync_module.Synchformer,
        clean_sample_name=utils_module.clean_sample_name,
        weights_dir=weights_dir,
    )


def build_sync_logits_fn(bench: AvBench, device: str) -> SyncLogitsFn:
    """av-benchmark's Synchformer (strictly loaded) as ``(video, audio) -> offset logits``.

    Args:
        bench: the loaded av-benchmark parts.
        device: torch device to run on.

    Returns:
        A function mapping video features ``(B, 14, tv, D)`` and audio features
        ``(B, 14, ta, D)`` to logits ``(B, 21)``.
    """
    import torch

    from saganet.state_dict import load_checkpoint_file, load_state_dict_strict

    weights = bench.weights_dir / "synchformer_state_dict.pth"
    model = bench.synchformer_cls()
    load_state_dict_strict(model, load_checkpoint_file(str(weights)), what=str(weights))
    model = model.to(device).eval()

    def sync_logits(video: np.ndarray, audio: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, video.shape[0], SYNC_BATCH):
                v = torch.from_numpy(video[start : start + SYNC_BATCH]).to(device)
                a = torch.from_numpy(audio[start : start + SYNC_BATCH]).to(device)
                out.append(model.compare_v_a(v, a).float().cpu().numpy())  # (b, 21)
        return np.concatenate(out)

    return sync_logits


def _load_cache(path: Path) -> dict[str, Any]:
    import torch

    from saganet.state_dict import load_checkpoint_file

    def to_numpy(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: to_numpy(v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return value.float().numpy()
        return np.asarray(value)

    if not path.is_file():
        raise UserInputError("av-benchmark feature cache file not found", path)
    return to_numpy(load_checkpoint_file(str(path)))


def _stack(cache: Mapping[str, Any], names: list[str], key: str | None = None) -> np.ndarray:
    return np.stack([cache[n] if key is None else cache[n][key] for n in names])


def metrics_from_caches(
    gt_cache: str | Path,
    pred_cache: str | Path,
    *,
    make_sync_logits: Callable[[], SyncLogitsFn] | None = None,
    cleaner: Callable[[str], str] | None = None,
    video_metrics: bool = True,
) -> MetricResults:
    """The paper's metrics from two av-benchmark feature caches.

    Args:
        gt_cache: ground-truth cache folder (audio features; video features for IB/DeSync).
        pred_cache: generated-audio cache folder.
        make_sync_logits: builds the Synchformer comparison ``(video, audio) -> (B, 21)``
            offset logits; called only when DeSync can be computed, so the model is loaded
            only then. None skips DeSync.
        cleaner: fallback name mapping for pairing (av-benchmark's ``clean_sample_name``).
        video_metrics: compute IB-Score and DeSync when their features are present.

    Returns:
        FD-VGG, FD-PANN, FD-PASST, KL-PANNS-softmax, KL-PASST-softmax, ISC-PANNS-mean/std,
        ISC-PASST-mean/std, and (when possible) IB-Score and DeSync.
    """
    gt_dir, pred_dir = Path(gt_cache), Path(pred_cache)
    results = MetricResults()
    gt = {name: _load_cache(gt_dir / name) for name in AUDIO_CACHE_FILES}
    pred = {name: _load_cache(pred_dir / name) for name in AUDIO_CACHE_FILES}

    # Un-paired Fréchet distances over every item, as av-benchmark does for VGGish and PANNs.
    add_frechet_distance(
        results,
        "FD-VGG",
        np.concatenate(list(pred[VGGISH_FEATURES].values())),  # (sum of examples, 128)
        np.concatenate(list(gt[VGGISH_FEATURES].values())),
        SOURCE_VGGISH,
    )
    pred_pann, gt_pann = pred[PANN_FEATURES], gt[PANN_FEATURES]
    add_frechet_distance(
        results,
        "FD-PANN",
        _stack(pred_pann, list(pred_pann), "2048"),
        _stack(gt_pann, list(gt_pann), "2048"),
        SOURCE_PANNS,
    )

    pairs = match_names(gt_pann, pred_pann, cleaner=cleaner, what="PANNs features")
    pred_names, gt_names = list(pairs), list(pairs.values())
    add_kl(
        results,
        "KL-PANNS-softmax",
        _stack(gt_pann, gt_names, "logits"),
        _stack(pred_pann, pred_names, "logits"),
        SOURCE_PANNS,
    )
    add_inception_score(
        results, "ISC-PANNS", _stack(pred_pann, list(pred_pann), "logits"), SOURCE_PANNS
    )

    # PaSST features are paired before the FD in av-benchmark, so only matched items count.
    pairs = match_names(gt[PASST_LOGITS], pred[PASST_LOGITS], cleaner=cleaner, what="PaSST")
    pred_names, gt_names = list(pairs), list(pairs.values())
    add_frechet_distance(
        results,
        "FD-PASST",
        _stack(pred[PASST_EMBEDDINGS], pred_names),
        _stack(gt[PASST_EMBEDDINGS], gt_names),
        SOURCE_PASST,
    )
    pred_logits = _stack(pred[PASST_LOGITS], pred_names)
    add_kl(
        results,
        "KL-PASST-softmax",
        _stack(gt[PASST_LOGITS], gt_names),
        pred_logits,
        SOURCE_PASST,
    )
    add_inception_score(results, "ISC-PASST", pred_logits, SOURCE_PASST)

    if video_metrics:
        _add_imagebind_score(results, gt_dir, pred_dir, cleaner)
        _add_desync(results, gt_dir, pred_dir, cleaner, make_sync_logits)
    else:
        results.skip("IB-Score", "video-related metrics disabled")
        results.skip("DeSync", "video-related metrics disabled")
    return results


def _video_pairs(
    results: MetricResults,
    metric: str,
    gt_path: Path,
    pred_path: Path,
    cleaner: Callable[[str], str] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]] | None:
    if not gt_path.is_file():
        results.skip(
            metric,
            f"{gt_path} not found (extract ground-truth video features with av-benchmark's "
            "extract_video.py --audio_length 5)",
        )
        return None
    if not pred_path.is_file():
        results.skip(
            metric,
            f"{pred_path} not found (the generated-audio cache was made without video-related "
            "features; extract it again with recompute / --recompute)",
        )
        return None
    gt, pred = _load_cache(gt_path), _load_cache(pred_path)
    return gt, pred, match_names(gt, pred, cleaner=cleaner, what=metric + " features")


def _add_imagebind_score(
    results: MetricResults, gt_dir: Path, pred_dir: Path, cleaner: Callable[[str], str] | None
) -> None:
    found = _video_pairs(
        results, "IB-Score", gt_dir / IMAGEBIND_VIDEO, pred_dir / IMAGEBIND_AUDIO, cleaner
    )
    if found is None:
        return
    video, audio, pairs = found
    score = mean_cosine_similarity(_stack(video, list(pairs.values())), _stack(audio, list(pairs)))
    results.add("IB-Score", score, SOURCE_IMAGEBIND)


def _add_desync(
    results: MetricResults,
    gt_dir: Path,
    pred_dir: Path,
    cleaner: Callable[[str], str] | None,
    make_sync_logits: Callable[[], SyncLogitsFn] | None,
) -> None:
    if make_sync_logits is None:
        results.skip("DeSync", "no Synchformer comparison model given")
        return
    found = _video_pairs(
        results, "DeSync", gt_dir / SYNCHFORMER_VIDEO, pred_dir / SYNCHFORMER_AUDIO, cleaner
    )
    if found is None:
        return
    video_feats, audio_feats, pairs = found
    video = _stack(video_feats, list(pairs.values()))  # (N, S, tv, D)
    audio = _stack(audio_feats, list(pairs))  # (N, S, ta, D)
    if video.shape[1] < SYNC_SEGMENTS or audio.shape[1] < SYNC_SEGMENTS:
        results.skip("DeSync", f"needs {SYNC_SEGMENTS} Synchformer segments (≥ 4.8 s of audio)")
        return
    compare = make_sync_logits()
    first = compare(video[:, :SYNC_SEGMENTS], audio[:, :SYNC_SEGMENTS])  # (N, 21)
    last = compare(video[:, -SYNC_SEGMENTS:], audio[:, -SYNC_SEGMENTS:])  # (N, 21)
    logits = np.stack([first, last], axis=1)  # (N, 2, 21)
    results.add("DeSync", desync(logits, sync_offset_grid()), SOURCE_SYNCHFORMER)


def check_device(device: str, *, use_cpu: str = CPU_ARGUMENT) -> None:
    """Refuse a CUDA device on a machine without CUDA.

    Args:
        device: the extractors' torch device.
        use_cpu: how the caller's user asks for the CPU, suggested in the error: the
            argument's value for Python callers (as :func:`saganet.dist.resolve_device`), the
            evaluation command's ``--device cpu``.

    Raises:
        UserInputError: ``device`` is CUDA and CUDA is not available.
    """
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(
            f"device {device!r} requested but CUDA is not available; use {use_cpu} (this "
            "works only when both feature caches already exist: av-benchmark's extractors "
            "need CUDA)"
        )


def run_av_bench(
    pred_dir: str | Path,
    gt_dir: str | Path | None,
    *,
    gt_cache: str | Path | None = None,
    pred_cache: str | Path | None = None,
    audio_length: float = 5.0,
    device: str = "cuda",
    batch_size: int = 32,
    gt_batch_size: int = 1,
    num_workers: int = 8,
    recompute: bool = False,
    video_metrics: bool = True,
) -> MetricResults:
    """Extract features with av-benchmark (where not cached) and compute the paper's metrics.

    Args:
        pred_dir: folder of generated ``.flac``/``.wav`` files.
        gt_dir: folder of ground-truth audio (only read when its cache lacks audio features);
            None when ``gt_cache`` already holds them (e.g. a cache extracted beforehand).
        gt_cache: ground-truth cache folder; default ``<gt_dir>/cache``.
        pred_cache: generated-audio cache folder; default ``<pred_dir>/cache``.
        audio_length: seconds kept per clip (5 in the paper).
        device: torch device for the extractors (av-benchmark's extractors expect CUDA).
        batch_size: extraction batch for generated audio (clips have equal length).
        gt_batch_size: extraction batch for ground truth (1 allows varying lengths).
        num_workers: data-loader workers for extraction.
        recompute: re-extract even if the caches exist.
        video_metrics: extract ImageBind/Synchformer audio features and compute IB-Score and
            DeSync (when the ground-truth cache has the video features).

    Raises:
        AvBenchUnavailableError: av-benchmark, a dependency or a weight file is missing.
        UserInputError: neither ``gt_dir`` nor a ground-truth cache with audio features.
    """
    bench = load_av_bench()
    check_device(device)
    if gt_dir is None and gt_cache is None:
        raise UserInputError("run_av_bench needs the ground-truth audio or its feature cache")
    gt_cache = Path(gt_cache) if gt_cache is not None else Path(gt_dir) / "cache"
    pred_cache = Path(pred_cache) if pred_cache is not None else Path(pred_dir) / "cache"
    if gt_dir is not None:
        # Fail on unpaired names before the (long) extraction rather than after it.
        match_names(
            list_audio_files(gt_dir),
            list_audio_files(pred_dir),
            cleaner=bench.clean_sample_name,
            what="audio files",
        )
    jobs = (
        (gt_dir, gt_cache, gt_batch_size, False),
        (Path(pred_dir), pred_cache, batch_size, video_metrics),
    )
    for audio_dir, cache, batch, with_video in jobs:
        if recompute or not (cache / PASST_EMBEDDINGS).is_file():
            if audio_dir is None:
                raise UserInputError(
                    f"the ground-truth cache has no {PASST_EMBEDDINGS} and no ground-truth "
                    "audio folder was given to extract it from", cache)
            log.info("extracting av-benchmark features of %s into %s", audio_dir, cache)
            bench.extract(
                audio_path=audio_dir,
                output_path=cache,
                audio_length=audio_length,
                batch_size=batch,
                num_workers=num_workers,
                device=device,
                skip_video_related=not with_video,
                skip_clap=True,
            )
    return metrics_from_caches(
        gt_cache,
        pred_cache,
        make_sync_logits=lambda: build_sync_logits_fn(bench, device),
        cleaner=bench.clean_sample_name,
        video_metrics=video_metrics,
    )
