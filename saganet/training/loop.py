"""The training loop: set up a run from a :class:`TrainConfig`, train, validate, generate, save,
and resume.

One process per device (``torchrun``) or a single process. Every rank builds identical models
(same seed), trains on its own shard of each epoch (sampler keyed by the GLOBAL rank) and draws
noise from its own generator (seed + global rank); DDP averages the gradients. Rank 0 writes
TensorBoard scalars, the progress bar, weights files, full training states (with every rank's
generator states) and the EMA. A run restarted with the same run directory continues from its
latest full state exactly where it stopped: same batches, same noise, same losses on CPU, and
the same logged series (the unfinished log window is part of the state), also after a kill.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel

from saganet import dist
from saganet.data.sms_dataset import SampleShapes
from saganet.errors import UserInputError
from saganet.fileio import atomic_output
from saganet.model import CONFIG_44K_SA, FlowMatching
from saganet.state_dict import (
    MismatchReport,
    check_state_dict,
    load_state_dict_strict,
)
from saganet.training.checkpoint import (
    RNGState,
    TrainingState,
    config_changes,
    latest_state,
    list_states,
    load_state,
    remove_after,
    save_state,
    save_weights_file,
    state_dir,
)
from saganet.training.config import SPLITS, TrainConfig
from saganet.training.data import build_datasets, build_loader, build_split
from saganet.training.ema import (
    SNAPSHOT_DIR,
    TrainableView,
    build_post_hoc_ema,
    encode_name,
    snapshot_steps,
    synthesize,
    tracked_ema_parameters,
    weights_file_parameters,
)
from saganet.training.evaluation import (
    CACHE_DIR,
    EVAL_DIR,
    METRICS_FILE,
    EvalSplit,
    TrainingEvaluator,
    broadcast_parameters,
    build_codec,
    check_dataset,
    choose_feature_source,
    recorded_steps,
)
from saganet.training.logger import LossStats, RunLogger
from saganet.training.models import (
    build_models,
    has_latent_stats,
    load_base_weights,
    set_latent_stats,
)
from saganet.training.optim import (
    build_optimizer,
    build_scheduler,
    load_optimizer_state,
    lr_factor,
)
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
# Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED_STATUS = 130
# Signals that stop training after the current step (Ctrl-C; schedulers' and torchrun's SIGTERM).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A stop signal this soon after the first is the same press: under torchrun one Ctrl-C reaches
# each rank twice, from the terminal (to the whole process group) and from torchrun passing its
# own on, milliseconds apart. A person pressing again to stop at once, after reading the
# warning, takes longer than this.
SAME_PRESS_SECONDS = 1.0


class TrainingInterruptedError(Exception):
    """Training stopped on Ctrl-C; the message says whether and where a state was saved.

    Args:
        message: one line for the user.
        is_main: raised on rank 0 (the rank that reports it).
    """

    def __init__(self, message: str, is_main: bool) -> None:
        super().__init__(message)
        self.is_main = is_main


class _StopRequestedError(Exception):
    """Every rank agreed, at the start of a step, to stop (Ctrl-C was pressed)."""


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
        self.local_batch = cfg.local_batch_size(info.world_size)
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
        # The val split only when validation runs (log.val_interval > 0): data without one
        # trains with validation off (an evaluation of ``val`` builds it, see _build_evaluator).
        self.train_set, self.val_set = build_datasets(cfg.data, shapes, cfg.duration, cfg.seed,
                                                      validate=cfg.log.val_interval > 0)
        rank, world = info.rank, info.world_size
        # Also before the evaluator and the base weights: a split too small for one batch
        # fails before their downloads.
        self.train_loader = build_loader(
            self.train_set, batch_size=self.local_batch, rank=rank, world_size=world,
            shuffle=True, drop_last=True, seed=cfg.seed, num_workers=cfg.data.num_workers,
            pin_memory=cfg.data.pin_memory)
        if len(self.train_loader) == 0:
            raise UserInputError(f"{len(self.train_set)} training samples give no batch of "
                                 f"{self.local_batch} per rank on {world} rank(s)")
        self.evaluator = self._build_evaluator(shapes)
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
        if info.is_main and cfg.schedule.warmup_steps >= cfg.num_iterations:
            # Not refused (a short check run may want it), but a shortened run that keeps the
            # recipe's warm-up trains below its rate throughout, and nothing else would say so.
            log.warning("schedule.warmup_steps=%d is not shorter than num_iterations=%d: the "
                        "run ends in the warm-up, its last step at %.3g x optim.lr",
                        cfg.schedule.warmup_steps, cfg.num_iterations,
                        lr_factor(cfg.num_iterations - 1, cfg.schedule))
        self.lr = self.optimizer.param_groups[0]["lr"]  # the rate of the latest step (logged)
        self.flow = FlowMatching(t_mean=cfg.loss.t_mean, t_scale=cfg.loss.t_scale)

        self.val_loader = None if self.val_set is None else build_loader(
            self.val_set, batch_size=cfg.val_batch_size, rank=rank, world_size=world,
            shuffle=False, drop_last=False, seed=cfg.seed, num_workers=cfg.data.num_workers,
            pin_memory=cfg.data.pin_memory)
        self.noise = torch.Generator(device).manual_seed(cfg.seed + rank)
        self.val_noise = torch.Generator(device).manual_seed(cfg.seed + rank + VAL_SEED_OFFSET)
        self.val_noise_start = self.val_noise.get_state()

        self.step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        # Samples of the epoch consumed by all ranks: where a resume goes on, whatever its
        # batch size and number of ranks (see ResumableDistributedSampler).
        self.samples_in_epoch = 0
        self.failed_total = 0
        # Batches skipped one after the other: an epoch's worth means nothing can load, and
        # the loop would otherwise go on skipping (and logging) for ever.
        self.skipped_in_a_row = 0
        # Training-loss sums since the last log point (saved in states, restored on resume).
        self.stats = LossStats(cfg.log.t_bins)
        self.ema = None
        if cfg.ema.enabled and info.is_main:
            view = TrainableView({"network": network, "synchformer": synchformer})
            self.ema = build_post_hoc_ema(view, self.run_dir, cfg.ema.sigma_rels,
                                          cfg.ema.snapshot_every, exp_name=cfg.exp_name)
        self.last_state: tuple[int, Path] | None = None  # (step, file) of the latest state
        self._interrupted = False
        if state_path is not None:
            self._resume(state_path)
        if info.is_main:
            # The steps after this one are taken again (also from step 0, after a run killed
            # before its first state): what was evaluated there scored other weights. Rank 0
            # removes it before any rank can evaluate: the others wait for it in the first
            # collective (DDP's set-up or the first step).
            for folder in remove_after(recorded_steps(self.run_dir), self.step):
                log.warning("%s: evaluated after step %d, where this run starts; removed (the "
                            "run evaluates that step again when it gets there)", folder,
                            self.step)
            # Same for EMA snapshots: the synthesis combines all in the folder, and those of
            # steps this run never reaches again would not be overwritten.
            dropped = remove_after(snapshot_steps(self.run_dir), self.step)
            if dropped:
                log.warning("%s: removed %d EMA snapshot(s) of steps after %d, where this run "
                            "starts (%s ... %s); the run snapshots its own steps",
                            dropped[0].parent, len(dropped), self.step, dropped[0].name,
                            dropped[-1].name)
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
            if self.ids_file.exists():
                # A run killed after its last state recorded steps that are taken again now.
                drop_recorded_steps(self.ids_file, self.step)

    # ------------------------------------------------------------------ setup helpers

    def _build_evaluator(self, shapes: SampleShapes) -> TrainingEvaluator | None:
        """The evaluation of ``eval.during`` / ``eval.after`` (None when switched off).

        Everything that can fail on user input (split files, the feature source) is checked
        here, before the first step.
        """
        cfg = self.cfg.eval
        names = list(dict.fromkeys([*cfg.during, *cfg.after]))
        if not cfg.enabled or not names:
            return None
        if cfg.num_clips < 0 or cfg.batch_size < 1 or cfg.num_steps < 1:
            raise UserInputError("eval.num_clips must be >= 0, eval.batch_size and "
                                 "eval.num_steps >= 1")
        hint = ("(evaluate other sets with eval.during=[...] / eval.after=[...], or none with "
                "eval.enabled=false)")
        built = {"train": self.train_set, "val": self.val_set}  # val: None without validation
        splits, datasets = {}, {}
        for name in names:
            if name in cfg.datasets and name not in SPLITS:
                if name in cfg.during:
                    raise UserInputError(f"eval.during names the evaluation dataset {name!r}, "
                                         "which is evaluated after training only (eval.after)")
                try:
                    check_dataset(cfg.datasets[name], self.cfg.duration)
                except UserInputError as err:
                    raise UserInputError(f"evaluation dataset {name!r}: {err} {hint}") from err
                datasets[name] = cfg.datasets[name]
                continue
            try:
                dataset = built.get(name) or build_split(self.cfg.data, name, shapes,
                                                         self.cfg.duration, self.cfg.seed)
            except UserInputError as err:
                raise UserInputError(f"evaluation split {name!r}: {err} {hint}") from err
            count = min(cfg.num_clips, len(dataset)) if cfg.num_clips else len(dataset)
            split_cfg = getattr(self.cfg.data, name)
            gt_cache = (Path(split_cfg.gt_cache) if split_cfg is not None and split_cfg.gt_cache
                        else self.run_dir / EVAL_DIR / CACHE_DIR / name)
            splits[name] = EvalSplit(name, dataset, list(range(count)), gt_cache)
        source, error = None, None
        if self.info.is_main:
            try:
                source = choose_feature_source(cfg.features, self.device, cfg.plugins)
            except UserInputError as err:
                error = str(err)
        error = dist.broadcast_object(error)
        if error is not None:
            raise UserInputError(error)
        if source is not None:
            if source.fallback_reason is not None:
                log.warning("evaluation metrics: %s, because %s; the paper's metrics need "
                            "av-benchmark", source.description, source.fallback_reason)
            else:
                log.info("evaluation metrics: %s", source.description)
        codec = build_codec(self.cfg.model.codec, self.cfg.paths.weights_dir)
        # The evaluation datasets run through a pipeline variant: its CLIP encoder and codec
        # (the network and Synchformer come from the run's weights file).
        pipeline = "debug" if self.cfg.model.codec == "debug" else "saganet_small"
        return TrainingEvaluator(cfg, splits, datasets, pipeline, self.cfg.paths, codec,
                                 self.sequence, self.cfg.seed, self.run_dir, self.info,
                                 self.autocast_dtype, source,
                                 num_workers=self.cfg.data.num_workers)

    def _state_path(self) -> Path | None:
        """The training state to resume from, per ``checkpoint.resume`` (None: start fresh)."""
        choice = self.cfg.checkpoint.resume
        if choice == "never":
            self._refuse_previous_run()
            return None
        path = latest_state(self.run_dir) if choice == "auto" else Path(choice)
        if path is None:
            log.info("no training state in %s: starting from step 0", self.run_dir)
        elif not path.is_file():
            raise UserInputError("training state not found", path)
        return path

    def _refuse_previous_run(self) -> None:
        """A fresh run must not start in a folder holding another run's states, evaluations or
        EMA snapshots: it would resume from those states later, skip the evaluations as done
        and synthesise its EMA from both runs' snapshots."""
        leftovers = []
        if list_states(self.run_dir):
            leftovers.append("training states")
        if any((self.run_dir / EVAL_DIR).glob(f"*/{METRICS_FILE}")):
            leftovers.append("evaluations")
        if any((self.run_dir / SNAPSHOT_DIR).glob("*.pt")):
            leftovers.append("EMA snapshots")
        if leftovers:
            raise UserInputError(f"checkpoint.resume=never, but the run directory holds a "
                                 f"previous run's {', '.join(leftovers)}; choose another "
                                 f"hydra.run.dir, or delete them to start over", self.run_dir)

    def _resume(self, path: Path) -> None:
        state = load_state(path)
        newer = [found.name for step, found in list_states(self.run_dir) if step > state.step]
        if newer:
            # Another timeline: "auto" would later jump back to those states.
            raise UserInputError(
                f"checkpoint.resume names the state of step {state.step}, but the run "
                f"directory holds newer training states ({', '.join(newer)}) that a later "
                f"resume would continue from; move them out of {state_dir(self.run_dir)} "
                f"to go on from step {state.step}, or resume from the latest state", path)
        missing = [name for name in ("network", "synchformer") if name not in state.modules]
        if missing:
            raise UserInputError(f"malformed training state: no {' or '.join(missing)} weights "
                                 f"(modules {sorted(state.modules)})", path)
        if state.trainable != self.trainable:
            raise UserInputError("the training state trains other parameters than this "
                                 "configuration (different variant or LoRA setting?)", path)
        network, synchformer = self.models.network, self.models.synchformer
        # Both checked before either is loaded: one error names all that do not fit, and the
        # live models are never half loaded.
        report = MismatchReport(str(path))
        with report.part():
            network.check_weights(state.modules["network"], what=f"{path}['network']")
        with report.part():
            check_state_dict(synchformer, state.modules["synchformer"],
                             what=f"{path}['synchformer']")
        report.raise_if_any()
        network.load_weights(state.modules["network"], lora_merged=False,
                             what=f"{path}['network']")
        load_state_dict_strict(synchformer, state.modules["synchformer"],
                               what=f"{path}['synchformer']")
        try:
            changed = load_optimizer_state(self.optimizer, self.scheduler, state.optimizer,
                                           state.scheduler)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            # The layout was checked when the file was read; what torch still refuses is
            # content that does not fit these parameter groups (sizes, kinds).
            raise UserInputError(f"malformed training state: its optimiser or scheduler "
                                 f"state does not fit this run: {err}", path) from None
        changed = config_changes(state.config, dataclasses.asdict(self.cfg)) + changed
        if changed:
            # Not refused: a resume may change settings on purpose (a lower rate after a loss
            # spike); but the run is then no longer the one the state began.
            log.warning("%s: this run's settings differ from the state's; training goes on "
                        "from step %d with this run's: %s", path, state.step, "; ".join(changed))
        self.step, self.epoch = state.step, state.epoch
        self.batches_in_epoch = state.batches_in_epoch
        self.samples_in_epoch = self._samples_in_epoch(state, path)
        self.failed_total = state.failed_samples
        self._restore_log_window(state.log_window, path)
        generators = {"noise": self.noise, "val_noise": self.val_noise}
        if len(state.rng) == self.info.world_size:
            try:
                RNGState.from_dict(state.rng[self.info.rank]).restore(generators)
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise UserInputError(f"malformed training state: the random generator states "
                                     f"of rank {self.info.rank} cannot be restored: {err}",
                                     path) from None
        else:
            log.warning("%s was written by %d rank(s), this run has %d: random streams are "
                        "re-seeded (the run continues, but not bit for bit)", path,
                        len(state.rng), self.info.world_size)
        if self.ema is not None:
            if state.ema:
                self.ema.load_state_dict(state.ema)
            else:
                # Counted from the trainer's step, not 0: snapshots are named by the EMA's
                # count and the synthesis reads those names as training steps. Its first
                # update copies the weights of this step.
                for ema_model in self.ema.ema_models:
                    ema_model.step.fill_(self.step)
                log.warning("%s has no EMA state (written with the EMA off): the EMA restarts "
                            "at step %d from that step's weights", path, self.step)
        self.last_state = (state.step, path)
        log.info("resumed from %s at step %d (epoch %d, batch %d, sample %d)", path, self.step,
                 self.epoch, self.batches_in_epoch, self.samples_in_epoch)

    def _samples_in_epoch(self, state: TrainingState, path: Path) -> int:
        """Samples of the state's epoch consumed before it; an older state counted batches
        only, which give the samples exactly when this run's global batch size is the
        state's."""
        if state.samples_in_epoch is not None:
            return state.samples_in_epoch
        samples = state.batches_in_epoch * self.cfg.batch_size
        saved = state.config.get("batch_size")
        if saved != self.cfg.batch_size and self.info.is_main:
            log.warning("%s holds no sample count of its epoch (an older state) and was "
                        "written with batch_size %s: epoch %d goes on after %d x %d = %d "
                        "samples, which may repeat or skip some of its samples", path, saved,
                        state.epoch, state.batches_in_epoch, self.cfg.batch_size, samples)
        return samples

    def _restore_log_window(self, windows: list[dict], path: Path) -> None:
        """Put back the loss sums since the last log point, so that the first point logged
        after the resume averages the same steps as every other."""
        world, rank = self.info.world_size, self.info.rank
        if not windows:
            if self.step % self.cfg.log.interval:
                log.warning("%s holds no log window (an older state): the first training "
                            "scalars after step %d average only the steps from there", path,
                            self.step)
            return
        try:
            # With another number of ranks rank 0 takes every window: the logs sum over ranks.
            self.stats.load_windows([windows[rank]] if len(windows) == world
                                    else windows if rank == 0 else [])
        except ValueError as err:
            log.warning("%s: %s; the first training scalars after step %d average only the "
                        "steps from there", path, err, self.step)

    # ------------------------------------------------------------------ the loop

    @property
    def stop_step(self) -> int:
        """Step at which this invocation stops."""
        stop = self.cfg.num_iterations
        if self.cfg.stop_after is not None:
            stop = min(stop, self.cfg.stop_after)
        return stop

    def run(self) -> None:
        """Train until ``stop_after`` or ``num_iterations``, then save, synthesise the EMA and
        run the final evaluations.

        Raises:
            TrainingInterruptedError: Ctrl-C; the message says whether a state was saved.
        """
        cfg = self.cfg
        logger = RunLogger(self.run_dir, self.info.is_main, cfg.num_iterations, self.step)
        stop = self.stop_step
        try:
            with self._ctrl_c_stops_after_the_step():
                while self.step < stop:
                    self.train_loader.sampler.set_position(self.epoch, self.samples_in_epoch)
                    for batch in self.train_loader:
                        trained = self.train_step(batch, self.stats)
                        self.batches_in_epoch += 1
                        self.samples_in_epoch += cfg.batch_size  # over all ranks
                        if trained:
                            self.skipped_in_a_row = 0
                            self.after_step(logger, self.stats)
                        else:
                            self._check_something_loads()
                        if self.step >= stop:
                            break
                    else:
                        self.epoch += 1
                        self.batches_in_epoch = self.samples_in_epoch = 0
                self.finish(logger)
        except _StopRequestedError:
            try:
                if self.last_state is None or self.last_state[0] != self.step:
                    self.save_state()
            except KeyboardInterrupt:  # a second Ctrl-C while saving: the save is abandoned
                raise TrainingInterruptedError(self._interrupt_message(saved_now=False),
                                          self.info.is_main) from None
            raise TrainingInterruptedError(self._interrupt_message(saved_now=True),
                                      self.info.is_main) from None
        except KeyboardInterrupt:
            raise TrainingInterruptedError(self._interrupt_message(saved_now=False),
                                      self.info.is_main) from None
        finally:
            logger.close()

    def _check_something_loads(self) -> None:
        """Count a skipped batch; a whole epoch of them is an error (the same on every rank:
        batches are skipped together)."""
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= len(self.train_loader):
            raise UserInputError(f"a whole epoch ({self.skipped_in_a_row} batches) without a "
                                 f"loadable training sample ({self.failed_total} failed; see the "
                                 "warnings above): check the videos of the training data")

    def _interrupt_message(self, saved_now: bool) -> str:
        if saved_now and self.last_state is not None:
            return (f"interrupted at step {self.step}; saved the training state to "
                    f"{self.last_state[1]} (run the same command again to resume)")
        if self.last_state is None:
            return (f"interrupted at step {self.step}; no training state saved (a rerun "
                    "starts from step 0)")
        step, path = self.last_state
        return (f"interrupted at step {self.step}; no training state saved since step {step} "
                f"({path}; a rerun resumes from there)")

    @contextmanager
    def _ctrl_c_stops_after_the_step(self) -> Iterator[None]:
        """First Ctrl-C or SIGTERM: finish the current step, save a state, stop. Second: stop
        at once. SIGTERM is how schedulers (SLURM, ``timeout``, ``kill``) and torchrun, passing
        on its own, end a job: without this the run would die and lose every step since the
        last periodic state."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        first_at = 0.0

        def stop_at_once(signum: int, frame: object) -> None:
            if time.monotonic() - first_at > SAME_PRESS_SECONDS:
                signal.default_int_handler(signum, frame)

        def request_stop(signum: int, frame: object) -> None:
            nonlocal first_at
            first_at = time.monotonic()
            self._interrupted = True
            for stop_signal in STOP_SIGNALS:
                signal.signal(stop_signal, stop_at_once)
            if self.info.is_main:
                name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
                log.warning("%s: stopping after the current step and saving a training "
                            "state (Ctrl-C again stops at once, without saving)", name)

        for signum in STOP_SIGNALS:
            signal.signal(signum, request_stop)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def train_step(self, batch: dict, stats: LossStats) -> bool:
        """One optimiser step on a batch; False when a rank had no usable sample (skipped).

        Args:
            batch: a collated batch (``failed``/``size`` from the counting collate).
            stats: where the step's losses are recorded.

        Raises:
            _StopRequestedError: Ctrl-C reached some rank; every rank stops here, before the step.
        """
        # One collective per step carries the empty-batch, failure and Ctrl-C counts, so all
        # ranks skip a batch together and stop at the same step.
        counts = torch.tensor([float(batch["size"] == 0), float(batch["failed"]),
                               float(self._interrupted)], dtype=torch.float64,
                              device=self.device)
        if torch_dist.is_initialized():
            torch_dist.all_reduce(counts)
        empty_ranks, failed, stop = (int(v) for v in counts.tolist())
        if stop:
            raise _StopRequestedError
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
        self.lr = self.optimizer.param_groups[0]["lr"]
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
        # Not flushed at stop_after: the state saved there carries the window on.
        if step % cfg.log.interval == 0 or step == cfg.num_iterations:
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
        if (cfg.log.eval_interval and step % cfg.log.eval_interval == 0
                and step < cfg.num_iterations):  # the last step is evaluated by finish()
            self.evaluate(logger, cfg.eval.during)
        if step % cfg.checkpoint.weights_interval == 0:
            self.save_weights()
        if step % cfg.checkpoint.state_interval == 0 or step == self.stop_step:
            self.save_state()

    def finish(self, logger: RunLogger) -> None:
        """End of this invocation: final weights and state; after the last step of the run,
        the EMA synthesis and the final evaluations (``eval.during`` and ``eval.after``)."""
        if self.step % self.cfg.checkpoint.weights_interval:
            self.save_weights()
        complete = self.step >= self.cfg.num_iterations
        if complete and self.ema is not None:
            self.ema.checkpoint()  # the last snapshot anchors the synthesis at the final step
            synthesize(self.run_dir, self.cfg.ema.output_sigma_rel, overwrite=True)
        dist.barrier()
        if complete:
            self.evaluate(logger, [*self.cfg.eval.during, *self.cfg.eval.after], final=True)
        if self.info.is_main:
            log.info("stopped at step %d; %d sample(s) failed to load in total", self.step,
                     self.failed_total)

    # ------------------------------------------------------------------ periodic work

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation loss with the training loss function and a reset noise generator (no
        ``loss`` when no validation sample loaded); only with ``log.val_interval`` > 0 (the
        ``val`` split is not read otherwise)."""
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
        if not values["samples"]:
            # Logged as a point, a missing loss would read as a real one.
            del values["loss"]
            if self.info.is_main:
                log.warning("step %d: no validation loss: no validation sample loaded "
                            "(%d failed)", self.step, int(values["failed"]))
        elif self.info.is_main:
            log.info("step %d: validation loss %.4f over %d samples", self.step,
                     values["loss"], int(values["samples"]))
        return values

    def evaluate(self, logger: RunLogger, names: Sequence[str], final: bool = False) -> None:
        """Evaluate splits at the current step (see :mod:`saganet.training.evaluation`).

        Args:
            logger: receives the metrics as ``eval/<split>/<metric>``.
            names: the splits.
            final: the evaluation after the last step (with EMA: the synthesised weights).
        """
        if self.evaluator is None or not names:
            return
        weights, label = None, "current"
        if self.cfg.ema.enabled and self.evaluator.pending(self.step, names):
            weights, label = self._ema_weights(final)
        weights_file = None
        if final:  # written by finish() before the evaluation
            weights_file = self.run_dir / (f"{self.cfg.exp_name}_ema_final.pth"
                                           if self.cfg.ema.enabled
                                           else f"{self.cfg.exp_name}_last.pth")
        results = self.evaluator.evaluate(self.step, names, self.core.network,
                                          self.core.synchformer, weights, label, weights_file)
        for name, values in results.items():
            logger.scalars(f"eval/{name}", values, self.step)

    def _ema_weights(self, final: bool) -> tuple[dict[str, torch.Tensor], str]:
        """The EMA of the trainable tensors on every rank, by view name, and what it is."""
        network, synchformer = self.core.network, self.core.synchformer
        live = {encode_name(prefix, name): param
                for prefix, module in (("network", network), ("synchformer", synchformer))
                for name, param in module.named_parameters() if param.requires_grad}
        sigma_rel = self.cfg.ema.output_sigma_rel
        if final:
            # Written by rank 0 before the barrier in finish(); every rank reads the file.
            path = self.run_dir / f"{self.cfg.exp_name}_ema_final.pth"
            return (weights_file_parameters(path, live),
                    f"EMA synthesised at sigma_rel {sigma_rel} ({path.name})")
        values = None
        if self.ema is not None:
            values, sigma_rel = tracked_ema_parameters(self.ema, self.cfg.ema.sigma_rels,
                                                       sigma_rel)
        sigma_rel = dist.broadcast_object(sigma_rel)
        return (broadcast_parameters(values, live, self.device),
                f"EMA tracked at sigma_rel {sigma_rel}")

    def save_weights(self) -> None:
        """``<run_dir>/<exp_name>_last.pth`` in the published layout (rank 0)."""
        if self.info.is_main:
            path = self.run_dir / f"{self.cfg.exp_name}_last.pth"
            save_weights_file(self.models.weights_file(), path)
            log.info("step %d: weights -> %s", self.step, path)

    def save_state(self) -> None:
        """A full training state with every rank's generator states (written by rank 0)."""
        rng = RNGState.capture({"noise": self.noise, "val_noise": self.val_noise}).to_dict()
        mine = {"rng": rng, "log_window": self.stats.state_dict()}
        if torch_dist.is_initialized():
            gathered: list = [None] * self.info.world_size
            torch_dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        if self.info.is_main:
            network, synchformer = self.models.network, self.models.synchformer
            state = TrainingState(
                step=self.step,
                modules={"network": raw_state_dict(network),
                         "synchformer": synchformer.state_dict()},
                trainable=self.trainable, optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(), epoch=self.epoch,
                batches_in_epoch=self.batches_in_epoch, samples_in_epoch=self.samples_in_epoch,
                rng=[rank["rng"] for rank in gathered],
                log_window=[rank["log_window"] for rank in gathered],
                ema=self.ema.state_dict() if self.ema is not None else {},
                failed_samples=self.failed_total, config=dataclasses.asdict(self.cfg))
            path = save_state(state, self.run_dir, self.cfg.checkpoint.keep_last)
            log.info("step %d: training state -> %s", self.step, path)
        # Every rank knows the latest state (an interrupted run decides together to save).
        self.last_state = (self.step, dist.broadcast_object(path if self.info.is_main else None))


def drop_recorded_steps(ids_file: Path, first: int) -> None:
    """Remove the rows of steps ``first`` and later from a sample-id audit file.

    Args:
        ids_file: ``<step>\t<sample id>`` lines, as the trainer appends them.
        first: the first step to drop (the step training resumes at; 0 for a fresh run).
    """
    lines = ids_file.read_text().splitlines(keepends=True)
    kept = [line for line in lines if int(line.split("\t", 1)[0]) < first]
    if len(kept) < len(lines):
        with atomic_output(ids_file, overwrite=True, suffix=".tsv") as tmp:
            tmp.write_text("".join(kept))
        log.info("%s: dropped %d row(s) of steps from %d, which run again", ids_file,
                 len(lines) - len(kept), first)


def fit(cfg: TrainConfig) -> Path:
    """Run (or resume) training as configured; returns the run directory.

    Works in a single process and under ``torchrun`` (one process per device).

    Args:
        cfg: the validated configuration (see :func:`saganet.training.config.from_hydra`).
    """
    # The config's key, as train.py's command line overrides it.
    info = dist.init(cfg.device, use_cpu="device=cpu")
    if not info.is_main:
        # Rank-0 logging: other ranks report only warnings and errors.
        logging.getLogger().setLevel(logging.WARNING)
    try:
        Trainer(cfg, info).run()
    finally:
        dist.cleanup()
    return Path(cfg.run_dir)
