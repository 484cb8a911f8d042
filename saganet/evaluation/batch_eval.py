"""Batch generation over an evaluation dataset, on one process or many (``batch_eval.py``).

Owns the work split, resuming and the run manifest:

* **Sharding.** The clips still to do are split by GLOBAL rank with a stride
  (``pending[rank::world_size]``), so every clip is written exactly once; nothing is padded or
  repeated (unlike ``DistributedSampler``).
* **Resume.** A clip whose outputs all exist is skipped before anything is decoded. Rank 0
  decides the list of pending clips and broadcasts it, so all ranks agree even while files
  appear.
* **Noise.** Each clip's initial noise comes from its own generator seeded with
  :func:`clip_seed` ``(seed, clip id)`` (passed to :func:`saganet.inference.generate` as one
  generator per clip): a clip's audio does not depend on the batch it lands in, the batch size
  or the number of processes, up to the float rounding of batched kernels. (The reference drew
  the noise of every batch from one generator in loader order, so its results depended on all
  three.)
* **Manifest.** ``<output dir>/manifest.json`` records the settings, the variant, the weights'
  md5s (``"debug"`` for the debug variant), the saganet version, the world size and the clips
  written; rank 0 writes it at the start (``complete: false``) and after the final barrier.
  A folder whose manifest has other generation settings is refused, so a resumed run never
  mixes clips of two models or samplers.

Output layout: ``<run_dir>/<dataset>[-<output_name>]/<id>.flac`` (plus ``<id>.mp4`` unless
``skip_video_composite``; ids with "/" make sub-folders) and, with ``ground_truth``, the true
audio of each clip as ``<run_dir>/<dataset>-ground_truth/<id>.flac`` (mono, its own rate), so
that ``python -m saganet.evaluation`` can pair the two folders by stem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

import saganet
from saganet import dist
from saganet.errors import UserInputError
from saganet.evaluation.audio import read_audio
from saganet.evaluation.datasets import (
    LOAD_ERRORS,
    EvalClip,
    EvalDataset,
    EvalSample,
    LoadFailure,
    build_eval_dataset,
)
from saganet.features import focal_crop
from saganet.hydra_config import PathsConfig, register_schema, to_typed
from saganet.inference import GenerationBatch, SamplingOptions, generate
from saganet.media.output import write_flac, write_video_with_audio
from saganet.media.video import clip_input, mask_input, sync_input
from saganet.models import SAGANetModels
from saganet.pipeline import PIPELINES, load_models

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
GROUND_TRUTH_SUFFIX = "ground_truth"
# Network names accepted for ``model=`` (the reference README's spelling) -> pipeline variants.
VARIANT_ALIASES = {spec.network: name for name, spec in PIPELINES.items()
                   if spec.network != name}
# Settings that change the generated audio: a folder holds clips of one combination only.
RESULT_SETTINGS = ("dataset", "variant", "duration", "cfg_strength", "num_steps", "seed",
                   "amp", "detail_files")
SCHEMA_NAME = "batch_eval_schema"


def resolve_variant(name: str) -> str:
    """A :data:`saganet.pipeline.PIPELINES` key from a variant or network name.

    Args:
        name: ``saganet_small``, ``saganet_small_no_lora``, ``debug``, or the network names
            ``small_44k_sa`` / ``small_44k_sa_no_lora``.
    """
    if name in PIPELINES:
        return name
    if name in VARIANT_ALIASES:
        return VARIANT_ALIASES[name]
    raise UserInputError(f"unknown model {name!r}; choose one of "
                         f"{', '.join([*PIPELINES, *VARIANT_ALIASES])}")


@dataclass(kw_only=True)
class EvalDatasetConfig:
    """The evaluation dataset (the ``dataset`` group: ``config/dataset/<name>.yaml``).

    Args:
        name: ``urmp`` or ``sms`` (a key of :data:`saganet.evaluation.datasets.EVAL_DATASETS`).
        root: folder with the dataset's clips.
        metadata: the dataset's metadata table.
    """

    name: str
    root: str
    metadata: str


@dataclass(kw_only=True)
class BatchEvalConfig:
    """Everything one batch-evaluation run needs: the schema of ``config/batch_eval.yaml``
    and the one place of its defaults (see :mod:`saganet.hydra_config`).

    Args:
        dataset: the evaluation dataset (a group: no default).
        paths: data, output and weights folders (the ``paths`` group; ``paths.weights_dir`` is
            the weights cache).
        run_dir: parent of the output folders (the YAML wires it to
            ``<paths.output_dir>/eval``).
        model: pipeline variant or network name (see :func:`resolve_variant`).
        checkpoint: a weights file to use instead of the variant's published one.
        output_name: suffix of the output folder (``<dataset>-<output_name>``).
        duration: seconds generated per clip; shorter clips fail.
        batch_size: clips per batch on each process.
        num_workers: data-loader processes per rank (0: decode in the main process).
        compile: ``torch.compile`` the network's ``predict_flow``.
        skip_video_composite: write only ``.flac`` (else also an ``.mp4`` per clip).
        ground_truth: also write each clip's true audio to ``<dataset>-ground_truth``.
        detail_files: use precomputed focal-crop videos when present.
        cfg_strength: classifier-free guidance strength.
        num_steps: Euler steps.
        seed: base seed of the per-clip noise.
        amp: bf16 autocast on CUDA (weights stay fp32); ignored elsewhere.
        device: ``cuda``, ``cpu``, ... or None for automatic.
        offline: never download weights (None: from the environment).
    """

    dataset: EvalDatasetConfig
    paths: PathsConfig
    run_dir: str
    model: str = "saganet_small"
    checkpoint: str | None = None
    output_name: str | None = None
    duration: float = 5.0
    batch_size: int = 4
    num_workers: int = 8
    compile: bool = False
    skip_video_composite: bool = True
    ground_truth: bool = True
    detail_files: bool = False
    cfg_strength: float = 4.5
    num_steps: int = 25
    seed: int = 14159265
    amp: bool = True
    device: str | None = None
    offline: bool | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_steps < 1 or self.num_workers < 0:
            raise UserInputError("batch_size and num_steps must be >= 1, num_workers >= 0")
        if not self.duration > 0:
            raise UserInputError(f"duration must be positive, got {self.duration}")
        if self.output_name is not None and (not self.output_name
                                             or self.output_name == GROUND_TRUTH_SUFFIX
                                             or "/" in self.output_name):
            raise UserInputError(f"output_name {self.output_name!r} is empty, contains '/' or "
                                 f"is reserved for the ground truth")

    @property
    def weights_dir(self) -> str | None:
        return self.paths.weights_dir

    @property
    def output_dir(self) -> Path:
        suffix = f"-{self.output_name}" if self.output_name else ""
        return Path(self.run_dir) / f"{self.dataset.name}{suffix}"

    @property
    def ground_truth_dir(self) -> Path:
        return Path(self.run_dir) / f"{self.dataset.name}-{GROUND_TRUTH_SUFFIX}"

    def result_settings(self, device: torch.device) -> dict[str, Any]:
        """The settings that change the audio (checked when resuming into a folder).

        Args:
            device: where the run generates (autocast applies on CUDA only).
        """
        values = {name: getattr(self, name) for name in RESULT_SETTINGS
                  if name not in ("dataset", "variant")}
        values["dataset"] = self.dataset.name
        values["variant"] = resolve_variant(self.model)
        values["amp"] = self.amp and device.type == "cuda"
        return values


def register_batch_eval_schema() -> None:
    """Register :class:`BatchEvalConfig` as :data:`SCHEMA_NAME` (``batch_eval.yaml`` uses it)."""
    register_schema(SCHEMA_NAME, BatchEvalConfig)


def batch_eval_config(cfg: DictConfig | Mapping[str, Any]) -> BatchEvalConfig:
    """Validate a composed config (``hydra`` node excluded) and convert it.

    Args:
        cfg: the composed ``batch_eval`` config, or a plain mapping of the same shape.

    Raises:
        UserInputError: a value is missing, unknown, or has the wrong type.
    """
    return to_typed(cfg, BatchEvalConfig)


@dataclass
class BatchEvalReport:
    """What a run did (the same on every rank; written to the manifest by rank 0).

    Args:
        output_dir: the folder of generated clips.
        manifest: the manifest file.
        clips: ids of all dataset clips whose outputs exist now.
        written: ids generated by this run.
        skipped: ids whose outputs existed before the run.
        failed: ``{"id", "error"}`` of clips that could not be decoded.
        missing: ``{"id", "reason"}`` of metadata rows with missing files.
        ground_truth_failed: ``{"id", "error"}`` of clips whose ground truth has no audio.
    """

    output_dir: Path
    manifest: Path
    clips: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)
    ground_truth_failed: list[dict[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every row of the metadata has its outputs."""
        return not self.failed and not self.missing


def clip_seed(seed: int, clip_id: str) -> int:
    """Seed of one clip's noise: a hash of ``(seed, clip id)``, the same in every process.

    Args:
        seed: the run's base seed.
        clip_id: the clip's id.
    """
    digest = hashlib.sha256(f"{seed}/{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """This rank's share: every ``world_size``-th item from ``rank`` (each item exactly once).

    Args:
        items: all items, in the same order on every rank.
        rank: global rank.
        world_size: number of processes.
    """
    return list(items[rank::world_size])


def output_paths(output_dir: Path, clip_id: str, video: bool) -> list[Path]:
    """The files one clip produces: ``<id>.flac`` and, if ``video``, ``<id>.mp4``.

    Args:
        output_dir: the run's output folder.
        clip_id: the clip id (a "/" makes a sub-folder).
        video: also the MP4 composite.
    """
    base = output_dir / clip_id
    paths = [base.with_name(f"{base.name}.flac")]
    if video:
        paths.append(base.with_name(f"{base.name}.mp4"))
    return paths


def _ground_truth_path(config: BatchEvalConfig, clip: EvalClip) -> Path | None:
    if not config.ground_truth or clip.ground_truth is None:
        return None
    base = config.ground_truth_dir / clip.id
    return base.with_name(f"{base.name}.flac")


def is_done(config: BatchEvalConfig, clip: EvalClip) -> bool:
    """The clip's generated outputs exist (``.flac``, and ``.mp4`` when composites are on)."""
    return all(p.is_file() for p in output_paths(config.output_dir, clip.id,
                                                 not config.skip_video_composite))


def weights_identity(config: BatchEvalConfig) -> dict[str, Any] | str:
    """md5 of the weights files the run uses, or ``"debug"`` for the debug variant."""
    variant = resolve_variant(config.model)
    if PIPELINES[variant].debug:
        return "debug"
    from saganet import weights

    checkpoint = (Path(config.checkpoint) if config.checkpoint is not None
                  else weights.resolve(PIPELINES[variant].checkpoint, config.weights_dir,
                                       config.offline))
    vae = weights.resolve("v1-44.pth", config.weights_dir, config.offline)
    return {role: {"file": path.name, "md5": weights.md5_of(path)}
            for role, path in (("checkpoint", checkpoint), ("vae", vae))}


def write_json_atomic(path: Path, content: Mapping[str, Any]) -> None:
    """Write JSON under a temporary name and rename it, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_manifest(path: Path, settings: Mapping[str, Any], identity: Any) -> None:
    """Refuse to resume into a folder generated with other settings or weights.

    Args:
        path: the existing manifest (nothing is checked if it does not exist).
        settings: :meth:`BatchEvalConfig.result_settings` of this run.
        identity: :func:`weights_identity` of this run.

    Raises:
        UserInputError: the manifest is unreadable or records different settings.
    """
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserInputError(f"cannot read the manifest ({err}); delete it to start over",
                             path) from err
    before = {**previous.get("settings", {}), "weights": previous.get("weights")}
    now = {**settings, "weights": identity}
    changed = sorted(k for k in now if before.get(k) != now[k])
    if changed:
        details = "; ".join(f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in changed)
        raise UserInputError(
            f"this folder holds clips generated with other settings ({details}); choose "
            f"another output_name or run_dir, or delete the folder", path.parent)


def collate(items: list[EvalSample | LoadFailure]) -> tuple[list[EvalSample],
                                                            list[LoadFailure]]:
    """Keep decoded samples and load failures apart (a DataLoader ``collate_fn``)."""
    return ([i for i in items if isinstance(i, EvalSample)],
            [i for i in items if isinstance(i, LoadFailure)])


def generation_batch(samples: Sequence[EvalSample]) -> GenerationBatch:
    """Stack decoded samples into the float inputs of :func:`generate` (no negative prompt).

    Focal crops come from the samples' precomputed detail videos when every sample has them,
    from those plus :func:`saganet.features.focal_crop` when only some have them, and are
    otherwise left to :func:`generate`.
    """
    sync = sync_input(torch.stack([s.sync_frames for s in samples]))  # (B, Ts, 3, 224, 224)
    masks = mask_input(torch.stack([s.masks for s in samples]))  # (B, Ts, 1, 224, 224)
    detail_frames = detail_masks = None
    if any(s.detail_frames is not None for s in samples):
        frames, crops = [], []
        for i, s in enumerate(samples):
            if s.detail_frames is not None and s.detail_masks is not None:
                frames.append(sync_input(s.detail_frames))
                crops.append(mask_input(s.detail_masks))
            else:
                frame, crop = focal_crop(sync[i : i + 1], masks[i : i + 1])
                frames.append(frame[0])
                crops.append(crop[0])
        detail_frames, detail_masks = torch.stack(frames), torch.stack(crops)
    return GenerationBatch(
        sync_frames=sync, masks=masks,
        clip_frames=clip_input(torch.stack([s.clip_frames for s in samples])),
        texts=[s.clip.caption for s in samples],
        detail_frames=detail_frames, detail_masks=detail_masks,
    )


def export_ground_truth(source: Path, destination: Path) -> None:
    """Write a clip's true audio as mono FLAC at its own rate (all of it; metrics cut it).

    Args:
        source: an audio file, or a video with an audio track.
        destination: the ``.flac`` to write.
    """
    waveform, rate = read_audio(source)  # (C, T)
    write_flac(destination, waveform.mean(axis=0), rate, overwrite=True)


@dataclass(frozen=True)
class _Plan:
    """Rank 0's view of the folder, shared with every rank."""

    pending: list[int]  # dataset indices still to generate
    done: list[str]  # ids generated before
    ground_truth: list[int]  # dataset indices whose ground truth is still to export


def _plan(config: BatchEvalConfig, dataset: EvalDataset, identity: Any,
          info: dist.DistInfo) -> _Plan:
    """Rank 0: check the folder, list pending clips, write the start manifest."""
    manifest = config.output_dir / MANIFEST_NAME
    check_manifest(manifest, config.result_settings(info.device), identity)
    pending, done, ground_truth = [], [], []
    for index, clip in enumerate(dataset.clips):
        if is_done(config, clip):
            done.append(clip.id)
        else:
            pending.append(index)
        gt = _ground_truth_path(config, clip)
        if gt is not None and not gt.is_file():
            ground_truth.append(index)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest, _manifest(config, dataset, identity, info, done, complete=False))
    return _Plan(pending, done, ground_truth)


def _manifest(config: BatchEvalConfig, dataset: EvalDataset, identity: Any,
              info: dist.DistInfo, clips: Sequence[str], complete: bool,
              failed: Sequence[Mapping[str, str]] = (),
              ground_truth_failed: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    return {
        "saganet_version": saganet.__version__,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "complete": complete,
        "settings": config.result_settings(info.device),
        "weights": identity,
        "network": PIPELINES[resolve_variant(config.model)].network,
        "checkpoint": config.checkpoint,
        "run": {"world_size": info.world_size, "batch_size": config.batch_size,
                "compile": config.compile, "device": str(info.device)},
        "noise": "per clip: torch.Generator seeded with clip_seed(seed, id) = first 8 bytes "
                 "(little endian, 63 bits) of sha256(f'{seed}/{id}')",
        "dataset_root": str(config.dataset.root),
        "metadata": str(config.dataset.metadata),
        "ground_truth_dir": str(config.ground_truth_dir) if config.ground_truth else None,
        "clips": sorted(clips),
        "failed": list(failed),
        "missing": [dataclasses.asdict(m) for m in dataset.missing],
        "ground_truth_failed": list(ground_truth_failed),
    }


def _prepare_models(config: BatchEvalConfig, device: torch.device) -> SAGANetModels:
    models = load_models(resolve_variant(config.model), weights_dir=config.weights_dir,
                         checkpoint=config.checkpoint, device=device, dtype=torch.float32,
                         offline=config.offline)
    models.set_duration(config.duration)
    if config.compile:
        network = models.network
        # An instance attribute shadows the method, so ode_wrapper calls the compiled graph.
        network.predict_flow = torch.compile(network.predict_flow)
    return models


def run_batch_eval(config: BatchEvalConfig, info: dist.DistInfo) -> BatchEvalReport:
    """Generate every clip of a dataset that has no output yet; this rank's share of it.

    Call it on every rank (after :func:`saganet.dist.init`); it returns the same report on all.

    Args:
        config: the run's settings.
        info: this process's place in the job.

    Raises:
        UserInputError: bad settings, unreadable metadata, missing weights, or an output
            folder generated with other settings.
    """
    spec = config.dataset
    dataset = build_eval_dataset(spec.name, spec.root, spec.metadata, config.duration,
                                 config.detail_files)
    # Rank 0 alone reads the folder and the weights' md5s; the others get its verdict.
    plan: _Plan | str = ""
    identity: dict[str, Any] | str = ""
    if info.is_main:
        dataset.log_summary()
        try:
            identity = weights_identity(config)
            plan = _plan(config, dataset, identity, info)
        except UserInputError as err:
            plan = str(err)
    plan = dist.broadcast_object(plan)
    if isinstance(plan, str):
        raise UserInputError(plan)
    if info.is_main:
        log.info("%d clips done already, skipped; %d to generate on %d process(es) into %s",
                 len(plan.done), len(plan.pending), info.world_size, config.output_dir)
    gt_failed = _export_ground_truth(config, dataset,
                                     shard(plan.ground_truth, info.rank, info.world_size))
    written: list[str] = []
    failed: list[dict[str, str]] = []
    mine = shard(plan.pending, info.rank, info.world_size)
    if mine:
        models = _prepare_models(config, info.device)
        written, failed = _generate_share(config, dataset, models, mine, info)
    dist.barrier()
    gathered = dist.all_gather_objects((written, failed, gt_failed))
    report = BatchEvalReport(
        output_dir=config.output_dir, manifest=config.output_dir / MANIFEST_NAME,
        written=sorted(i for w, _, _ in gathered for i in w), skipped=sorted(plan.done),
        failed=sorted((f for _, fs, _ in gathered for f in fs), key=lambda f: f["id"]),
        missing=[dataclasses.asdict(m) for m in dataset.missing],
        ground_truth_failed=sorted((f for _, _, fs in gathered for f in fs),
                                   key=lambda f: f["id"]))
    report.clips = sorted(c.id for c in dataset.clips if is_done(config, c))
    if info.is_main:
        write_json_atomic(report.manifest, _manifest(
            config, dataset, identity, info, report.clips, complete=report.complete,
            failed=report.failed, ground_truth_failed=report.ground_truth_failed))
        log.info("%d written, %d skipped, %d failed, %d missing files; manifest %s",
                 len(report.written), len(report.skipped), len(report.failed),
                 len(report.missing), report.manifest)
    dist.barrier()
    return report


def _export_ground_truth(config: BatchEvalConfig, dataset: EvalDataset,
                         indices: Sequence[int]) -> list[dict[str, str]]:
    """Write the ground truth of this rank's clips; returns the failures (logged)."""
    failed = []
    for index in indices:
        clip = dataset.clips[index]
        try:
            export_ground_truth(clip.ground_truth, _ground_truth_path(config, clip))
        except LOAD_ERRORS as err:
            log.warning("%s: no ground truth written: %s", clip.id, err)
            failed.append({"id": clip.id, "error": str(err)})
    return failed


def _generate_share(config: BatchEvalConfig, dataset: EvalDataset, models: SAGANetModels,
                    indices: Sequence[int], info: dist.DistInfo
                    ) -> tuple[list[str], list[dict[str, str]]]:
    """Generate this rank's clips; returns the ids written and the load failures."""
    written: list[str] = []
    failed: list[dict[str, str]] = []
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=config.batch_size,
                        num_workers=config.num_workers, collate_fn=collate)
    options = SamplingOptions(cfg_strength=config.cfg_strength, num_steps=config.num_steps)
    device = models.device
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if config.amp and device.type == "cuda" else nullcontext())
    bar = tqdm(total=len(indices), unit="clip", disable=not info.is_main,
               desc=f"{config.dataset.name} (rank 0 of {info.world_size})")
    try:
        for samples, failures in loader:
            for failure in failures:
                log.warning("%s: cannot load: %s", failure.clip.id, failure.error)
                failed.append({"id": failure.clip.id, "error": failure.error})
            if samples:
                generators = [torch.Generator(device=device).manual_seed(
                    clip_seed(config.seed, s.clip.id)) for s in samples]
                with autocast:
                    result = generate(models, generation_batch(samples), generator=generators,
                                      options=options)
                for sample, audio in zip(samples, result.audio, strict=True):
                    _write_outputs(config, sample.clip, audio, result.sampling_rate)
                    written.append(sample.clip.id)
            bar.update(len(samples) + len(failures))
    finally:
        bar.close()
    return written, failed


def _write_outputs(config: BatchEvalConfig, clip: EvalClip, audio: torch.Tensor,
                   rate: int) -> None:
    paths = output_paths(config.output_dir, clip.id, not config.skip_video_composite)
    if len(paths) > 1:
        write_video_with_audio(clip.video, audio, rate, paths[1], duration=config.duration,
                               overwrite=True)
    write_flac(paths[0], audio, rate, overwrite=True)
