"""Typed training configuration: the schema of ``config/train.yaml``, and its defaults.

The dataclasses below hold every default of a training run (see :mod:`saganet.hydra_config` for
why the defaults live here and not in YAML); ``config/train.yaml`` puts :data:`SCHEMA_NAME`
first in its defaults list, then the groups (``model``, ``lora``, ``data``, ``paths``) and the
experiment, which fill the fields that have no default here. :func:`from_hydra` turns the
composed config into a :class:`TrainConfig` (unknown keys and wrong types fail before any model
is built). Everything below the entry point receives these objects, never the raw Hydra config,
and no ``nn.Module`` sees any of it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from saganet.errors import UserInputError, check_cfg_strength, check_seconds
from saganet.evaluation.batch_config import EvalDatasetConfig
from saganet.fileio import atomic_output
from saganet.hydra_config import PathsConfig, register_schema, to_typed

log = logging.getLogger(__name__)

SCHEMA_NAME = "train_schema"
# Beside Hydra's config.yaml, which keeps the interpolations (${paths.data_dir}...).
RESOLVED_CONFIG_NAME = "resolved.yaml"
# Dataset splits a run knows (the ``train``/``val``/``test`` fields of :class:`DataSetup`).
SPLITS = ("train", "val", "test")


@dataclass(kw_only=True)
class ModelSetup:
    """Which networks to build and where their initial weights come from (the ``model`` and
    ``lora`` groups).

    Args:
        network: network variant without the LoRA suffix (``small_44k_sa``, ``debug``...).
        use_lora: adapt the network with LoRA; without it the network is frozen and only the
            Synchformer's context parameters train.
        synchformer: Synchformer size, ``official`` or ``debug``.
        network_init: MMAudio base weights (a registry name such as ``mmaudio_small_44k.pth``
            or a path); ``debug`` for random stand-ins of the debug size; None keeps the fresh
            initialisation (whose zero output layer gives LoRA factors no gradient).
        synchformer_init: base Synchformer weights (``synchformer_state_dict.pth`` or a path);
            ``debug`` for random stand-ins; None keeps the random initialisation.
        codec: audio decoder used for generations during training: ``44k`` (the published
            VAE and BigVGAN-v2) or ``debug`` (tiny random codec).
        architecture: fields of :class:`saganet.model.NetworkConfig` that differ from the
            ``network`` size's (``depth``, ``fused_depth``, ``hidden_dim``, ``num_heads``,
            ``lora_rank``...): a new size is a ``config/model/<name>.yaml``, not code. The
            sequence lengths come from ``duration`` and are not set here.
    """

    network: str
    use_lora: bool
    synchformer: str
    network_init: str | None
    synchformer_init: str | None
    codec: str
    architecture: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        """The network variant name understood by ``saganet.model.build_network``."""
        return self.network if self.use_lora else f"{self.network}_no_lora"


@dataclass(kw_only=True)
class SplitConfig:
    """One split of a dataset that reads precomputed features (SMS or URMP layout).

    Args:
        root: folder holding the clips (``<root>/<id>.mp4`` and the mask/detail videos).
        tsv: metadata table of the split (header with ``id`` and ``label`` columns).
        memmap_dir: TensorDict memmap of precomputed features with its ``ids.txt``.
        layout: file layout of the clips, ``sms`` or ``urmp``; None = the data ``kind``.
        gt_cache: where evaluation keeps this split's ground truth: av-benchmark features
            (``*.pth``, as extracted by av-benchmark for the reference's validation and test
            caches) and ``audio/<id>.flac`` (written on first use when a metric needs it);
            None = ``<run_dir>/eval/cache/<split>``.
    """

    root: str
    tsv: str
    memmap_dir: str
    layout: str | None = None
    gt_cache: str | None = None


@dataclass(kw_only=True)
class DataSetup:
    """Dataset choice and loader settings (the ``data`` group).

    Args:
        kind: ``sms`` or ``urmp`` (precomputed features + videos) or ``synthetic``.
        train, val, test: the splits of the precomputed kinds (None for ``synthetic``; ``test``
            is optional: the test set after training is usually an evaluation dataset, see
            :class:`EvalConfig`).
        synthetic_train_size, synthetic_val_size, synthetic_test_size: sample counts of the
            splits of the synthetic kind.
        num_workers: DataLoader workers per rank.
        pin_memory: DataLoader pinned memory.
    """

    kind: str
    train: SplitConfig | None = None
    val: SplitConfig | None = None
    test: SplitConfig | None = None
    synthetic_train_size: int = 256
    synthetic_val_size: int = 16
    synthetic_test_size: int = 16
    num_workers: int
    pin_memory: bool = False


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW and gradient clipping.

    Args:
        lr: peak learning rate of every parameter group.
        betas: AdamW betas.
        weight_decay: AdamW weight decay.
        eps: AdamW epsilon; None picks 1e-6 when bf16 autocast is active, else 1e-8.
        grad_clip: max global gradient norm over all trainable parameters.
    """

    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-6
    eps: float | None = None
    grad_clip: float = 1.0


@dataclass(kw_only=True)
class ScheduleConfig:
    """Linear warm-up, then step decay at the named global steps.

    Args:
        warmup_steps: the factor is ``(k + 1) / (warmup_steps + 1)`` for step ``k`` before it.
        milestones: global steps at which the learning rate is multiplied by ``gamma``.
        gamma: decay factor.
    """

    warmup_steps: int = 2500
    milestones: tuple[int, ...] = (62_500, 67_500)
    gamma: float = 0.1


@dataclass(kw_only=True)
class LossConfig:
    """Flow-matching training objective.

    Args:
        t_mean, t_scale: logit-normal time-step distribution ``sigmoid(mean + scale·n)``.
        null_video_prob: probability of replacing CLIP and sync features by the empty ones.
        null_text_prob: probability of replacing the text features by ``empty_string_feat``.
    """

    t_mean: float = 0.0
    t_scale: float = 1.0
    null_video_prob: float = 0.1
    null_text_prob: float = 0.5


# The widest power-function EMA: sigma_rel^2 = (g+1) / ((g+2)^2 (g+3)) at exponent g = 0
# (Karras et al. 2024, eq. 3); wider widths need g < 0, an average that weights late steps
# more and more.
MAX_SIGMA_REL = 12 ** -0.5
SIGMA_REL_RULE = f"> 0 and < {MAX_SIGMA_REL:.4f}"


def sigma_rel_ok(sigma_rel: float) -> bool:
    """Whether ``sigma_rel`` is a relative EMA width a power-function EMA can have."""
    return 0 < sigma_rel < MAX_SIGMA_REL


@dataclass(kw_only=True)
class EMAConfig:
    """Post-hoc EMA (Karras et al. 2024) of the trainable parameters.

    Args:
        enabled: track EMAs (rank 0 only).
        sigma_rels: relative widths of the tracked EMA profiles (at least two).
        snapshot_every: steps between snapshots used by the synthesis.
        output_sigma_rel: the width synthesised at the end of training.
    """

    enabled: bool = False
    sigma_rels: tuple[float, ...] = (0.05, 0.1)
    snapshot_every: int = 5000
    output_sigma_rel: float = 0.05


@dataclass(kw_only=True)
class LogConfig:
    """What is logged, validated and evaluated, and when (in optimiser steps).

    Args:
        interval: steps between TensorBoard scalar logs (averaged over steps and ranks).
        t_bins: number of equal-width bins of t for the loss-by-time-step scalars.
        val_interval: steps between validation-loss sweeps (0 disables).
        val_batches: batches per validation sweep per rank (0 = the whole split).
        eval_interval: steps between evaluations of the ``eval.during`` splits (generated
            audio and metrics, see :class:`EvalConfig`); 0 = only at the end of the run.
        record_sample_ids: append ``<step>\t<sample id>`` lines per rank to
            ``<run_dir>/sample_ids/rank<r>.tsv`` (to audit data sharding).
    """

    interval: int = 20
    t_bins: int = 10
    val_interval: int = 1000
    val_batches: int = 0
    eval_interval: int = 15_000
    record_sample_ids: bool = False


@dataclass(kw_only=True)
class EvalConfig:
    """Evaluation during and after training: generated clips and their metrics.

    Every ``log.eval_interval`` steps and at the last step the ``during`` splits are generated
    with the current weights (the EMA when ``ema.enabled``), sharded over the ranks; after the
    last step the ``after`` sets too. Metrics: FD (PaSST, PANNs, VGGish), KL, IS, IB-Score
    and DeSync through av-benchmark, or the built-in weight-free embedder when av-benchmark is
    not available. Results: ``<run_dir>/eval/<step>/metrics.json`` and TensorBoard
    ``eval/<set>/<metric>``; a set whose metrics exist at a step is not evaluated again.

    Args:
        enabled: evaluate at all.
        during: data splits (``val``, ``test``, ``train``: precomputed features, like
            training) evaluated every ``log.eval_interval`` steps and at the end.
        after: sets evaluated once after the last step: data splits, or names of
            ``datasets`` (raw videos, through the batch evaluation with the final weights
            file).
        datasets: evaluation datasets by name (``config/eval/dataset/<name>.yaml``); the URMP test
            set by default.
        num_clips: clips of each data split evaluated (the first ones; 0 = all); datasets are
            evaluated whole.
        batch_size: clips per generation call, per rank.
        cfg_strength: classifier-free guidance strength of the generations.
        num_steps: Euler steps of the generations.
        features: ``auto`` (av-benchmark when it is installed and the device is CUDA, else
            the built-in embedder), ``av-bench``, or a registered embedder name
            (``melstats``, or one a ``plugins`` module registers).
        plugins: modules imported before ``features`` is resolved (``[mypkg.metrics]``),
            e.g. ones whose ``register_embedder`` calls add embedders; importable from
            ``PYTHONPATH`` or installed.
        audio_length: seconds of each clip scored; None = the run's ``duration``.
    """

    enabled: bool = True
    during: tuple[str, ...] = ("val",)
    after: tuple[str, ...] = ("urmp",)
    datasets: dict[str, EvalDatasetConfig] = field(default_factory=dict)
    num_clips: int = 0
    batch_size: int = 6
    cfg_strength: float = 4.5
    num_steps: int = 25
    features: str = "auto"
    plugins: tuple[str, ...] = ()
    audio_length: float | None = None


@dataclass(kw_only=True)
class CheckpointConfig:
    """Weights files and full training states.

    Args:
        weights_interval: steps between weights files (published layout).
        state_interval: steps between full training states.
        keep_last: full training states kept (older ones are deleted).
        resume: ``auto`` (latest state in the run directory, if any), ``never``, or a path.
    """

    weights_interval: int = 1000
    state_interval: int = 4000
    keep_last: int = 2
    resume: str = "auto"


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a training run needs, validated.

    Args:
        exp_name: experiment name (file names inside the run directory).
        run_dir: output folder of the run.
        device: ``cuda``, ``cpu`` or None for automatic.
        seed: base seed; every rank adds its global rank for data and noise generators.
        amp: bf16 autocast (CUDA only; ignored elsewhere).
        duration: clip length in seconds (sets the sequence lengths).
        num_iterations: optimiser steps of the whole run.
        batch_size: global batch size (divided evenly over ranks).
        val_batch_size: validation batch size per rank.
        stop_after: stop after this many steps (a full state is saved), for tests and
            preemptible jobs; None runs to ``num_iterations``.
        sync_chunk: windows per Synchformer call (memory knob; 0 = all at once).
        cudnn_benchmark: enable cuDNN autotuning on CUDA.
        paths, model, data: the sections chosen by Hydra groups (no defaults here).
        optim, schedule, loss, ema, log, eval, checkpoint: the other sections.
    """

    exp_name: str
    run_dir: str
    device: str | None = None
    seed: int = 14_159_265
    amp: bool = True
    duration: float = 5.0
    num_iterations: int = 70_000
    batch_size: int = 4
    val_batch_size: int = 6
    stop_after: int | None = None
    sync_chunk: int = 0
    cudnn_benchmark: bool = True
    paths: PathsConfig
    model: ModelSetup
    data: DataSetup
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        # Checked before anything runs: a zero interval would fail only after the first
        # training step (steps are taken modulo the intervals).
        at_least_one = {"num_iterations": self.num_iterations, "batch_size": self.batch_size,
                        "val_batch_size": self.val_batch_size, "log.interval": self.log.interval,
                        "log.t_bins": self.log.t_bins,
                        "checkpoint.weights_interval": self.checkpoint.weights_interval,
                        "checkpoint.state_interval": self.checkpoint.state_interval,
                        "checkpoint.keep_last": self.checkpoint.keep_last}
        if self.ema.enabled:
            at_least_one["ema.snapshot_every"] = self.ema.snapshot_every
        at_least_zero = {"log.val_interval": self.log.val_interval,
                         "log.val_batches": self.log.val_batches,
                         "log.eval_interval": self.log.eval_interval}
        bad = ([f"{name}={value} (must be >= 1)" for name, value in at_least_one.items()
                if value < 1]
               + [f"{name}={value} (must be >= 0; 0 switches it off)"
                  for name, value in at_least_zero.items() if value < 0])
        if self.stop_after is not None and self.stop_after < 1:
            bad.append(f"stop_after={self.stop_after} (must be >= 1, or null)")
        bad += self._optimiser_problems() + self._objective_problems()
        try:
            check_cfg_strength(self.eval.cfg_strength, "eval.cfg_strength")
        except UserInputError as err:
            bad.append(str(err))
        if self.eval.audio_length is not None:
            # A negative length cut the last seconds off every scored clip and 0 meant the
            # whole clip, both silently; NaN failed at the first evaluation, hours in.
            try:
                check_seconds(self.eval.audio_length, "eval.audio_length", positive=True)
            except UserInputError as err:
                bad.append(f"{err} (or null for the run's duration)")
        if bad:
            raise UserInputError("invalid configuration: " + ", ".join(bad))

    def local_batch_size(self, world_size: int) -> int:
        """Clips per rank and step when ``world_size`` processes train.

        Raises:
            UserInputError: ``batch_size`` does not divide evenly over the ranks.
        """
        if self.batch_size % world_size:
            raise UserInputError(f"batch_size {self.batch_size} is not divisible by the "
                                 f"{world_size} ranks (set batch_size to a multiple of the "
                                 f"number of processes)")
        return self.batch_size // world_size

    def _optimiser_problems(self) -> list[str]:
        """What is wrong with the ``optim`` and ``schedule`` settings: torch's AdamW would
        refuse most of these only when it is built (a traceback), and a NaN rate or a
        non-positive clipping norm would train on without a complaint."""
        optim, schedule = self.optim, self.schedule
        bad = []
        # 0 is allowed: a run that only evaluates (or checks resuming) without learning.
        if not (math.isfinite(optim.lr) and optim.lr >= 0):
            bad.append(f"optim.lr={optim.lr} (must be a finite number >= 0)")
        if len(optim.betas) != 2 or not all(0 <= beta < 1 for beta in optim.betas):
            bad.append(f"optim.betas={list(optim.betas)} (two numbers, each >= 0 and < 1)")
        if optim.eps is not None and not (math.isfinite(optim.eps) and optim.eps > 0):
            bad.append(f"optim.eps={optim.eps} (must be a finite number > 0, or null)")
        if not (math.isfinite(optim.weight_decay) and optim.weight_decay >= 0):
            bad.append(f"optim.weight_decay={optim.weight_decay} (must be a finite number >= 0)")
        if not optim.grad_clip > 0:  # inf is allowed: no clipping, the norm still logged
            bad.append(f"optim.grad_clip={optim.grad_clip} (must be > 0)")
        if schedule.warmup_steps < 0:
            bad.append(f"schedule.warmup_steps={schedule.warmup_steps} (must be >= 0)")
        if any(m < 0 for m in schedule.milestones):
            bad.append(f"schedule.milestones={list(schedule.milestones)} (must be >= 0)")
        if not (math.isfinite(schedule.gamma) and schedule.gamma > 0):
            bad.append(f"schedule.gamma={schedule.gamma} (must be a finite number > 0)")
        return bad

    def _objective_problems(self) -> list[str]:
        """What is wrong with the ``loss`` and ``ema`` settings: a probability above 1 or a
        NaN time-step mean trained on silently, one EMA width failed in ema_pytorch's
        assertion (a traceback) and a width past :data:`MAX_SIGMA_REL` gave a negative
        exponent (an average that grows with the step) without a complaint."""
        loss, ema = self.loss, self.ema
        bad = [f"loss.{name}={value} (must be a finite number)"
               for name, value in (("t_mean", loss.t_mean), ("t_scale", loss.t_scale))
               if not math.isfinite(value)]
        bad += [f"loss.{name}={value} (a probability: 0 to 1)"
                for name, value in (("null_video_prob", loss.null_video_prob),
                                    ("null_text_prob", loss.null_text_prob))
                if not 0 <= value <= 1]
        if ema.enabled:
            widths = list(ema.sigma_rels)
            if (len(widths) < 2 or len(set(widths)) != len(widths)
                    or not all(sigma_rel_ok(w) for w in widths)):
                bad.append(f"ema.sigma_rels={widths} (at least two distinct widths, "
                           f"each {SIGMA_REL_RULE})")
            if not sigma_rel_ok(ema.output_sigma_rel):
                bad.append(f"ema.output_sigma_rel={ema.output_sigma_rel} "
                           f"(must be {SIGMA_REL_RULE})")
        return bad


def register_train_schema() -> None:
    """Register :class:`TrainConfig` as :data:`SCHEMA_NAME` (``config/train.yaml`` uses it)."""
    register_schema(SCHEMA_NAME, TrainConfig)


def from_hydra(cfg: DictConfig | dict[str, Any], run_dir: str | None = None) -> TrainConfig:
    """Validate a composed Hydra config against :class:`TrainConfig` and convert it.

    Args:
        cfg: the composed config (``hydra`` node excluded, as Hydra passes it to main).
        run_dir: the run directory Hydra chose (overrides ``cfg.run_dir`` when given).

    Raises:
        UserInputError: a value is missing or has the wrong type.
    """
    return to_typed(cfg, TrainConfig, **({} if run_dir is None else {"run_dir": run_dir}))


def write_resolved_config(config: TrainConfig, folder: str | Path) -> Path:
    """Write the configuration a run uses, every interpolation resolved, to
    ``<folder>/resolved.yaml`` (:data:`RESOLVED_CONFIG_NAME`) and return its path.

    Hydra's ``config.yaml`` keeps ``${paths.data_dir}`` and ``${hydra:...}`` as written, so the
    data folders, the run directory and the experiment's name a run used are otherwise in no
    readable file of the run.

    Args:
        config: the validated configuration.
        folder: this invocation's Hydra files folder (``.hydra`` or ``.hydra/resume-<n>``).
    """
    path = Path(folder) / RESOLVED_CONFIG_NAME
    # Through JSON: tuples become lists and the YAML holds plain types only.
    plain = json.loads(json.dumps(dataclasses.asdict(config)))
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text("# The resolved configuration of this invocation (train.py).\n"
                       + yaml.safe_dump(plain, sort_keys=False))
    log.info("resolved configuration: %s", path)
    return path
