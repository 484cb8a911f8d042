"""Data loading for training: datasets from config, resumable sharded sampling, counting collate.

* :func:`build_datasets` turns the data config into train/validation datasets (validation only
  when the run validates).
* :class:`ResumableDistributedSampler` shards by GLOBAL rank (every rank sees a disjoint part of
  each epoch) and can start an epoch part-way through, so a resumed run continues with exactly
  the samples it would have seen, also with another batch size or number of ranks.
* :class:`CountingCollate` drops samples that failed to load (datasets return None) and reports
  how many it dropped in the batch (``batch["failed"]``), so the loop can log and sum them.
"""

from __future__ import annotations

import logging
import random
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from saganet.data.sms_dataset import LAYOUTS, SampleShapes, SMSDataset
from saganet.data.synthetic import SyntheticClips
from saganet.errors import UserInputError
from saganet.runtime import loader_worker_start, loader_workers
from saganet.training.config import DataSetup, SplitConfig

log = logging.getLogger(__name__)

# Offsets of the synthetic splits' indices: keep their samples apart from each other.
SYNTHETIC_OFFSETS = {"train": 0, "val": 1_000_000, "test": 2_000_000}


def build_split(cfg: DataSetup, name: str, shapes: SampleShapes, duration: float,
                seed: int) -> Dataset:
    """One split (``train``, ``val`` or ``test``) of the configured data.

    Args:
        cfg: which data and where it lives.
        name: the split.
        shapes: the sample shapes the model needs.
        duration: clip length in seconds.
        seed: seed of the synthetic data (ignored by real datasets).

    Raises:
        UserInputError: unknown kind or split, a split the data does not configure, or files
            that are missing or malformed.
    """
    if name not in SYNTHETIC_OFFSETS:
        raise UserInputError(f"unknown split {name!r}; choose one of "
                             + ", ".join(SYNTHETIC_OFFSETS))
    if cfg.kind == "synthetic":
        size = getattr(cfg, f"synthetic_{name}_size")
        return SyntheticClips(size, shapes, seed=seed, offset=SYNTHETIC_OFFSETS[name])
    if cfg.kind not in LAYOUTS:
        raise UserInputError(f"unknown data kind {cfg.kind!r}; choose sms, urmp or synthetic")
    split: SplitConfig | None = getattr(cfg, name)
    if split is None:
        raise UserInputError(f"the {cfg.kind} data has no {name} split (set data.{name}.root, "
                             f".tsv and .memmap_dir)")
    layout = split.layout or cfg.kind
    return SMSDataset(split.root, split.tsv, split.memmap_dir, shapes, layout=layout,
                      duration=duration)


def build_datasets(cfg: DataSetup, shapes: SampleShapes, duration: float, seed: int, *,
                   validate: bool = True) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets (:func:`build_split` of ``train`` and ``val``).

    Args:
        cfg: which data and where it lives.
        shapes: the sample shapes the model needs.
        duration: clip length in seconds.
        seed: seed of the synthetic data (ignored by real datasets).
        validate: the run computes validation losses; without it no ``val`` split is read
            (None in its place), so data without one trains.
    """
    train = build_split(cfg, "train", shapes, duration, seed)
    return train, build_split(cfg, "val", shapes, duration, seed) if validate else None


class CountingCollate:
    """``default_collate`` over the samples that loaded; the batch says how many did not.

    The batch dict gains ``failed`` (int, samples dropped) and ``size`` (int, samples kept);
    when every sample failed it holds only those two entries.
    """

    def __call__(self, samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        kept = [s for s in samples if s is not None]
        failed = len(samples) - len(kept)
        batch: dict[str, Any] = default_collate(kept) if kept else {}
        batch["failed"] = failed
        batch["size"] = len(kept)
        return batch


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that can skip the first samples of an epoch.

    An epoch's order (shuffled by ``seed + epoch``) does not depend on the number of ranks, and
    rank ``r`` of ``W`` takes positions ``r, r + W, ...`` of it: after every step the ranks
    together have consumed a prefix of that order. Skipping that prefix and sharding the rest
    continues the epoch exactly, whatever the number of ranks and the batch size of the run
    that resumes it.

    Without ``drop_last`` every sample is in exactly one rank's shard, and shards may differ
    in length by one: ``DistributedSampler`` would pad the last round with repeated samples,
    which validation would count twice.

    Args:
        dataset: the dataset.
        num_replicas: world size.
        rank: GLOBAL rank of this process.
        shuffle: shuffle per epoch (seeded by ``seed + epoch``, identical on every rank).
        seed: shuffle seed.
        drop_last: drop the tail that does not divide evenly over ranks.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=drop_last)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        """Start ``epoch`` after its first ``skip`` samples (applies to the next iteration only).

        Args:
            epoch: the epoch (selects the shuffle).
            skip: samples of the epoch's order already consumed, by all ranks together.
        """
        self.set_epoch(epoch)
        self.skip = skip

    def _rest(self) -> int:
        """Samples of the epoch's order after the skipped ones that are shared out (with
        ``drop_last`` the tail that does not divide over the ranks is cut, never padded)."""
        rest = max(len(self.dataset) - self.skip, 0)
        return rest - rest % self.num_replicas if self.drop_last else rest

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.dataset), generator=generator).tolist()
        else:
            order = list(range(len(self.dataset)))
        rest = order[self.skip:self.skip + self._rest()]
        self.skip = 0
        return iter(rest[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, self._rest(), self.num_replicas))


def _seed_worker(worker_id: int) -> None:
    loader_worker_start(worker_id)
    # Ctrl-C reaches the whole process group, and schedulers (SLURM) send SIGTERM to every
    # process of the job; the trainer stops at the end of the step and saves, which needs its
    # loader workers alive until then. Ignoring SIGTERM costs nothing at shutdown: the loader
    # ends its workers through their queues, the kernel kills a worker whose parent is gone
    # (loader_worker_start), and SIGKILL (torchrun's and SLURM's last word) still ends them.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # numpy/random in workers follow the per-worker torch seed (which DataLoader derives from
    # its own generator), so any augmentation randomness is reproducible.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(dataset: Dataset, *, batch_size: int, rank: int, world_size: int,
                 shuffle: bool, drop_last: bool, seed: int, num_workers: int,
                 pin_memory: bool) -> DataLoader:
    """A DataLoader over this rank's shard with the counting collate.

    Args:
        dataset: the dataset.
        batch_size: samples per batch on this rank.
        rank: GLOBAL rank.
        world_size: number of ranks.
        shuffle: shuffle every epoch.
        drop_last: drop incomplete shards/batches (training) or keep them (validation).
        seed: shuffle seed, plus the seed of the loader's worker seeds (rank added).
        num_workers: worker processes.
        pin_memory: pinned host memory.
    """
    sampler = ResumableDistributedSampler(dataset, world_size, rank, shuffle=shuffle, seed=seed,
                                          drop_last=drop_last)
    num_workers = loader_workers(num_workers)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=drop_last, collate_fn=CountingCollate(),
                      worker_init_fn=_seed_worker, persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(seed + rank))
