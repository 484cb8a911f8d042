"""SMS/URMP datasets over precomputed features: join by id, on-the-fly focal crops, failures."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from saganet.data.sms_dataset import (
    MEMMAP_IDS_FILE,
    MEMMAP_META_FILE,
    ClipPaths,
    SampleShapes,
    SMSDataset,
    open_feature_memmap,
    read_memmap_ids,
    sms_paths,
    urmp_paths,
    write_memmap_ids,
)
from saganet.errors import UserInputError
from saganet.features.focal_crop import focal_crop
from saganet.training.data import CountingCollate
from tests.videos import write_video as encode_video

SHAPES = SampleShapes(latent_len=4, latent_dim=2, clip_len=3, clip_dim=5, text_len=6, text_dim=5,
                      sync_frames=25, frame_size=224)
IDS = {"a": "solos/violin/a_0_1000", "b": "solos/cello/b_0_1000", "c": "music21/tuba/c_0_1000",
       "d": "solos/flute/d_0_1000", "e": "solos/horn/e_0_1000"}


def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """Encode uint8 RGB frames ``(T, H, W, 3)`` as a lossless H.264 mp4."""
    encode_video(path, frames, fps, options={"crf": "0"})


def clip_frames(seed: int, t: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (t, 6, 8, 3), dtype=np.uint8)
    return coarse.repeat(8, axis=1).repeat(8, axis=2)  # (T, 48, 64, 3)


def mask_frames(t: int = 30) -> np.ndarray:
    mask = np.zeros((t, 48, 64, 3), dtype=np.uint8)
    mask[:, 10:30, 20:44] = 255
    return mask


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sms")
    data, memmap = root / "data", root / "memmap"
    # Features: memmap rows in an order that differs from the metadata; every row's values
    # say which sample it belongs to.
    rows = [IDS["c"], IDS["b"], IDS["e"], IDS["a"]]
    n = len(rows)
    code = torch.tensor([float(list(IDS.values()).index(i)) for i in rows])
    TensorDict({
        "mean": code.view(n, 1, 1).expand(n, 4, 2).clone(),
        "std": torch.ones(n, 4, 2),
        "clip_features": code.view(n, 1, 1).expand(n, 3, 5).clone(),
        "text_features": torch.zeros(n, 6, 5),
    }, batch_size=[n]).memmap_(str(memmap))
    write_memmap_ids(memmap, rows)
    # Metadata order a, b, c, d: b has no video, d has no features; e is not listed.
    tsv = root / "sms-train.tsv"
    tsv.write_text("id\tlabel\n" + "".join(f"{IDS[k]}\t{k}-label\n" for k in "abcd"))
    for key, seed in (("a", 1), ("c", 2)):
        paths = sms_paths(data, IDS[key])
        write_video(paths.video, clip_frames(seed))
        write_video(paths.mask, mask_frames())
    # Sample a ships precomputed focal crops (solid colours, unlike an on-the-fly crop).
    paths_a = sms_paths(data, IDS["a"])
    write_video(paths_a.detail, np.full((30, 48, 64, 3), 200, dtype=np.uint8))
    write_video(paths_a.mask_detail, np.full((30, 48, 64, 3), 255, dtype=np.uint8))
    # Sample d's video exists (it is skipped for lack of features, not of video).
    write_video(sms_paths(data, IDS["d"]).video, clip_frames(4))
    return {"root": data, "tsv": tsv, "memmap": memmap}


def dataset(split: dict[str, Path], **kwargs) -> SMSDataset:
    return SMSDataset(split["root"], split["tsv"], split["memmap"], SHAPES, duration=1.0,
                      **kwargs)


def test_rows_are_joined_by_id_not_position(split):
    ds = dataset(split)
    assert [s[0] for s in ds.samples] == [IDS["a"], IDS["c"]]
    assert ds.skipped == {"no_video": 1, "no_mask": 0, "no_features": 1}
    for index, key in enumerate("ac"):
        sample = ds[index]
        code = float(list(IDS).index(key))
        assert sample["id"] == IDS[key] and sample["caption"] == f"{key}-label"
        assert torch.all(sample["a_mean"] == code)
        assert torch.all(sample["clip_features"] == code)


def test_videos_and_focal_crops(split):
    ds = dataset(split)
    with_files, on_the_fly = ds[0], ds[1]
    for sample in (with_files, on_the_fly):
        assert sample["sync_video"].shape == (25, 3, 224, 224)
        assert sample["mask_video"].shape == (25, 1, 224, 224)
        assert sample["sync_detail_video"].shape == (25, 3, 224, 224)
        assert sample["mask_detail_video"].shape == (25, 1, 224, 224)
        assert sample["sync_video"].dtype == torch.uint8
    # Precomputed crop files are read as they are (solid grey 200) ...
    assert (with_files["sync_detail_video"].float().mean() - 200).abs() < 2
    # ... otherwise the crop is computed from the decoded frames and masks.
    detail, mask_detail = focal_crop(on_the_fly["sync_video"][None],
                                     on_the_fly["mask_video"][None])
    assert torch.equal(on_the_fly["sync_detail_video"], detail[0])
    assert torch.equal(on_the_fly["mask_detail_video"], mask_detail[0])


def test_failed_sample_is_counted_not_dropped_silently(split, tmp_path, caplog):
    ds = dataset(split)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")

    def paths_with_broken_c(root: Path, sample_id: str) -> ClipPaths:
        if sample_id == IDS["c"]:
            return ClipPaths(broken, broken, broken, broken)
        return sms_paths(root, sample_id)

    ds.paths_of = paths_with_broken_c
    with caplog.at_level(logging.WARNING):
        samples = [ds[0], ds[1]]
    assert samples[1] is None
    assert IDS["c"] in caplog.text
    batch = CountingCollate()(samples)
    assert batch["failed"] == 1 and batch["size"] == 1
    assert batch["id"] == [IDS["a"]]
    empty = CountingCollate()([None, None])
    assert empty == {"failed": 2, "size": 0}


def test_a_clip_whose_mask_is_empty_is_named_by_its_id(split, tmp_path, caplog):
    """A crop computed on the fly from an empty mask warns with the sample's id."""
    ds = dataset(split)
    blank = tmp_path / "blank.mp4"
    write_video(blank, np.zeros_like(mask_frames()))

    def paths_with_empty_mask(root: Path, sample_id: str) -> ClipPaths:
        paths = sms_paths(root, sample_id)
        if sample_id != IDS["c"]:
            return paths
        return ClipPaths(paths.video, blank, paths.detail, paths.mask_detail)

    ds.paths_of = paths_with_empty_mask
    with caplog.at_level(logging.WARNING, logger="saganet.features.focal_crop"):
        sample = ds[1]
    assert sample is not None and sample["id"] == IDS["c"]
    assert f"clip(s) {IDS['c']}:" in caplog.text and "[0]" not in caplog.text


def test_too_short_video_fails(split):
    ds = SMSDataset(split["root"], split["tsv"], split["memmap"],
                    SampleShapes(**{**SHAPES.__dict__, "sync_frames": 40}), duration=2.0)
    assert ds[0] is None


def test_latent_stats_over_used_samples(split):
    mean, std = dataset(split).latent_stats()
    codes = torch.tensor([0.0, 2.0]).repeat_interleave(4)  # a and c, 4 latents each
    assert torch.allclose(mean, codes.mean().expand(2))
    assert torch.allclose(std, codes.std().expand(2))


def test_memmap_problems_are_user_errors(split, tmp_path):
    with pytest.raises(UserInputError, match="clip_features"):
        SMSDataset(split["root"], split["tsv"], split["memmap"],
                   SampleShapes(**{**SHAPES.__dict__, "clip_len": 7}), duration=1.0)
    empty = tmp_path / "memmap"
    empty.mkdir()
    with pytest.raises(UserInputError, match=MEMMAP_IDS_FILE):
        read_memmap_ids(empty)
    with pytest.raises(ValueError, match="unique"):
        write_memmap_ids(empty, ["x", "x"])
    with pytest.raises(UserInputError, match="not found"):
        SMSDataset(split["root"], tmp_path / "none.tsv", split["memmap"], SHAPES, duration=1.0)


@pytest.mark.parametrize("damage", ["truncated", "grown", "no meta", "bad meta"])
def test_damaged_memmap_is_refused_and_left_as_it_is(split, tmp_path, damage):
    """A memmap file of the wrong size, or no readable meta.json, is a user error naming the
    file, and nothing in the folder changes (TensorDict's loader zero-fills a short file)."""
    memmap = tmp_path / "memmap"
    shutil.copytree(split["memmap"], memmap)
    data = memmap / "mean.memmap"
    meta = memmap / MEMMAP_META_FILE
    if damage == "truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "grown":
        data.write_bytes(data.read_bytes() + bytes(4))
    elif damage == "no meta":
        meta.unlink()
    else:
        meta.write_text("{bad")
    before = {f.name: f.read_bytes() for f in memmap.iterdir()}
    named = meta if "meta" in damage else data
    with pytest.raises(UserInputError) as err:
        SMSDataset(split["root"], split["tsv"], memmap, SHAPES, duration=1.0)
    assert err.value.path == str(named) and "\n" not in str(err.value)
    assert {f.name: f.read_bytes() for f in memmap.iterdir()} == before


def test_urmp_paths():
    paths = urmp_paths(Path("/u"), "09_Jesus_tpt_vn/AuSep_2_vn_09_Jesus_159092_164092")
    folder = Path("/u/09_Jesus_tpt_vn")
    assert paths.video == folder / "Vid_09_Jesus_tpt_vn_159092_164092.mp4"
    assert paths.mask == folder / "Masks_2_vn_09_Jesus_159092_164092.mp4"
    assert paths.detail == folder / "Vid_09_Jesus_2_vn_159092_164092_detail.mp4"
    assert paths.mask_detail == folder / "Masks_2_vn_09_Jesus_159092_164092_detail.mp4"
    with pytest.raises(UserInputError):
        urmp_paths(Path("/u"), "piece/short_name")


def test_non_finite_features_fail_the_sample_and_stay_out_of_the_statistics(split, tmp_path,
                                                                             caplog):
    """A NaN latent (or an infinite CLIP feature) would make the whole batch's gradient
    non-finite, its step skipped without naming the clip, and the latent statistics NaN."""
    memmap = tmp_path / "memmap"
    shutil.copytree(split["memmap"], memmap)
    features = TensorDict.load_memmap(memmap)
    row_of = {sample_id: row for row, sample_id in enumerate(read_memmap_ids(memmap))}
    features["mean"][row_of[IDS["c"]], 2, 1] = float("nan")
    ds = SMSDataset(split["root"], split["tsv"], memmap, SHAPES, duration=1.0)
    mean, std = ds.latent_stats()
    assert torch.equal(mean, torch.zeros(2)) and torch.equal(std, torch.zeros(2))  # a alone
    with caplog.at_level(logging.WARNING):
        assert ds[1] is None
    assert IDS["c"] in caplog.text and "non-finite mean" in caplog.text
    features["mean"][row_of[IDS["c"]], 2, 1] = 2.0
    features["clip_features"][row_of[IDS["a"]], 0, 0] = float("inf")
    assert ds[0] is None and ds[1] is not None


def test_an_id_listed_twice_in_the_table_is_a_user_error(split, tmp_path):
    """A repeated row (tables concatenated twice) would train on that clip twice per epoch."""
    tsv = tmp_path / "sms-train.tsv"
    tsv.write_text(split["tsv"].read_text() + f"{IDS['a']}\tother-label\n")
    with pytest.raises(UserInputError, match="listed more than once") as err:
        SMSDataset(split["root"], tsv, split["memmap"], SHAPES, duration=1.0)
    assert err.value.path == str(tsv) and IDS["a"] in str(err.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_memmap_reads_what_tensordict_wrote_and_never_writes_it(tmp_path, dtype):
    """The folder is read without TensorDict (whose import costs every trainer seconds): every
    entry and row as TensorDict's own loader gives them, and a write to a row stays in memory."""
    generator = torch.Generator().manual_seed(0)
    rows = int(torch.randint(2, 6, (), generator=generator))
    written = {"mean": torch.randn(rows, 4, 2, generator=generator).to(dtype),
               "clip_features": torch.randn(rows, 3, 5, generator=generator).to(dtype),
               "empty": torch.zeros(rows, 0, dtype=dtype)}
    folder = tmp_path / "memmap"
    TensorDict(written, batch_size=[rows]).memmap_(str(folder))
    files = {f.name: f.read_bytes() for f in folder.iterdir()}
    features = open_feature_memmap(folder)
    reference = TensorDict.load_memmap(folder)
    assert features.rows == rows and set(features.entries) == set(written)
    assert "mean" in features and "std" not in features
    for key, tensor in written.items():
        assert features[key].dtype == dtype and torch.equal(features[key], reference[key])
        assert torch.equal(features[key], tensor)
    for row in range(rows):
        assert {k: v.tolist() for k, v in features[row].items()} == {
            k: v[row].tolist() for k, v in written.items()}
    features[rows - 1]["mean"].fill_(7)
    assert torch.equal(features["mean"][-1], torch.full_like(written["mean"][-1], 7))
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == files


def test_memmap_nested_entry_is_refused(split, tmp_path):
    memmap = tmp_path / "nested"
    shutil.copytree(split["memmap"], memmap)
    meta_file = memmap / MEMMAP_META_FILE
    meta = json.loads(meta_file.read_text())
    meta["std"]["is_nested"] = True
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UserInputError, match="'std' is a nested") as err:
        open_feature_memmap(memmap)
    assert err.value.path == str(meta_file)


def test_memmap_entries_of_another_length_or_kind_are_refused(split, tmp_path):
    """An entry copied from another extraction (more rows) was read by its first rows and
    paired with the wrong ids; integer "features" were trained on as numbers."""
    longer = tmp_path / "longer"
    TensorDict({"clip_features": torch.zeros(5, 3, 5)}, batch_size=[5]).memmap_(str(longer))
    for damage in ("rows", "dtype"):
        memmap = tmp_path / damage
        shutil.copytree(split["memmap"], memmap)
        meta_file = memmap / MEMMAP_META_FILE
        meta = json.loads(meta_file.read_text())
        if damage == "rows":
            shutil.copy(longer / "clip_features.memmap", memmap / "clip_features.memmap")
            meta["clip_features"]["shape"] = [5, 3, 5]
            match = "'clip_features' has 5 rows, the memmap 4"
        else:
            meta["text_features"]["dtype"] = "torch.int32"
            match = "'text_features' holds torch.int32"
        meta_file.write_text(json.dumps(meta))
        with pytest.raises(UserInputError, match=match) as err:
            SMSDataset(split["root"], split["tsv"], memmap, SHAPES, duration=1.0)
        assert err.value.path == str(meta_file)


def test_a_clip_without_its_mask_file_is_skipped_at_the_start(split, tmp_path, caplog):
    """It failed at every load instead: masks kept elsewhere failed a whole epoch of samples
    before the run stopped."""
    root = tmp_path / "data"
    shutil.copytree(split["root"], root)
    sms_paths(root, IDS["c"]).mask.unlink()
    with caplog.at_level(logging.WARNING):
        ds = SMSDataset(root, split["tsv"], split["memmap"], SHAPES, duration=1.0)
    assert [s[0] for s in ds.samples] == [IDS["a"]]
    assert ds.skipped == {"no_video": 1, "no_mask": 1, "no_features": 1}
    mask = sms_paths(root, IDS["c"]).mask
    assert f"1 metadata row(s) skipped, no mask file (the first: {mask})" in caplog.text
