"""Batch evaluation: URMP/SMS evaluation datasets, sharding, per-clip noise, resume, manifest,
and ``batch_eval.py`` under ``torch.distributed.run`` with two CPU processes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from saganet.errors import UserInputError
from saganet.evaluation.audio import read_audio
from saganet.evaluation.batch_config import (
    BatchEvalConfig,
    EvalDatasetConfig,
    batch_eval_config,
    resolve_variant,
)
from saganet.evaluation.batch_eval import (
    check_manifest,
    clip_seed,
    generation_batch,
    output_paths,
    run_batch_eval,
    shard,
)
from saganet.evaluation.datasets import (
    EvalSample,
    LoadFailure,
    build_eval_dataset,
    read_sms_clips,
    read_urmp_clips,
)
from saganet.features import focal_crop
from saganet.hydra_config import PathsConfig
from saganet.media.video import read_frames
from tests.evaluation.audio_files import tone, write_audio
from tests.shared import ctrl_c_once
from tests.videos import write_video as encode_video

REPO = Path(__file__).resolve().parents[2]
FPS = 25
SIZE = (48, 64)  # (height, width)
DURATION = 1.2
URMP_HEADER = ["video_id", "audio_id", "mask_id", "instrument", "label", "s_ts", "e_ts"]


def write_video(path: Path, seconds: float, seed: int, mask: bool = False) -> Path:
    """A small H.264 video: a box moving over a coloured background (a white box for masks)."""
    rng = np.random.default_rng(seed)
    height, width = SIZE
    background = rng.integers(0, 255, 3) if not mask else np.zeros(3)

    def frames() -> Iterator[np.ndarray]:
        for t in range(round(seconds * FPS)):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = background
            x = (seed * 7 + t) % (width - 16)
            image[10:30, x : x + 16] = 255 if mask else rng.integers(0, 255, 3)
            yield image

    return encode_video(path, frames(), FPS)


def make_urmp(root: Path, clips: int = 3, seconds: float = 1.4) -> Path:
    """A tiny URMP-format set (videos, masks, wav ground truth) and its metadata TSV."""
    rows = ["\t".join(URMP_HEADER)]
    for i in range(clips):
        piece, start, end = f"0{i + 1}_Piece{i}_vn_vc", 1000 * i, 1000 * i + 5000
        video = f"{piece}/Vid_{piece}_{start}_{end}"
        audio = f"{piece}/AuSep_1_vn_0{i + 1}_Piece{i}_{start}_{end}"
        mask = f"{piece}/Masks_1_vn_0{i + 1}_Piece{i}_{start}_{end}"
        write_video(root / f"{video}.mp4", seconds, seed=i)
        write_video(root / f"{mask}.mp4", seconds, seed=i, mask=True)
        write_audio(root / f"{audio}.wav", tone(220.0 * (i + 1), seconds, 16000), 16000)
        rows.append("\t".join([video, audio, mask, "vn", "violin", str(start), str(end)]))
    table = root / "metadata.tsv"
    table.write_text("\n".join(rows) + "\n")
    return table


@pytest.fixture(scope="module")
def debug_weights(tmp_path_factory) -> Path:
    from saganet.debug_weights import write_debug_weights

    folder = tmp_path_factory.mktemp("debug_weights")
    write_debug_weights(folder)
    return folder


@pytest.fixture(scope="module")
def urmp(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("urmp")
    return root, make_urmp(root)


def paths(weights: Path | None = None) -> PathsConfig:
    return PathsConfig(data_dir="data", output_dir="output",
                       weights_dir=None if weights is None else str(weights))


def config(root: Path, table: Path, run_dir: Path, weights: Path, name: str = "urmp",
           **overrides) -> BatchEvalConfig:
    values = dict(dataset=EvalDatasetConfig(name=name, root=str(root), metadata=str(table)),
                  paths=paths(weights), model="debug", run_dir=str(run_dir), duration=DURATION,
                  batch_size=2, num_workers=0, num_steps=2, amp=False, device="cpu")
    return BatchEvalConfig(**{**values, **overrides})


# ----------------------------------------------------------------------------------------------
# Datasets


def test_urmp_reads_columns_by_name_in_any_order(tmp_path):
    table = tmp_path / "meta.tsv"
    (tmp_path / "p").mkdir()
    for name in ("v.mp4", "m.mp4", "a.wav"):
        (tmp_path / "p" / name).write_bytes(b"x")
    table.write_text("label\tmask_id\tvideo_id\taudio_id\ts_ts\te_ts\n"
                     "cello\tp/m\tp/v\tp/a\t0\t5000\n")
    clips, missing = read_urmp_clips(tmp_path, table)
    assert not missing
    (clip,) = clips
    assert (clip.id, clip.caption) == ("a", "cello")
    assert (clip.video, clip.mask, clip.ground_truth) == (
        tmp_path / "p/v.mp4", tmp_path / "p/m.mp4", tmp_path / "p/a.wav")


def test_urmp_header_must_name_the_columns(tmp_path):
    table = tmp_path / "meta.tsv"
    table.write_text("a\tb\tc\td\te\tf\tg\np/v\tp/a\tp/m\tvn\tviolin\t0\t5000\n")
    with pytest.raises(UserInputError, match=r"lacks column.*video_id, audio_id, mask_id, label"):
        read_urmp_clips(tmp_path, table)


def test_urmp_missing_files_are_reported(tmp_path):
    table = tmp_path / "meta.tsv"
    piece = tmp_path / "01_Song_vn_vc"
    piece.mkdir()
    for name in ("v.mp4", "m.mp4"):
        (piece / name).write_bytes(b"x")
    table.write_text(
        "\t".join(URMP_HEADER) + "\n"
        "01_Song_vn_vc/v\t01_Song_vn_vc/AuSep_2_vc_01_Song_0_5000\t01_Song_vn_vc/m\tvc\tcello"
        "\t0\t5000\n"
        "01_Song_vn_vc/gone\t01_Song_vn_vc/AuSep_1_vn_01_Song_0_5000\t01_Song_vn_vc/m\tvn\t"
        "violin\t0\t5000\n")
    clips, missing = read_urmp_clips(tmp_path, table)
    assert [c.id for c in clips] == ["AuSep_2_vc_01_Song_0_5000"]
    assert clips[0].caption == "cello"
    assert clips[0].ground_truth is None  # no wav: generated, but reported as unscorable
    assert clips[0].detail == piece / "Vid_01_Song_2_vc_0_5000_detail.mp4"
    assert clips[0].mask_detail == piece / "m_detail.mp4"
    assert [m.id for m in missing] == ["AuSep_1_vn_01_Song_0_5000"]
    assert "gone.mp4" in missing[0].reason


def test_sms_layout_and_duplicate_ids(tmp_path):
    for clip_id in ("solos/violin/abc_0_5000", "music21/cello/abc_0_5000"):
        stem = Path(clip_id).name
        (tmp_path / f"{clip_id}.mp4").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{clip_id}.mp4").write_bytes(b"x")
        (tmp_path / clip_id).mkdir(parents=True)
        (tmp_path / clip_id / f"{stem}_mask.mp4").write_bytes(b"x")
    table = tmp_path / "test.csv"
    table.write_text("id,label\nsolos/violin/abc_0_5000,violin\n")
    clips, missing = read_sms_clips(tmp_path, table)
    assert not missing and clips[0].ground_truth == tmp_path / "solos/violin/abc_0_5000.mp4"
    table.write_text("id,label\nsolos/violin/abc_0_5000,violin\nmusic21/cello/abc_0_5000,c\n")
    with pytest.raises(UserInputError, match="unique"):
        build_eval_dataset("sms", tmp_path, table, DURATION)


def test_items_read_full_video_clip_frames_and_report_short_clips(urmp, tmp_path):
    root, table = urmp
    dataset = build_eval_dataset("urmp", root, table, DURATION)
    item = dataset[0]
    assert isinstance(item, EvalSample)
    assert item.clip_frames.shape == (int(8 * DURATION), 3, 384, 384)
    assert item.sync_frames.shape == (int(25 * DURATION), 3, 224, 224)
    assert item.masks.shape == (int(25 * DURATION), 1, 224, 224)
    # CLIP frames come from the full video at 8 fps (not from a focal crop).
    full = read_frames(dataset.clips[0].video, 8, 384)
    assert torch.equal(item.clip_frames, full[: int(8 * DURATION)])
    assert item.detail_frames is None
    too_long = build_eval_dataset("urmp", root, table, duration=3.0)[0]
    assert isinstance(too_long, LoadFailure) and "too short" in too_long.error


def _two_samples_first_with_focal_files(tmp_path: Path) -> tuple[Path, Path, list]:
    """A two-clip URMP set whose first clip has precomputed focal crops; its samples."""
    root = tmp_path / "urmp"
    table = make_urmp(root, clips=2)
    clip = build_eval_dataset("urmp", root, table, DURATION).clips[0]
    write_video(clip.detail, 1.4, seed=5)
    write_video(clip.mask_detail, 1.4, seed=5, mask=True)
    return root, table, [*build_eval_dataset("urmp", root, table, DURATION, detail_files=True)]


def test_precomputed_focal_crops_are_used_when_present(tmp_path):
    root, table, samples = _two_samples_first_with_focal_files(tmp_path)
    assert samples[0].detail_frames is not None and samples[1].detail_frames is None
    assert build_eval_dataset("urmp", root, table, DURATION)[0].detail_frames is None
    batch = generation_batch(samples)
    assert batch.detail_frames.shape == (2, int(25 * DURATION), 3, 224, 224)
    assert torch.equal(batch.detail_masks[0], samples[0].detail_masks.float() / 255)
    # The clip without files gets the crop generate() would have computed.
    crop, crop_masks = focal_crop(batch.sync_frames[1:], batch.masks[1:])
    assert torch.equal(batch.detail_frames[1], crop[0])
    assert torch.equal(batch.detail_masks[1], crop_masks[0])
    assert batch.texts == ["violin", "violin"] and batch.negative_texts is None
    assert batch.names == [sample.clip.id for sample in samples]


def test_a_clip_whose_mask_is_empty_is_named_by_its_id(tmp_path, caplog):
    """The empty-mask warning of a crop computed for a batch names the clip's id, where
    generation_batch crops and, through the batch's names, where generate() does."""
    samples = _two_samples_first_with_focal_files(tmp_path)[2]
    blank = dataclasses.replace(samples[1], masks=torch.zeros_like(samples[1].masks))
    with caplog.at_level(logging.WARNING, logger="saganet.features.focal_crop"):
        batch = generation_batch([samples[0], blank])
    assert f"clip(s) {blank.clip.id}:" in caplog.text and "[0]" not in caplog.text
    assert batch.names == [samples[0].clip.id, blank.clip.id]


# ----------------------------------------------------------------------------------------------
# Library pieces


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_cover_every_clip_exactly_once(world):
    items = list(range(7))
    shards = [shard(items, rank, world) for rank in range(world)]
    assert sorted(i for s in shards for i in s) == items


def test_clip_seed_is_stable_and_distinct():
    assert clip_seed(1, "a") == clip_seed(1, "a")
    assert len({clip_seed(1, "a"), clip_seed(2, "a"), clip_seed(1, "b")}) == 3
    assert 0 <= clip_seed(14159265, "x") < 2**63


def test_variant_aliases_and_output_paths(tmp_path):
    assert resolve_variant("small_44k_sa") == "saganet_small"
    assert resolve_variant("small_44k_sa_no_lora") == "saganet_small_no_lora"
    assert resolve_variant("debug") == "debug"
    with pytest.raises(UserInputError, match="saganet_small"):
        resolve_variant("large")
    assert output_paths(tmp_path, "piece/clip.a", video=True) == [
        tmp_path / "piece" / "clip.a.flac", tmp_path / "piece" / "clip.a.mp4"]


def test_output_folder_name_and_settings_check(tmp_path):
    cfg = BatchEvalConfig(dataset=EvalDatasetConfig(name="urmp", root="r", metadata="m"),
                          paths=paths(), run_dir=str(tmp_path), output_name="lora")
    assert cfg.output_dir == tmp_path / "urmp-lora"
    manifest = tmp_path / "manifest.json"
    settings = cfg.result_settings(torch.device("cpu"))
    assert settings["amp"] is False  # autocast is CUDA-only: the CPU result is fp32
    manifest.write_text(json.dumps({"settings": settings, "weights": "debug"}))
    check_manifest(manifest, settings, "debug")
    with pytest.raises(UserInputError, match="cfg_strength"):
        check_manifest(manifest, {**settings, "cfg_strength": 7.0}, "debug")
    with pytest.raises(UserInputError, match="weights"):
        check_manifest(manifest, settings, {"checkpoint": {"md5": "0"}})
    # Clips are reused by id: other videos under the same dataset name are refused, another
    # spelling of the same folder is not.
    assert settings["dataset_root"] == str((Path.cwd() / cfg.dataset.root).resolve())
    elsewhere = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset,
                                                                     root=str(tmp_path)))
    with pytest.raises(UserInputError, match="dataset_root"):
        check_manifest(manifest, elsewhere.result_settings(torch.device("cpu")), "debug")
    respelt = dataclasses.replace(cfg, dataset=dataclasses.replace(
        cfg.dataset, root=f"./{cfg.dataset.root}/../{cfg.dataset.root}"))
    check_manifest(manifest, respelt.result_settings(torch.device("cpu")), "debug")
    # A manifest from before the root was recorded among the settings resumes.
    older = {k: v for k, v in settings.items() if k != "dataset_root"}
    manifest.write_text(json.dumps({"settings": older, "weights": "debug"}))
    check_manifest(manifest, elsewhere.result_settings(torch.device("cpu")), "debug")
    with pytest.raises(UserInputError, match="cfg"):
        batch_eval_config({"dataset": {"name": "urmp", "root": "r", "metadata": "m"},
                           "paths": {"data_dir": "d", "output_dir": "o", "weights_dir": None},
                           "run_dir": "o/eval", "cfg": 1})


@pytest.fixture
def batches(monkeypatch) -> list[int]:
    """Replace generate() by a stand-in whose "audio" is the first draws of each clip's
    generator, so tests see exactly the noise every clip would start from; records batch
    sizes."""
    from saganet.evaluation import batch_eval
    from saganet.inference import GenerationResult

    sizes = []

    def fake_generate(models, batch, *, generator, options):
        sizes.append(len(batch))
        noise = torch.stack([torch.randn(1, 256, generator=g) for g in generator]) * 0.1
        return GenerationResult(noise, torch.zeros(len(batch), 1, 1), 16000)

    monkeypatch.setattr(batch_eval, "generate", fake_generate)
    return sizes


def test_noise_does_not_depend_on_batch_composition(urmp, debug_weights, tmp_path, batches):
    root, table = urmp
    runs = {size: run_batch_eval(config(root, table, tmp_path / str(size), debug_weights,
                                        batch_size=size, seed=7, ground_truth=False),
                                 _single_process())
            for size in (1, 3)}
    assert batches == [1, 1, 1, 3]
    assert runs[1].written == runs[3].written and len(runs[1].written) == 3
    audio = {size: [read_audio(run.output_dir / f"{i}.flac")[0] for i in run.written]
             for size, run in runs.items()}
    for a, b in zip(audio[1], audio[3], strict=True):
        np.testing.assert_array_equal(a, b)
    expected = torch.randn(1, 256, generator=torch.Generator().manual_seed(
        clip_seed(7, runs[1].written[0]))) * 0.1
    np.testing.assert_allclose(audio[1][0], expected.numpy(), atol=1e-6)
    assert np.abs(audio[1][0] - audio[1][1]).max() > 0.01


def test_compiled_runs_fill_short_batches_without_changing_a_clip(urmp, debug_weights, tmp_path,
                                                                  batches):
    root, table = urmp
    clips = len(table.read_text().splitlines()) - 1  # after the header
    size = clips - 1  # so that the last batch is short
    runs = {compile: run_batch_eval(config(root, table, tmp_path / str(compile), debug_weights,
                                           batch_size=size, seed=7, ground_truth=False,
                                           compile=compile), _single_process())
            for compile in (False, True)}
    short = clips - size
    assert batches == [size, short, size, size]  # one compilation, one batch size
    assert runs[True].written == runs[False].written and len(runs[True].written) == clips
    for clip_id in runs[True].written:
        np.testing.assert_array_equal(*(read_audio(run.output_dir / f"{clip_id}.flac")[0]
                                        for run in runs.values()))


def test_debug_checkpoints_do_not_share_a_folder_and_a_missing_one_writes_nothing(
        urmp, debug_weights, tmp_path, batches):
    from saganet.debug_weights import debug_paths, write_debug_weights

    root, table = urmp
    other = tmp_path / "other_weights"
    write_debug_weights(other, seed=1)
    checkpoints = [debug_paths(folder)["checkpoint"] for folder in (debug_weights, other)]
    first = run_batch_eval(config(root, table, tmp_path / "run", debug_weights,
                                  checkpoint=str(checkpoints[0])), _single_process())
    assert len(first.written) == len(read_urmp_clips(root, table)[0])
    # Other weights in the same folder would be skipped as done: refused instead.
    with pytest.raises(UserInputError, match="weights"):
        run_batch_eval(config(root, table, tmp_path / "run", debug_weights,
                              checkpoint=str(checkpoints[1])), _single_process())
    again = run_batch_eval(config(root, table, tmp_path / "run", debug_weights,
                                  checkpoint=str(checkpoints[0])), _single_process())
    assert again.skipped == first.written and not again.written
    # A missing weights file is reported before any output (manifest, ground truth) exists.
    with pytest.raises(UserInputError, match="weights file not found"):
        run_batch_eval(config(root, table, tmp_path / "fresh", debug_weights,
                              checkpoint=str(tmp_path / "missing.pth")), _single_process())
    assert not (tmp_path / "fresh").exists()


def test_clips_without_a_manifest_are_refused_not_taken_as_done(urmp, debug_weights, tmp_path,
                                                                batches):
    root, table = urmp
    cfg = config(root, table, tmp_path / "run", debug_weights, ground_truth=False)
    clip = read_urmp_clips(root, table)[0][0]
    # Clips of unknown origin (another program's, or a folder whose manifest was deleted):
    # skipped as done, they would be scored as this run's.
    stray = output_paths(cfg.output_dir, clip.id, video=False)[0]
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not this run's")
    with pytest.raises(UserInputError, match=r"1 generated clip\(s\) but no manifest\.json"):
        run_batch_eval(cfg, _single_process())
    assert stray.read_bytes() == b"not this run's" and not batches
    assert sorted(cfg.output_dir.iterdir()) == [stray]


def test_clips_made_with_other_prompts_are_refused_not_taken_as_done(urmp, debug_weights,
                                                                    tmp_path, batches):
    """The table's labels are the prompts, and clips are reused by id: a clip generated with
    another label used to pass for done."""
    root, table = urmp
    run_dir = tmp_path / "run"
    cfg = config(root, table, run_dir, debug_weights, ground_truth=False)
    first = run_batch_eval(cfg, _single_process())
    clips = read_urmp_clips(root, table)[0]
    manifest = cfg.output_dir / "manifest.json"
    assert json.loads(manifest.read_text())["prompts"] == {c.id: c.caption for c in clips}
    # The same table with another label for its last clip.
    label = URMP_HEADER.index("label")
    header, *rows = table.read_text().splitlines()
    cells = rows[-1].split("\t")
    old_label, cells[label] = cells[label], cells[label] + " (bowed)"
    relabelled = tmp_path / "relabelled.tsv"
    relabelled.write_text("\n".join([header, *rows[:-1], "\t".join(cells)]) + "\n")
    changed = config(root, relabelled, run_dir, debug_weights, ground_truth=False)
    calls = len(batches)
    with pytest.raises(UserInputError, match=re.escape(
            f"1 generated clip(s) were made with other prompts ({clips[-1].id}: "
            f"{old_label!r} -> {cells[label]!r})")):
        run_batch_eval(changed, _single_process())
    assert len(batches) == calls
    # Deleting that clip generates it again with its new prompt; the others stay done.
    for path in output_paths(cfg.output_dir, clips[-1].id, video=not cfg.skip_video_composite):
        path.unlink()
    again = run_batch_eval(changed, _single_process())
    assert again.written == [clips[-1].id] and again.skipped == sorted(c.id for c in clips[:-1])
    assert json.loads(manifest.read_text())["prompts"][clips[-1].id] == cells[label]
    # A table without that clip keeps its record, so going back to the old table is refused.
    (tmp_path / "short.tsv").write_text("\n".join([header, *rows[:-1]]) + "\n")
    run_batch_eval(config(root, tmp_path / "short.tsv", run_dir, debug_weights,
                          ground_truth=False), _single_process())
    with pytest.raises(UserInputError, match="other prompts"):
        run_batch_eval(cfg, _single_process())
    # A manifest written before prompts were recorded resumes.
    data = json.loads(manifest.read_text())
    del data["prompts"]
    manifest.write_text(json.dumps(data))
    assert run_batch_eval(cfg, _single_process()).skipped == first.written


def test_ground_truth_of_other_data_is_refused_not_scored_against(urmp, debug_weights, tmp_path,
                                                                  batches, monkeypatch):
    import shutil

    root, table = urmp
    run_dir = tmp_path / "run"
    first = run_batch_eval(config(root, table, run_dir, debug_weights), _single_process())
    gt_dir = config(root, table, run_dir, debug_weights).ground_truth_dir
    kept = {p: p.read_bytes() for p in gt_dir.glob("*.flac")}
    assert len(kept) == len(first.written)
    # The same clip ids under another root, with other true audio: the old ground truth
    # used to be reused by id and the new clips scored against it.
    other = tmp_path / "other_urmp"
    shutil.copytree(root, other)
    for clip in read_urmp_clips(other, other / table.name)[0]:
        write_audio(clip.ground_truth, tone(1000.0, 1.4, 16000), 16000)
    with pytest.raises(UserInputError, match=re.escape(f"dataset_root: '{root}' -> '{other}'")):
        run_batch_eval(config(other, other / table.name, run_dir, debug_weights),
                       _single_process())
    assert {p: p.read_bytes() for p in gt_dir.glob("*.flac")} == kept
    # The same root spelt another way is the same data.
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(root, tmp_path)
    again = run_batch_eval(config(relative, table, run_dir, debug_weights), _single_process())
    assert again.skipped == first.written
    # Ground truth of unknown origin (a folder from before manifests, or whose manifest was
    # deleted) is refused too.
    (gt_dir / "manifest.json").unlink()
    with pytest.raises(UserInputError, match=r"ground truth but no manifest\.json"):
        run_batch_eval(config(root, table, run_dir, debug_weights), _single_process())
    assert {p: p.read_bytes() for p in gt_dir.glob("*.flac")} == kept


def test_a_trained_file_for_other_encoders_names_the_model_before_any_weights_are_sought(
        urmp, tmp_path):
    # A debug training run's weights with the default model: the error used to be about the
    # default model's missing VAE (offline), or came after downloading it.
    from saganet.state_dict import atomic_save

    root, table = urmp
    trained = tmp_path / "debug_last.pth"
    atomic_save({"network": {}, "synchformer": {}, "config": {"variant": "debug"}}, trained)
    with pytest.raises(UserInputError, match=r"pass model=debug$"):
        run_batch_eval(config(root, table, tmp_path / "run", tmp_path / "empty_cache",
                              model="saganet_small", checkpoint=str(trained), offline=True),
                       _single_process())
    assert not (tmp_path / "run").exists() and not (tmp_path / "empty_cache").exists()


def test_sms_clips_without_audio_are_generated_and_their_ground_truth_reported(
        debug_weights, tmp_path, batches):
    root = tmp_path / "sms"
    ids = ["solos/violin/a_0_5000", "solos/cello/b_0_5000"]
    for i, clip_id in enumerate(ids):
        write_video(root / f"{clip_id}.mp4", 1.4, seed=i)  # no audio track
        write_video(root / clip_id / f"{Path(clip_id).name}_mask.mp4", 1.4, seed=i, mask=True)
    table = root / "sms-test.tsv"
    table.write_text("id\tlabel\n" + "".join(f"{i}\t{i.split('/')[1]}\n" for i in ids))
    report = run_batch_eval(config(root, table, tmp_path / "out", debug_weights, name="sms",
                                   batch_size=2), _single_process())
    assert report.written == ["a_0_5000", "b_0_5000"] and batches == [2]
    assert [f["id"] for f in report.ground_truth_failed] == report.written
    assert "no audio stream" in report.ground_truth_failed[0]["error"]
    manifest = json.loads(report.manifest.read_text())
    assert manifest["clips"] == report.written and manifest["complete"]
    assert len(manifest["ground_truth_failed"]) == 2


def _single_process():
    from saganet.dist import DistInfo

    return DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


# ----------------------------------------------------------------------------------------------
# batch_eval.py end to end


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "batch_eval.py"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_torchrun_writes_each_clip_once_and_resumes(tmp_path, debug_weights):
    root = tmp_path / "urmp"
    table = make_urmp(root, clips=3)
    (root / "metadata.tsv").write_text(table.read_text() + "\t".join(
        ["09_Gone_vn/Vid_x", "09_Gone_vn/AuSep_1_vn_09_Gone_0_5000", "09_Gone_vn/Masks_x",
         "vn", "violin", "0", "5000"]) + "\n")
    run_dir = tmp_path / "out"
    # duration_s is the reference's name of `duration`: its command lines work unchanged.
    args = ["dataset=urmp", f"dataset.root={root}", f"dataset.metadata={table}", "model=debug",
            f"paths.weights_dir={debug_weights}", f"run_dir={run_dir}", f"duration_s={DURATION}",
            "num_steps=2", "batch_size=1", "num_workers=0", "device=cpu", "amp=false",
            "output_name=test"]
    first = _torchrun(args, tmp_path)
    # One metadata row has no files: everything else is written, and the status says so.
    assert first.returncode == 1, first.stderr[-3000:]
    out = run_dir / "urmp-test"
    flacs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    expected = [f"AuSep_1_vn_0{i + 1}_Piece{i}_{1000 * i}_{1000 * i + 5000}.flac"
                for i in range(3)]
    assert flacs == expected
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["clips"] == [name[: -len(".flac")] for name in expected]
    assert manifest["run"]["world_size"] == 2 and manifest["weights"] == "debug"
    assert manifest["settings"]["variant"] == "debug" and manifest["saganet_version"]
    assert [m["id"] for m in manifest["missing"]] == ["AuSep_1_vn_09_Gone_0_5000"]
    gt = sorted(p.name for p in (run_dir / "urmp-ground_truth").glob("*.flac"))
    assert gt == expected
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}

    second = _torchrun(args, tmp_path)
    assert second.returncode == 1, second.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == mtimes
    log = (run_dir / "batch_eval_rank0.log").read_text()
    assert "3 clips done already, skipped; 0 to generate" in log


@pytest.mark.slow
def test_an_error_on_one_rank_is_its_one_line_not_the_others_lost_connection(tmp_path,
                                                                            debug_weights):
    root = tmp_path / "urmp"
    table = make_urmp(root, clips=2)
    run_dir = tmp_path / "out"
    # Rank 1's clip (the second) cannot be written: a folder is in its place.
    second = read_urmp_clips(root, table)[0][1]
    blocked = output_paths(run_dir / "urmp", second.id, video=False)[0]
    blocked.mkdir(parents=True)
    result = _torchrun(["dataset=urmp", f"dataset.root={root}", f"dataset.metadata={table}",
                        "model=debug", f"paths.weights_dir={debug_weights}", f"run_dir={run_dir}",
                        f"duration={DURATION}", "num_steps=2", "batch_size=1", "num_workers=0",
                        "device=cpu", "amp=false", "ground_truth=false"], tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("batch_eval.py:")]
    assert errors == [f"batch_eval.py: error: {blocked}: output is a folder"], result.stderr
    # Rank 0, waiting for rank 1, prints no traceback of its own and is not named the cause.
    assert "Connection closed by peer" not in result.stderr
    cause = result.stderr.split("Root Cause")[1]
    assert "rank      : 1 " in cause, result.stderr[-3000:]


@pytest.mark.slow
def test_ctrl_c_keeps_the_clips_written_and_says_so(tmp_path, debug_weights):
    root = tmp_path / "urmp"
    table = make_urmp(root, clips=4)
    run_dir = tmp_path / "out"
    out = run_dir / "urmp"
    # Many steps: the clips take long enough that Ctrl-C lands while they are generated.
    status, stderr = ctrl_c_once(
        "batch_eval.py", ["dataset=urmp", f"dataset.root={root}", f"dataset.metadata={table}",
                          "model=debug", f"paths.weights_dir={debug_weights}",
                          f"run_dir={run_dir}", f"duration={DURATION}", "num_steps=400",
                          "batch_size=1", "num_workers=0", "device=cpu", "amp=false"],
        tmp_path, lambda: any(out.glob("*.flac")))
    assert status == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "batch_eval.py: interrupted; the clips written so far are kept (run the same command "
        "again to go on)"), stderr[-3000:]
    assert "Traceback" not in stderr
    written = list(out.glob("*.flac"))
    clips = len(table.read_text().splitlines()) - 1  # after the header
    assert 1 <= len(written) < clips
    assert all(read_audio(path)[0].size > 0 for path in written)


def test_a_checkpoint_trained_with_an_architecture_override_is_evaluated(urmp, debug_weights,
                                                                         tmp_path):
    # A model option with an `architecture` entry (docs/training.md): the weights file records
    # the whole network, so batch_eval rebuilds the changed size from it.
    import dataclasses

    from saganet.model.sequence import CONFIG_44K_SA
    from saganet.state_dict import atomic_save
    from saganet.training.config import ModelSetup
    from saganet.training.models import build_models

    root, table = urmp
    setup = ModelSetup(network="debug", use_lora=True, synchformer="debug",
                       network_init="debug", synchformer_init="debug", codec="debug")
    sequence = CONFIG_44K_SA.with_duration(DURATION)
    base = build_models(setup, sequence).network.config
    models = build_models(dataclasses.replace(setup, architecture={"depth": base.depth + 1}),
                          sequence)
    # Training takes these from its data; a fresh network holds NaN until then.
    models.network.latent_mean.fill_(0.0)
    models.network.latent_std.fill_(1.0)
    trained = tmp_path / "deeper_last.pth"
    atomic_save(models.weights_file(), trained)
    report = run_batch_eval(config(root, table, tmp_path / "run", debug_weights,
                                   checkpoint=str(trained), ground_truth=False),
                            _single_process())
    assert len(report.written) == len(read_urmp_clips(root, table)[0])
