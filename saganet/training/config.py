"""Typed training configuration: the schema of ``config/train.yaml`` as dataclasses.

Hydra composes the YAML files; :func:`from_hydra` validates the result against these
dataclasses (unknown keys and wrong types fail early, before any model is built) and returns a
:class:`TrainConfig`. Everything below the entry point receives these objects, never the raw
Hydra config, and no ``nn.Module`` sees any of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass
class ModelSetup:
    """Which networks to build and where their initial weights come from.

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
    """

    network: str = "small_44k_sa"
    use_lora: bool = True
    synchformer: str = "official"
    network_init: str | None = "mmaudio_small_44k.pth"
    synchformer_init: str | None = "synchformer_state_dict.pth"
    codec: str = "44k"

    @property
    def variant(self) -> str:
        """The network variant name understood by ``saganet.model.build_network``."""
        return self.network if self.use_lora else f"{self.network}_no_lora"


@dataclass
class PathsConfig:
    """Where things live on this machine.

    Args:
        data_dir: root of the prepared datasets (``<data_dir>/sms/...``).
        output_dir: parent of the run directories.
        weights_dir: weights cache (base weights, Synchformer); None = the default cache
            (``SAGANET_WEIGHTS_DIR`` or the user cache folder).
    """

    data_dir: str = "./data"
    output_dir: str = "./output"
    weights_dir: str | None = None


@dataclass
class SplitConfig:
    """One split of a dataset that reads precomputed features (SMS or URMP layout).

    Args:
        root: folder holding the clips (``<root>/<id>.mp4`` and the mask/detail videos).
        tsv: metadata table of the split (tab separated, header, columns ``id``, ``label``).
        memmap_dir: TensorDict memmap of precomputed features with its ``ids.txt``.
    """

    root: str = ""
    tsv: str = ""
    memmap_dir: str = ""


@dataclass
class DataSetup:
    """Dataset choice and loader settings.

    Args:
        kind: ``sms`` or ``urmp`` (precomputed features + videos) or ``synthetic``.
        train, val: the splits for the precomputed kinds.
        synthetic_train_size, synthetic_val_size: sample counts of the synthetic kind.
        num_workers: DataLoader workers per rank.
        pin_memory: DataLoader pinned memory.
    """

    kind: str = "sms"
    train: SplitConfig = field(default_factory=SplitConfig)
    val: SplitConfig = field(default_factory=SplitConfig)
    synthetic_train_size: int = 256
    synthetic_val_size: int = 16
    num_workers: int = 8
    pin_memory: bool = False


@dataclass
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


@dataclass
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


@dataclass
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


@dataclass
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


@dataclass
class LogConfig:
    """What is logged and validated, and when (in optimiser steps).

    Args:
        interval: steps between TensorBoard scalar logs (averaged over steps and ranks).
        t_bins: number of equal-width bins of t for the loss-by-time-step scalars.
        val_interval: steps between validation-loss sweeps (0 disables).
        val_batches: batches per validation sweep per rank (0 = the whole split).
        gen_interval: steps between generations on validation clips (0 disables).
        gen_clips: validation clips generated each time (rank 0).
        gen_steps: Euler steps of those generations.
        gen_cfg: classifier-free guidance strength of those generations.
        record_sample_ids: append ``<step>\t<sample id>`` lines per rank to
            ``<run_dir>/sample_ids/rank<r>.tsv`` (to audit data sharding).
    """

    interval: int = 20
    t_bins: int = 10
    val_interval: int = 1000
    val_batches: int = 0
    gen_interval: int = 15_000
    gen_clips: int = 4
    gen_steps: int = 25
    gen_cfg: float = 4.5
    record_sample_ids: bool = False


@dataclass
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


@dataclass
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
        paths, model, data, optim, schedule, loss, ema, log, checkpoint: the sections.
    """

    exp_name: str = "saganet_small"
    run_dir: str = "output/saganet_small"
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
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelSetup = field(default_factory=ModelSetup)
    data: DataSetup = field(default_factory=DataSetup)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


def from_hydra(cfg: DictConfig | dict[str, Any], run_dir: str | None = None) -> TrainConfig:
    """Validate a composed Hydra config against :class:`TrainConfig` and convert it.

    Args:
        cfg: the composed config (``hydra`` node excluded, as Hydra passes it to main).
        run_dir: the run directory Hydra chose (overrides ``cfg.run_dir`` when given).
    """
    schema = OmegaConf.structured(TrainConfig)
    merged = OmegaConf.merge(schema, cfg)
    if run_dir is not None:
        merged.run_dir = run_dir
    config = OmegaConf.to_object(merged)
    assert isinstance(config, TrainConfig)
    return config
