"""Evaluation during and after training: generated clips of a split, scored against its ground
truth, with the run's current weights.

Every ``log.eval_interval`` steps (and at the last step) the trainer evaluates the
``eval.during`` splits, and after the last step also the ``eval.after`` splits
(:class:`saganet.training.config.EvalConfig`). One evaluation of a split:

1. **Generation, sharded.** Every rank takes every N-th of the split's first ``num_clips``
   clips (:func:`saganet.evaluation.batch_eval.shard`) and generates them through
   :func:`saganet.inference.generate` with the live networks (or the EMA weights) and the
   clips' precomputed CLIP and text features. Each clip's noise is seeded from ``(seed, clip
   id)`` (:func:`saganet.evaluation.batch_eval.clip_seed`), so the audio does not depend on
   the number of ranks. Files: ``<run_dir>/eval/<step>/<split>/<clip stem>.flac``.
2. **Ground truth, once per run.** The split's ``gt_cache`` folder holds av-benchmark's
   features of the true audio (as the reference's validation and test caches) and, when a
   metric needs the audio itself, ``audio/<clip stem>.flac``: the clip's own sound track (SMS:
   the clip video's audio; URMP: the player's ``AuSep`` recording), or for the synthetic set,
   which has no audio, the codec's decoding of the clip's latents.
3. **Metrics, on rank 0.** With av-benchmark (installed, CUDA): FD-PaSST, FD-PANNs, FD-VGGish,
   KL (PANNs, PaSST), IS (PANNs, PaSST), IB-Score and DeSync, as the paper reports them.
   Without it: the built-in weight-free embedder ``melstats`` (FD, KL and IS on log-mel
   statistics; diagnostic numbers, not comparable to the paper's), and every paper metric is
   listed as skipped with the reason. The log says which one ran.
4. **Record.** ``<run_dir>/eval/<step>/metrics.json`` gains the split's entry (written under
   a temporary name and renamed), TensorBoard gets ``eval/<split>/<metric>``. A split whose
   entry exists is not evaluated again. A run resumed from its state at step S takes the
   steps after S again: what an invocation killed after that state evaluated there scored
   weights this run does not have, so the trainer removes those folders when the run starts
   (:func:`recorded_steps`, :func:`~saganet.training.checkpoint.remove_after`), and it
   evaluates those steps itself.

After the last step, ``eval.after`` may also name an **evaluation dataset** (raw videos, masks
and true audio, e.g. the URMP test set, ``config/eval/dataset/urmp.yaml``). It goes through the
batch evaluation (:func:`saganet.evaluation.batch_eval.run_batch_eval`: sharded, per-clip seeds,
resumable, with its manifest) with the run's final weights file, into
``<run_dir>/eval/<step>/<name>/`` and the ground truth into ``<name>-ground_truth/`` beside it;
it is scored and recorded like a split (av-benchmark uses the dataset's ``gt_cache`` when it
holds the features). Its CLIP and text features are computed from the videos and labels, so the
pipeline's CLIP encoder is loaded for it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from saganet import dist, weights
from saganet.codec import AudioCodec, AudioCodecConfig, load_vae, load_vocoder
from saganet.data.sms_dataset import mask_to_unit, video_to_unit
from saganet.errors import UserInputError
from saganet.evaluation.audio import list_audio_files
from saganet.evaluation.av_bench import AUDIO_CACHE_FILES, AvBenchUnavailableError, load_av_bench
from saganet.evaluation.batch_config import BatchEvalConfig, EvalDatasetConfig
from saganet.evaluation.batch_eval import (
    clip_seed,
    export_ground_truth,
    run_batch_eval,
    shard,
    write_json_atomic,
)
from saganet.evaluation.datasets import build_eval_dataset
from saganet.evaluation.embedders import build_embedder, embedder_names, import_plugins
from saganet.evaluation.results import MetricResults
from saganet.evaluation.runner import AV_BENCH, evaluate_with_embedder
from saganet.features.synchformer import SynchformerWithContext
from saganet.hydra_config import PathsConfig
from saganet.inference import GenerationBatch, SamplingOptions, generate
from saganet.media.output import write_flac
from saganet.model import FlowNetwork, SequenceConfig
from saganet.models import SAGANetModels
from saganet.runtime import loader_worker_start, loader_workers
from saganet.training.config import EvalConfig

log = logging.getLogger(__name__)

EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"
CACHE_DIR = "cache"
GROUND_TRUTH_AUDIO = "audio"
AUTO = "auto"
BUILTIN_EMBEDDER = "melstats"
# The paper's metrics (av-benchmark names); listed as skipped when another source is used.
PAPER_METRICS = ("FD-PASST", "FD-PANN", "FD-VGG", "KL-PANNS-softmax", "KL-PASST-softmax",
                 "ISC-PANNS-mean", "ISC-PANNS-std", "ISC-PASST-mean", "ISC-PASST-std",
                 "IB-Score", "DeSync")


def build_codec(kind: str, weights_dir: str | None = None) -> AudioCodec:
    """The decoder for generations: ``44k`` (published VAE + BigVGAN-v2) or ``debug`` (random).

    Args:
        kind: codec choice of the model setup.
        weights_dir: weights cache folder.
    """
    if kind == "debug":
        # Seeded on its own: the same codec in every process and whatever ran before (a
        # resumed run skips the base-weight loading that a fresh one does).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return AudioCodec.from_config(AudioCodecConfig.debug(), need_encoder=False)
    if kind != "44k":
        raise UserInputError(f"unknown codec {kind!r}; choose 44k or debug")
    vae = load_vae(weights.resolve("v1-44.pth", weights_dir), "44k", need_encoder=False)
    vocoder = load_vocoder(weights.resolve(weights.VOCODER_REPO, weights_dir),
                           local_files_only=True)
    return AudioCodec(vae, vocoder, AudioCodecConfig.for_mode("44k").mel)


@dataclass(frozen=True)
class FeatureSource:
    """What computes the metrics.

    Args:
        name: ``"av-bench"`` or a registered embedder name.
        description: one line for logs and ``metrics.json``.
        fallback_reason: why av-benchmark is not used (None when this source was asked for).
    """

    name: str
    description: str
    fallback_reason: str | None = None


def choose_feature_source(choice: str, device: torch.device,
                          plugins: Sequence[str] = ()) -> FeatureSource:
    """Resolve ``eval.features`` (see :class:`~saganet.training.config.EvalConfig`).

    Args:
        choice: ``auto``, ``av-bench`` or an embedder name.
        device: the training device (av-benchmark's extractors need CUDA).
        plugins: ``eval.plugins``, modules imported first (their embedders become choices).

    Raises:
        UserInputError: ``av-bench`` was asked for and cannot run here, the name is unknown,
            or a plugin cannot be imported.
    """
    import_plugins(plugins, "eval.plugins")
    if choice in (AUTO, AV_BENCH):
        reason = None
        if device.type != "cuda":
            reason = f"av-benchmark's extractors need CUDA and this run is on {device.type}"
        else:
            try:
                load_av_bench()
            except AvBenchUnavailableError as err:
                reason = str(err).splitlines()[0]
        if reason is None:
            return FeatureSource(AV_BENCH, "av-benchmark (PaSST, PANNs, VGGish, ImageBind, "
                                           "Synchformer): the paper's metrics")
        if choice == AV_BENCH:
            raise UserInputError(f"eval.features=av-bench: {reason} (eval.features=auto "
                                 f"falls back to the built-in {BUILTIN_EMBEDDER} embedder)")
        choice = BUILTIN_EMBEDDER
    else:
        reason = None
    if choice not in embedder_names():
        raise UserInputError(f"unknown eval.features {choice!r}; choose auto, {AV_BENCH} or "
                             + ", ".join(embedder_names()))
    embedder = build_embedder(choice)
    kind = ("built-in weight-free embedder" if choice == BUILTIN_EMBEDDER
            else "registered embedder")
    return FeatureSource(choice, f"{kind} {choice!r}: {embedder.description}", reason)


@dataclass
class EvalSplit:
    """One split to evaluate.

    Args:
        name: the split's name (``val``, ``test``, ...).
        dataset: its dataset (SMS/URMP features or synthetic); needs ``sample_id(index)`` and
            ``ground_truth_file(index)``.
        indices: the clips evaluated (dataset indices, in order).
        gt_cache: the ground-truth cache folder.
    """

    name: str
    dataset: Dataset
    indices: list[int]
    gt_cache: Path

    def __post_init__(self) -> None:
        stems = [self.stem(i) for i in self.indices]
        repeated = sorted({s for s in stems if stems.count(s) > 1})
        if repeated:
            raise UserInputError(f"split {self.name!r}: clip names must be unique (they pair "
                                 f"generated files with the ground truth); repeated: "
                                 + ", ".join(repeated[:3]))

    def stem(self, index: int) -> str:
        """File stem of a clip: the last part of its id (as the batch evaluation names it)."""
        return Path(self.dataset.sample_id(index)).name

    @property
    def gt_audio_dir(self) -> Path:
        return self.gt_cache / GROUND_TRUTH_AUDIO


class _Named(Dataset):
    """``(index, sample or None)`` items, so failed samples keep their identity."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, dict[str, Any] | None]:
        return index, self.dataset[index]


def _collate(items: list[tuple[int, dict[str, Any] | None]]) -> tuple[list[int], dict | None,
                                                                         list[int]]:
    kept = [(i, s) for i, s in items if s is not None]
    failed = [i for i, s in items if s is None]
    batch = default_collate([s for _, s in kept]) if kept else None
    return [i for i, _ in kept], batch, failed


@contextmanager
def substituted_parameters(modules: Mapping[str, nn.Module],
                           values: Mapping[str, torch.Tensor] | None) -> Iterator[None]:
    """Temporarily replace parameters (e.g. by their EMA), then restore the live values.

    Args:
        modules: prefix -> module.
        values: ``<prefix>/<parameter name with / for .>`` -> tensor (names as in
            :class:`saganet.training.ema.TrainableView`); None changes nothing.
    """
    if not values:
        yield
        return
    from saganet.training.ema import decode_name

    targets = []
    for view_name, value in values.items():
        prefix, name = decode_name(view_name)
        targets.append((modules[prefix].get_parameter(name), value))
    saved = [param.detach().clone() for param, _ in targets]
    try:
        with torch.no_grad():
            for param, value in targets:
                param.copy_(value.to(param.device, param.dtype))
        yield
    finally:
        with torch.no_grad():
            for (param, _), original in zip(targets, saved, strict=True):
                param.copy_(original)


def broadcast_parameters(values: Mapping[str, torch.Tensor] | None,
                         like: Mapping[str, torch.Tensor], device: torch.device
                         ) -> dict[str, torch.Tensor]:
    """Rank 0's ``values`` on every rank (tensors shaped like ``like``, same names).

    Args:
        values: the tensors on rank 0 (ignored elsewhere).
        like: the live tensors under the same names (shapes and dtypes), on every rank.
        device: the process group's device.
    """
    out = {}
    for name, live in like.items():
        tensor = (values[name] if values is not None else live).detach().to(device, live.dtype)
        tensor = tensor.clone()
        if torch_dist.is_initialized():
            torch_dist.broadcast(tensor, src=0)
        out[name] = tensor
    return out


class TrainingEvaluator:
    """Generates and scores evaluation splits during training (see the module docstring).

    Call :meth:`evaluate` on every rank.

    Args:
        cfg: the evaluation settings.
        splits: the data splits by name.
        datasets: the evaluation datasets by name (evaluated with a weights file).
        pipeline: the pipeline variant whose encoders and codec evaluate the datasets.
        paths: the run's paths (weights cache).
        codec: the decoder of the generations (moved to the device here).
        sequence: duration and rates of the run.
        seed: base seed of the per-clip noise.
        run_dir: the run directory.
        info: this process's place in the job.
        autocast_dtype: bf16 autocast on CUDA, or None.
        source: the feature source (rank 0; None on the other ranks).
        num_workers: data-loader processes decoding clips.
    """

    def __init__(self, cfg: EvalConfig, splits: Mapping[str, EvalSplit],
                 datasets: Mapping[str, EvalDatasetConfig], pipeline: str, paths: PathsConfig,
                 codec: AudioCodec, sequence: SequenceConfig, seed: int,
                 run_dir: str | os.PathLike[str], info: dist.DistInfo,
                 autocast_dtype: torch.dtype | None, source: FeatureSource | None,
                 num_workers: int = 0) -> None:
        self.cfg = cfg
        self.splits = dict(splits)
        self.datasets = dict(datasets)
        self.pipeline = pipeline
        self.paths = paths
        self.codec = codec.to(info.device)
        self.sequence = sequence
        self.seed = seed
        self.root = Path(run_dir) / EVAL_DIR
        self.info = info
        self.autocast_dtype = autocast_dtype
        self.source = source
        self.num_workers = num_workers
        self.options = SamplingOptions(cfg_strength=cfg.cfg_strength, num_steps=cfg.num_steps)
        self.audio_length = cfg.audio_length or sequence.duration
        self._ground_truth_ready: set[str] = set()

    # ------------------------------------------------------------------ bookkeeping

    def step_dir(self, step: int) -> Path:
        """``<run_dir>/eval/<step>`` (nine digits, like the other per-step files)."""
        return self.root / f"{step:09d}"

    def recorded(self, step: int) -> dict[str, Any]:
        """The contents of a step's ``metrics.json`` (empty when there is none)."""
        path = self.step_dir(step) / METRICS_FILE
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            log.warning("%s unreadable (%s): the step is evaluated again", path, err)
            return {}

    def pending(self, step: int, names: Sequence[str]) -> list[str]:
        """The sets of ``names`` without a recorded result at ``step`` (rank 0 decides)."""
        todo: list[str] = []
        if self.info.is_main:
            # An entry recorded with an error (e.g. missing ground truth) is tried again.
            done = {name for name, entry in self.recorded(step).get("splits", {}).items()
                    if entry.get("error") is None}
            todo = [name for name in dict.fromkeys(names) if name not in done]
            for name in dict.fromkeys(names):
                if name in done:
                    log.info("step %d: %s already evaluated (%s), not again", step, name,
                             self.step_dir(step) / METRICS_FILE)
        return dist.broadcast_object(todo)

    def _record(self, step: int, name: str, entry: dict[str, Any]) -> None:
        content = self.recorded(step) or {"step": step, "splits": {}}
        content["splits"][name] = entry
        path = self.step_dir(step) / METRICS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, content)

    # ------------------------------------------------------------------ the evaluation

    def evaluate(self, step: int, names: Sequence[str], network: FlowNetwork,
                 synchformer: SynchformerWithContext,
                 weights: Mapping[str, torch.Tensor] | None = None,
                 weights_name: str = "current",
                 weights_file: Path | None = None) -> dict[str, dict[str, float]]:
        """Evaluate the sets ``names`` at ``step`` (those not evaluated yet); every rank.

        Args:
            step: the training step (names the folder).
            names: data split or evaluation dataset names.
            network: the live flow network.
            synchformer: the live Synchformer.
            weights: parameters to use instead of the live ones (EMA), as view names.
            weights_name: what ``weights`` are, for the record.
            weights_file: the weights file of this step, for the evaluation datasets.

        Returns:
            Set name -> metric values (rank 0; empty on the other ranks).
        """
        out: dict[str, dict[str, float]] = {}
        todo = self.pending(step, names)
        if not todo:
            return out
        splits = [name for name in todo if name in self.splits]
        modules = {"network": network, "synchformer": synchformer}
        modes = {name: module.training for name, module in modules.items()}
        try:
            for module in modules.values():
                module.eval()
            with substituted_parameters(modules, weights):
                generated = {name: self._generate(self.splits[name], step, network, synchformer)
                             for name in splits}
        finally:
            for name, module in modules.items():
                module.train(modes[name])
        for name in splits:
            self._ensure_ground_truth(self.splits[name])
        for name in (n for n in todo if n in self.datasets):
            if weights_file is None:
                raise ValueError(f"evaluation dataset {name!r} needs a weights file")
            generated[name] = self._generate_dataset(name, step, weights_file)
        dist.barrier()
        if self.info.is_main:
            for name in todo:
                written, failed = generated[name]
                entry = self._score(name, step, written, failed,
                                    weights_file.name if name in self.datasets and weights_file
                                    else weights_name)
                self._record(step, name, entry)
                out[name] = entry["metrics"]
        dist.barrier()
        return out

    def _batch_config(self, name: str, step: int, weights_file: Path) -> BatchEvalConfig:
        return BatchEvalConfig(
            dataset=self.datasets[name], paths=self.paths, run_dir=str(self.step_dir(step)),
            model=self.pipeline, checkpoint=str(weights_file), duration=self.sequence.duration,
            batch_size=self.cfg.batch_size, num_workers=self.num_workers,
            cfg_strength=self.options.cfg_strength, num_steps=self.options.num_steps,
            seed=self.seed, amp=self.autocast_dtype is not None, ground_truth=True,
            skip_video_composite=True)

    def _generate_dataset(self, name: str, step: int,
                          weights_file: Path) -> tuple[list[str], list[str]]:
        """Generate an evaluation dataset with the batch evaluation; (written, failed) stems."""
        report = run_batch_eval(self._batch_config(name, step, weights_file), self.info)
        failed = [f["id"] for f in report.failed] + [m["id"] for m in report.missing]
        return report.clips, sorted(failed)

    def _generate(self, split: EvalSplit, step: int, network: FlowNetwork,
                  synchformer: SynchformerWithContext) -> tuple[list[str], list[str]]:
        """This rank's share of a split: returns (stems written, stems that failed) of ALL
        ranks (gathered)."""
        folder = self.step_dir(step) / split.name
        folder.mkdir(parents=True, exist_ok=True)
        mine = shard(split.indices, self.info.rank, self.info.world_size)
        models = SAGANetModels(network, synchformer, None, self.codec, self.sequence)
        autocast = (torch.autocast("cuda", dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else nullcontext())
        loader = DataLoader(Subset(_Named(split.dataset), mine), batch_size=self.cfg.batch_size,
                            num_workers=loader_workers(self.num_workers), collate_fn=_collate,
                            worker_init_fn=loader_worker_start)
        written, failed = [], []
        for indices, batch, failures in loader:
            failed += [split.stem(i) for i in failures]
            if batch is None:
                continue
            stems = [split.stem(i) for i in indices]
            generators = [torch.Generator(self.info.device).manual_seed(
                clip_seed(self.seed, split.dataset.sample_id(i))) for i in indices]
            inputs = GenerationBatch(
                sync_frames=video_to_unit(batch["sync_video"]),
                masks=mask_to_unit(batch["mask_video"]),
                detail_frames=video_to_unit(batch["sync_detail_video"]),
                detail_masks=mask_to_unit(batch["mask_detail_video"]),
                clip_features=batch["clip_features"], text_features=batch["text_features"])
            with autocast:
                result = generate(models, inputs, generator=generators, options=self.options)
            for stem, audio in zip(stems, result.audio, strict=True):
                write_flac(folder / f"{stem}.flac", audio, result.sampling_rate, overwrite=True)
            written += stems
        for stem in failed:
            log.warning("step %d: %s/%s could not be loaded; not generated", step, split.name,
                        stem)
        gathered = dist.all_gather_objects((written, failed))
        return (sorted(s for w, _ in gathered for s in w),
                sorted(s for _, f in gathered for s in f))

    def _needs_ground_truth_audio(self, split: EvalSplit) -> bool:
        if self.source is not None and self.source.name == AV_BENCH:
            return not all((split.gt_cache / f).is_file() for f in AUDIO_CACHE_FILES)
        return True

    def _ensure_ground_truth(self, split: EvalSplit) -> None:
        """Write the split's missing ground-truth audio (once per run, sharded over ranks)."""
        if split.name in self._ground_truth_ready:
            return
        todo: list[int] = []
        if self.info.is_main and self._needs_ground_truth_audio(split):
            todo = [i for i in split.indices
                    if not (split.gt_audio_dir / f"{split.stem(i)}.flac").is_file()]
        todo = dist.broadcast_object(todo)
        mine = shard(todo, self.info.rank, self.info.world_size)
        if todo and self.info.is_main:
            log.info("%s: writing the ground truth of %d clip(s) to %s", split.name, len(todo),
                     split.gt_audio_dir)
        for index in mine:
            destination = split.gt_audio_dir / f"{split.stem(index)}.flac"
            source = split.dataset.ground_truth_file(index)
            try:
                if source is not None:
                    export_ground_truth(source, destination)
                else:
                    self._decode_latents(split, index, destination)
            except (UserInputError, OSError) as err:
                log.warning("%s: no ground truth for %s: %s", split.name, split.stem(index), err)
        self._ground_truth_ready.add(split.name)

    @torch.inference_mode()
    def _decode_latents(self, split: EvalSplit, index: int, destination: Path) -> None:
        """Ground truth of a clip without a sound track: its latents through the codec."""
        features = split.dataset.features(index)
        latents = features["a_mean"][None].to(self.info.device)  # (1, N, C)
        audio = self.codec.decode(latents).float().clamp(-1, 1).cpu()  # (1, 1, L)
        destination.parent.mkdir(parents=True, exist_ok=True)
        write_flac(destination, audio[0], self.codec.sampling_rate, overwrite=True)

    def _score(self, name: str, step: int, written: list[str], failed: list[str],
               weights_name: str) -> dict[str, Any]:
        """Rank 0: the metrics of one generated set, as the ``metrics.json`` entry."""
        assert self.source is not None
        folder, gt_audio, gt_cache = self._locations(name, step)
        entry: dict[str, Any] = {
            "clips": len(written), "failed": failed, "weights": weights_name,
            "features": self.source.description, "audio_dir": str(folder),
            "ground_truth": str(gt_cache or gt_audio), "audio_length": self.audio_length,
            "cfg_strength": self.options.cfg_strength, "num_steps": self.options.num_steps,
            "metrics": {}, "sources": {}, "skipped": {}, "notes": [], "error": None}
        try:
            results = self._metrics(folder, gt_audio, gt_cache, written)
        except UserInputError as err:
            # A failed evaluation must not end a long run: it is recorded and training goes on.
            log.error("step %d: %s could not be scored: %s", step, name, err)
            entry["error"] = str(err)
            return entry
        entry.update(metrics=results.values, sources=results.sources, skipped=results.skipped,
                     notes=results.notes)
        values = ", ".join(f"{k} {v:.4g}" for k, v in results.values.items())
        log.info("step %d: %s (%d clips, %s): %s", step, name, len(written), self.source.name,
                 values)
        return entry

    def _locations(self, name: str, step: int) -> tuple[Path, Path, Path | None]:
        """(generated audio, ground-truth audio, av-benchmark ground-truth cache or None)."""
        if name in self.splits:
            split = self.splits[name]
            return self.step_dir(step) / name, split.gt_audio_dir, split.gt_cache
        config = self._batch_config(name, step, Path())
        cache = config.dataset.gt_cache
        return config.output_dir, config.ground_truth_dir, Path(cache) if cache else None

    def _metrics(self, folder: Path, gt_audio: Path, gt_cache: Path | None,
                 written: list[str]) -> MetricResults:
        assert self.source is not None
        if not written:
            raise UserInputError("no clip was generated", folder)
        if self.source.name == AV_BENCH:
            from saganet.evaluation.av_bench import run_av_bench

            cached = gt_cache is not None and all((gt_cache / f).is_file()
                                                  for f in AUDIO_CACHE_FILES)
            return run_av_bench(folder, None if cached else gt_audio, gt_cache=gt_cache,
                                pred_cache=folder / CACHE_DIR, audio_length=self.audio_length,
                                device=str(self.info.device), num_workers=self.num_workers)
        truth = {stem: gt_audio / f"{stem}.flac" for stem in written}
        absent = sorted(stem for stem, path in truth.items() if not path.is_file())
        if len(absent) == len(truth):
            raise UserInputError("no ground truth for any generated clip", gt_audio)
        generated = {stem: path for stem, path in list_audio_files(folder).items()
                     if stem in truth and stem not in absent}
        results = evaluate_with_embedder(build_embedder(self.source.name), generated,
                                         {stem: truth[stem] for stem in generated},
                                         audio_length=self.audio_length)
        if absent:
            results.notes.append(f"{len(absent)} clip(s) without ground truth are not scored "
                                 f"(e.g. {', '.join(absent[:3])})")
        reason = self.source.fallback_reason or f"eval.features={self.source.name}"
        for name in PAPER_METRICS:
            results.skip(name, f"needs av-benchmark ({reason})")
        return results


def recorded_steps(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every evaluation recorded in a run (``<run_dir>/eval/<step>/``;
    the ground-truth caches, ``eval/cache``, are not steps)."""
    root = Path(run_dir) / EVAL_DIR
    if not root.is_dir():
        return []
    return sorted((int(path.name), path) for path in root.iterdir()
                  if path.is_dir() and path.name.isdigit())


def check_dataset(spec: EvalDatasetConfig, duration: float) -> None:
    """Fail now, not after training, if an evaluation dataset's files are not there.

    Args:
        spec: the dataset.
        duration: the run's clip length.

    Raises:
        UserInputError: no such dataset, root folder or metadata table, or no clip in it.
    """
    build_eval_dataset(spec.name, spec.root, spec.metadata, duration)
