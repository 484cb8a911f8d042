"""Sharded resumable sampling, and the synthetic debug dataset."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from saganet.data.sms_dataset import SampleShapes
from saganet.data.synthetic import SyntheticClips
from saganet.errors import UserInputError
from saganet.features.focal_crop import focal_crop
from saganet.training.config import DataSetup
from saganet.training.data import (
    ResumableDistributedSampler,
    build_datasets,
    build_loader,
    build_split,
)

SHAPES = SampleShapes(latent_len=6, latent_dim=3, clip_len=4, clip_dim=5, text_len=7, text_dim=5,
                      sync_frames=16, frame_size=224)


def test_ranks_get_disjoint_shards_covering_the_epoch():
    data = list(range(23))
    shards = [list(ResumableDistributedSampler(data, 2, r, seed=3, drop_last=True))
              for r in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert len(shards[0]) == len(shards[1]) == 11
    shards[0].sort()
    assert shards[0] != list(range(0, 22, 2))  # shuffled, not strided


@pytest.mark.parametrize("shuffle", [False, True])
def test_validation_shards_hold_every_sample_exactly_once(shuffle):
    data = [{"id": str(i)} for i in range(11)]
    for world in (2, 3, 4):  # 11 samples divide evenly over none of them
        seen = []
        for rank in range(world):
            loader = build_loader(data, batch_size=2, rank=rank, world_size=world,
                                  shuffle=shuffle, drop_last=False, seed=5, num_workers=0,
                                  pin_memory=False)
            ids = [i for batch in loader for i in batch["id"]]
            assert len(ids) == len(loader.sampler)
            seen += ids
        assert sorted(seen) == sorted(d["id"] for d in data), world


def test_resume_in_the_middle_of_an_epoch():
    data = list(range(20))
    sampler = ResumableDistributedSampler(data, 2, 1, seed=7)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_position(4, 6 * 2)  # six samples of each of the two ranks
    assert len(sampler) == len(full) - 6
    assert list(sampler) == full[6:]
    assert list(sampler) == full  # the offset applies to one pass only
    sampler.set_epoch(5)
    assert list(sampler) != full


def test_loader_batches_follow_the_sampler():
    loader = build_loader(list(range(10)), batch_size=2, rank=0, world_size=1, shuffle=True,
                          drop_last=True, seed=0, num_workers=0, pin_memory=False)
    loader.collate_fn = lambda items: items  # plain ints: look at the order only
    loader.sampler.set_position(0, 0)
    first = list(loader)
    loader.sampler.set_position(0, 4)
    assert list(loader) == first[2:]


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize(("world", "batch", "new_world", "new_batch"),
                         [(2, 2, 2, 2), (2, 2, 3, 1), (1, 4, 2, 3), (3, 1, 1, 2)])
def test_an_epoch_resumed_with_other_ranks_or_batches_sees_the_samples_left(
        drop_last, world, batch, new_world, new_batch):
    """After some steps with one sharding, a resume with another continues the epoch's order
    where the ranks together stopped: no sample twice, none skipped but the cut tail."""
    data = list(range(29))

    def shards(ranks: int, skip: int) -> list[list[int]]:
        samplers = [ResumableDistributedSampler(data, ranks, r, seed=11, drop_last=drop_last)
                    for r in range(ranks)]
        for sampler in samplers:
            sampler.set_position(3, skip)
        return [list(sampler) for sampler in samplers]

    steps = 3
    before = shards(world, 0)
    seen = [i for step in range(steps) for shard in before
            for i in shard[step * batch:(step + 1) * batch]]
    after = shards(new_world, steps * world * batch)
    left = len(data) - len(seen)
    assert [len(s) for s in after] == [left // new_world if drop_last
                                       else len(range(r, left, new_world))
                                       for r in range(new_world)]
    rest = [i for s in after for i in s]
    assert not set(seen) & set(rest) and len(set(rest)) == len(rest)
    # The ranks still take the epoch's order round-robin: what is left of it, in turn.
    order = shards(1, 0)[0]
    assert sorted(seen + rest, key=order.index) == order[:len(seen) + len(rest)]
    assert len(order) - len(seen) - len(rest) == (left % new_world if drop_last else 0)


def test_synthetic_samples_are_deterministic_with_shapes():
    ds = SyntheticClips(8, SHAPES, seed=1)
    a, b = ds[3], SyntheticClips(8, SHAPES, seed=1)[3]
    for key in ("a_mean", "clip_features", "text_features", "sync_video", "mask_video"):
        assert torch.equal(a[key], b[key]), key
    assert a["a_mean"].shape == (6, 3) and a["a_std"].shape == (6, 3)
    assert a["clip_features"].shape == (4, 5) and a["text_features"].shape == (7, 5)
    assert a["sync_video"].shape == (16, 3, 224, 224) and a["sync_video"].dtype == torch.uint8
    assert a["mask_video"].shape == (16, 1, 224, 224)
    detail, mask_detail = focal_crop(a["sync_video"][None], a["mask_video"][None])
    assert torch.equal(a["sync_detail_video"], detail[0])
    assert torch.equal(a["mask_detail_video"], mask_detail[0])


def test_synthetic_conditions_predict_the_latent():
    ds = SyntheticClips(8, SHAPES, seed=0, num_classes=4)
    first, same_class, other_class = ds[0], ds[4], ds[1]
    assert ((first["a_mean"] - same_class["a_mean"]).abs().mean()
            < 0.5 * (first["a_mean"] - other_class["a_mean"]).abs().mean())
    assert not torch.equal(first["clip_features"], same_class["clip_features"])  # noise
    assert torch.equal(first["sync_video"], same_class["sync_video"])
    assert not torch.equal(first["sync_video"], other_class["sync_video"])
    assert not torch.equal(first["mask_video"], other_class["mask_video"])


def test_synthetic_latent_stats_match_the_samples():
    ds = SyntheticClips(64, SHAPES, seed=2)
    latents = torch.stack([ds.features(i)["a_mean"] for i in range(64)]).reshape(-1, 3)
    mean, std = ds.latent_stats()
    assert torch.allclose(mean, latents.mean(0), atol=0.05)
    assert torch.allclose(std, latents.std(0), atol=0.05)


def test_synthetic_splits_do_not_share_samples():
    setup = DataSetup(kind="synthetic", synthetic_train_size=4, synthetic_val_size=2,
                      synthetic_test_size=3, num_workers=0)
    train, val = build_datasets(setup, SHAPES, 1.0, seed=0)
    test = build_split(setup, "test", SHAPES, 1.0, seed=0)
    ids = [{split[i]["id"] for i in range(len(split))} for split in (train, val, test)]
    assert [len(i) for i in ids] == [4, 2, 3]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert [test.sample_id(i) for i in range(3)] == [test[i]["id"] for i in range(3)]


def test_a_split_the_data_does_not_configure_is_a_user_error():
    setup = DataSetup(kind="sms", num_workers=0)
    with pytest.raises(UserInputError, match="no test split"):
        build_split(setup, "test", SHAPES, 1.0, seed=0)
    with pytest.raises(UserInputError, match="unknown split"):
        build_split(setup, "holdout", SHAPES, 1.0, seed=0)


class _WorkerPids(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        return os.getpid()


def test_loader_workers_outlive_sigterm_until_the_step_is_saved():
    """Schedulers (SLURM) send SIGTERM to every process of the job, the loader workers too:
    the trainer stops after the step and saves, which needs its workers alive until then."""
    loader = build_loader(_WorkerPids(), batch_size=1, rank=0, world_size=1, shuffle=False,
                          drop_last=False, seed=0, num_workers=1, pin_memory=False)
    loader.collate_fn = lambda items: items  # plain ints: which process loaded them
    batches = iter(loader)
    worker = next(batches)[0]
    assert worker != os.getpid()
    for signum in (signal.SIGINT, signal.SIGTERM):
        os.kill(worker, signum)
    time.sleep(0.5)  # a worker that dies of it is gone by now
    assert [b[0] for b in batches] == [worker] * (len(loader) - 1)
