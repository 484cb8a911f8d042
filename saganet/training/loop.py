"""The training loop: set up a run from a :class:`TrainConfig`, train, validate, generate, save,
and resume.

One process per device (``torchrun``) or a single process. Every rank builds identical models
(same seed), trains on its own shard of each epoch (sampler keyed by the GLOBAL rank) and draws
noise from its own generator (seed + global rank); DDP averages the gradients. Rank 0 writes
TensorBoard scalars, the progress bar, weights files, full training states (with every rank's
generator states) and the EMA. A run restarted with the same run directory continues from its
latest full state exactly where it stopped: same batches, same noise, same losses on CPU.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel

from saganet import dist
from saganet.data.sms_dataset import SampleShapes
from saganet.errors import UserInputError
from saganet.inference import SamplingOptions
from saganet.model import CONFIG_44K_SA, FlowMatching
from saganet.state_dict import atomic_save, load_state_dict_strict
from saganet.training.checkpoint import (
    RNGState,
    TrainingState,
    latest_state,
    load_state,
    save_state,
)
from saganet.training.config import TrainConfig
from saganet.training.data import build_datasets, build_loader
from saganet.training.ema import TrainableView, build_post_hoc_ema, synthesize
from saganet.training.generation import ValidationGenerator, build_codec
from saganet.training.logger import LossStats, RunLogger
from saganet.training.models import (
    build_models,
    has_latent_stats,
    load_base_weights,
    set_latent_stats,
)
from saganet.training.optim import build_optimizer, build_scheduler
from saganet.training.step import flow_matching_loss, to_device
from saganet.training.trainable import (
    TrainableFlow,
    configure_trainable,
    raw_state_dict,
    trainable_names,
)

log = logging.getLogger(__name__)

# Validation noise comes from a generator of its own, far from the training seeds.
VAL_SEED_OFFSET = 1_000_003
SAMPLE_IDS_DIR = "sample_ids"


def seed_everything(seed: int) -> None:
    """Seed the global generators (identical on every rank, so initial weights agree)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class Trainer:
    """One training run (see the module docstring).

    Args:
        cfg: the validated configuration.
        info: this process's place in the job (from :func:`saganet.dist.init`).
    """

    def __init__(self, cfg: TrainConfig, info: dist.DistInfo) -> None:
        self.cfg, self.info = cfg, info
        self.device = device = info.device
        self.run_dir = Path(cfg.run_dir)
        if cfg.batch_size % info.world_size:
            raise UserInputError(f"batch_size {cfg.batch_size} is not divisible by the "
                                 f"{info.world_size} ranks")
        self.local_batch = cfg.batch_size // info.world_size
        amp = cfg.amp and device.type == "cuda"
        self.autocast_dtype = torch.bfloat16 if amp else None
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        seed_everything(cfg.seed)

        self.sequence = CONFIG_44K_SA.with_duration(cfg.duration)
        self.models = build_models(cfg.model, self.sequence)
        network, synchformer = self.models.network, self.models.synchformer
        shapes = SampleShapes(
            latent_len=self.sequence.latent_seq_len, latent_dim=network.config.latent_dim,
            clip_len=self.sequence.clip_seq_len, clip_dim=network.config.clip_dim,
            text_len=network.config.text_seq_len, text_dim=network.config.text_dim,
            sync_frames=int(self.sequence.num_sync_frames),
            frame_size=synchformer.config.img_size)
        # Data first: a wrong data path fails in seconds, before any base-weight download.
        self.train_set, self.val_set = build_datasets(cfg.data, shapes, cfg.duration, cfg.seed)
        state_path = self._state_path()
        if state_path is None:  # a training state holds all weights: no base weights needed
            load_base_weights(self.models, cfg.model, cfg.paths.weights_dir)
        if not has_latent_stats(network):
            set_latent_stats(network, *self.train_set.latent_stats())

        groups = configure_trainable(network, synchformer, cfg.model.use_lora)
        self.trainable = {"network": trainable_names(network),
                          "synchformer": trainable_names(synchformer)}
        self.params = [p for params in groups.values() for p in params]
        self.core = TrainableFlow(network, synchformer, cfg.sync_chunk).to(device)
        self.optimizer = build_optimizer(groups, cfg.optim, amp=amp,
                                         fused=device.type == "cuda")
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule)
        self.lr = self.scheduler.get_last_lr()[0]  # the rate of the latest step (logged)
        self.flow = FlowMatching(t_mean=cfg.loss.t_mean, t_scale=cfg.loss.t_scale)

        rank, world = info.rank, info.world_size
        self.train_loader = build_loader(
            self.train_set, batch_size=self.local_batch, rank=rank, world_size=world,
            shuffle=True, drop_last=True, seed=cfg.seed, num_workers=cfg.data.num_workers,
            pin_memory=cfg.data.pin_memory)
        if len(self.train_loader) == 0:
            raise UserInputError(f"{len(self.train_set)} training samples give no batch of "
                                 f"{self.local_batch} per rank on {world} rank(s)")
        self.val_loader = build_loader(
            self.val_set, batch_size=cfg.val_batch_size, rank=rank, world_size=world,
            shuffle=False, drop_last=False, seed=cfg.seed, num_workers=cfg.data.num_workers,
            pin_memory=cfg.data.pin_memory)
        self.noise = torch.Generator(device).manual_seed(cfg.seed + rank)
        self.val_noise = torch.Generator(device).manual_seed(cfg.seed + rank + VAL_SEED_OFFSET)
        self.val_noise_start = self.val_noise.get_state()

        self.step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.failed_total = 0
        self.ema = None
        if cfg.ema.enabled and info.is_main:
            view = TrainableView({"network": network, "synchformer": synchformer})
            self.ema = build_post_hoc_ema(view, self.run_dir, cfg.ema.sigma_rels,
                                          cfg.ema.snapshot_every, exp_name=cfg.exp_name)
        self.generator = None
        if cfg.log.gen_interval > 0 and info.is_main:
            self.generator = self._build_generator()
        if state_path is not None:
            self._resume(state_path)
        if world > 1:
            self.model: torch.nn.Module = DistributedDataParallel(
                self.core, device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=False)
        else:
            self.model = self.core
        self.ids_file = None
        if cfg.log.record_sample_ids:
            self.ids_file = self.run_dir / SAMPLE_IDS_DIR / f"rank{rank}.tsv"
            self.ids_file.parent.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ setup helpers

    def _build_generator(self) -> ValidationGenerator:
        clips = []
        for index in range(len(self.val_set)):
            sample = self.val_set[index]
            if sample is not None:
                clips.append(sample)
            if len(clips) == self.cfg.log.gen_clips:
                break
        options = SamplingOptions(cfg_strength=self.cfg.log.gen_cfg,
                                  num_steps=self.cfg.log.gen_steps)
        codec = build_codec(self.cfg.model.codec, self.cfg.paths.weights_dir)
        return ValidationGenerator(clips, codec, self.sequence, options, self.cfg.seed,
                                   self.run_dir / "val", self.device)

    def _state_path(self) -> Path | None:
        """The training state to resume from, per ``checkpoint.resume`` (None: start fresh)."""
        choice = self.cfg.checkpoint.resume
        if choice == "never":
            return None
        path = latest_state(self.run_dir) if choice == "auto" else Path(choice)
        if path is None:
            log.info("no training state in %s: starting from step 0", self.run_dir)
        elif not path.is_file():
            raise UserInputError("training state not found", path)
        return path

    def _resume(self, path: Path) -> None:
        state = load_state(path)
        if state.trainable != self.trainable:
            raise UserInputError("the training state trains other parameters than this "
                                 "configuration (different variant or LoRA setting?)", path)
        network, synchformer = self.models.network, self.models.synchformer
        network.load_weights(state.modules["network"], lora_merged=False,
                             what=f"{path}['network']")
        load_state_dict_strict(synchformer, state.modules["synchformer"],
                               what=f"{path}['synchformer']")
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.step, self.epoch = state.step, state.epoch
        self.batches_in_epoch = state.batches_in_epoch
        self.failed_total = state.failed_samples
        generators = {"noise": self.noise, "val_noise": self.val_noise}
        if len(state.rng) == self.info.world_size:
            RNGState.from_dict(state.rng[self.info.rank]).restore(generators)
        else:
            log.warning("%s was written by %d rank(s), this run has %d: random streams are "
                        "re-seeded (the run continues, but not bit for bit)", path,
                        len(state.rng), self.info.world_size)
        if self.ema is not None:
            if state.ema:
                self.ema.load_state_dict(state.ema)
            else:
                log.warning("%s has no EMA state: EMA restarts at step %d", path, self.step)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step,
                 self.epoch, self.batches_in_epoch)

    # ------------------------------------------------------------------ the loop

    @property
    def stop_step(self) -> int:
        """Step at which this invocation stops."""
        stop = self.cfg.num_iterations
        if self.cfg.stop_after is not None:
            stop = min(stop, self.cfg.stop_after)
        return stop

    def run(self) -> None:
        """Train until ``stop_after`` or ``num_iterations``, then save (and synthesise EMA)."""
        cfg = self.cfg
        logger = RunLogger(self.run_dir, self.info.is_main, cfg.num_iterations, self.step)
        stats = LossStats(cfg.log.t_bins)
        stop = self.stop_step
        try:
            while self.step < stop:
                self.train_loader.sampler.set_position(self.epoch,
                                                       self.batches_in_epoch * self.local_batch)
                for batch in self.train_loader:
                    self.batches_in_epoch += 1
                    if self.train_step(batch, stats):
                        self.after_step(logger, stats)
                    if self.step >= stop:
                        break
                else:
                    self.epoch += 1
                    self.batches_in_epoch = 0
            self.finish()
        finally:
            logger.close()

    def train_step(self, batch: dict, stats: LossStats) -> bool:
        """One optimiser step on a batch; False when a rank had no usable sample (skipped).

        Args:
            batch: a collated batch (``failed``/``size`` from the counting collate).
            stats: where the step's losses are recorded.
        """
        counts = torch.tensor([float(batch["size"] == 0), float(batch["failed"])],
                              dtype=torch.float64, device=self.device)
        if torch_dist.is_initialized():
            torch_dist.all_reduce(counts)
        empty_ranks, failed = (int(v) for v in counts.tolist())
        self.failed_total += failed
        stats.failed += int(batch["failed"])
        if empty_ranks:
            log.warning("step %d: %d rank(s) got only unloadable samples; batch skipped",
                        self.step, empty_ranks)
            return False
        if self.ids_file is not None:
            with self.ids_file.open("a") as handle:
                handle.writelines(f"{self.step}\t{i}\n" for i in batch["id"])

        self.core.train()
        inputs = to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        out = flow_matching_loss(self.model, self.core.network, inputs, generator=self.noise,
                                 flow=self.flow, cfg=self.cfg.loss,
                                 autocast_dtype=self.autocast_dtype)
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.lr = self.scheduler.get_last_lr()[0]
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:
            # Gradients are identical on every rank after DDP, so all ranks skip together.
            log.warning("step %d: non-finite gradient norm, optimiser step skipped", self.step)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
        stats.add(out.per_sample, out.t, grad_norm)
        self.step += 1
        return True

    def after_step(self, logger: RunLogger, stats: LossStats) -> None:
        """Periodic logging, validation, generation and saving after step ``self.step``."""
        cfg, step = self.cfg, self.step
        if step % cfg.log.interval == 0 or step == self.stop_step:
            values = stats.reduce(self.device)
            stats.reset()
            values.update(lr=self.lr, failed_total=self.failed_total)
            logger.scalars("train", values, step)
            logger.advance(step, {"loss": values["loss"], "lr": self.lr})
            if self.info.is_main:
                log.info("step %d: loss %.4f, grad norm %.3g, lr %.3g, failed samples %d",
                         step, values["loss"], values.get("grad_norm", math.nan), self.lr,
                         self.failed_total)
        else:
            logger.advance(step)
        if cfg.log.val_interval and step % cfg.log.val_interval == 0:
            logger.scalars("val", self.validate(), step)
        if cfg.log.gen_interval and step % cfg.log.gen_interval == 0:
            self.generate()
        if step % cfg.checkpoint.weights_interval == 0:
            self.save_weights()
        if step % cfg.checkpoint.state_interval == 0 or step == self.stop_step:
            self.save_state()

    def finish(self) -> None:
        """End of this invocation: final weights, final state, EMA synthesis (full runs)."""
        if self.step % self.cfg.checkpoint.weights_interval:
            self.save_weights()
        if self.step >= self.cfg.num_iterations and self.ema is not None:
            self.ema.checkpoint()  # the last snapshot anchors the synthesis at the final step
            synthesize(self.run_dir, self.cfg.ema.output_sigma_rel)
        dist.barrier()
        if self.info.is_main:
            log.info("stopped at step %d; %d sample(s) failed to load in total", self.step,
                     self.failed_total)

    # ------------------------------------------------------------------ periodic work

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation loss with the training loss function and a reset noise generator."""
        self.core.eval()
        self.val_noise.set_state(self.val_noise_start)
        stats = LossStats(self.cfg.log.t_bins)
        try:
            for index, batch in enumerate(self.val_loader):
                if self.cfg.log.val_batches and index >= self.cfg.log.val_batches:
                    break
                stats.failed += int(batch["failed"])
                if batch["size"] == 0:
                    continue
                out = flow_matching_loss(self.core, self.core.network,
                                         to_device(batch, self.device), generator=self.val_noise,
                                         flow=self.flow, cfg=self.cfg.loss,
                                         autocast_dtype=self.autocast_dtype)
                stats.add(out.per_sample, out.t)
        finally:
            self.core.train()
        values = stats.reduce(self.device)
        if self.info.is_main:
            log.info("step %d: validation loss %.4f over %d samples", self.step,
                     values["loss"], int(values["samples"]))
        return values

    def generate(self) -> None:
        """Generate the fixed validation clips (rank 0; the others wait)."""
        if self.generator is not None:
            self.generator(self.core.network, self.core.synchformer, self.step)
        dist.barrier()

    def save_weights(self) -> None:
        """``<run_dir>/<exp_name>_last.pth`` in the published layout (rank 0)."""
        if self.info.is_main:
            path = self.run_dir / f"{self.cfg.exp_name}_last.pth"
            atomic_save(self.models.weights_file(), path)
            log.info("step %d: weights -> %s", self.step, path)

    def save_state(self) -> None:
        """A full training state with every rank's generator states (written by rank 0)."""
        rng = RNGState.capture({"noise": self.noise, "val_noise": self.val_noise}).to_dict()
        if torch_dist.is_initialized():
            gathered: list = [None] * self.info.world_size
            torch_dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        if self.info.is_main:
            network, synchformer = self.models.network, self.models.synchformer
            state = TrainingState(
                step=self.step,
                modules={"network": raw_state_dict(network),
                         "synchformer": synchformer.state_dict()},
                trainable=self.trainable, optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(), epoch=self.epoch,
                batches_in_epoch=self.batches_in_epoch, rng=gathered,
                ema=self.ema.state_dict() if self.ema is not None else {},
                failed_samples=self.failed_total, config=dataclasses.asdict(self.cfg))
            path = save_state(state, self.run_dir, self.cfg.checkpoint.keep_last)
            log.info("step %d: training state -> %s", self.step, path)
        dist.barrier()


def fit(cfg: TrainConfig) -> Path:
    """Run (or resume) training as configured; returns the run directory.

    Works in a single process and under ``torchrun`` (one process per device).

    Args:
        cfg: the validated configuration (see :func:`saganet.training.config.from_hydra`).
    """
    info = dist.init(cfg.device)
    if not info.is_main:
        # Rank-0 logging: other ranks report only warnings and errors.
        logging.getLogger().setLevel(logging.WARNING)
    try:
        Trainer(cfg, info).run()
    finally:
        dist.cleanup()
    return Path(cfg.run_dir)
