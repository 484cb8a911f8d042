"""Training-feature extraction (training/extract_video_training_latents.py) on the mini-SMS.

Runs with the tiny random ``debug`` encoders (latent width 8, CLIP and text width 64) and checks
that the output loads in :class:`saganet.data.sms_dataset.SMSDataset`, rows sorted by id, and
that a two-process ``torchrun`` gives the same memmap as one process.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from saganet.data.sms_dataset import SampleShapes, SMSDataset, read_memmap_ids
from saganet.debug_weights import write_debug_weights
from saganet.errors import UserInputError
from saganet.media.audio import load_mono_audio
from saganet.media.video import read_frames
from saganet.model.sequence import CONFIG_44K_SA
from saganet.prep.focal_prompts import SplitClip
from saganet.prep.latents import (
    FEATURE_KEYS,
    ClipSource,
    FeatureExtractor,
    ShardWriter,
    SplitOutputs,
    extract_part,
    merge_shards,
)
from tests.prep.test_focal_prompts import (
    GOOD_IDS,
    MINI_CLIPS,
    SOURCE_RATE,
    MiniSMS,
    make_mini_sms,
    write_clip,
)
from training.extract_video_training_latents import build_parser, main

REPO = Path(__file__).resolve().parents[2]
DEBUG_SHAPES = SampleShapes(latent_len=216, latent_dim=8, clip_len=40, clip_dim=64, text_len=77,
                            text_dim=64, sync_frames=125)
LABELS = {c.id: c.label for c in MINI_CLIPS}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[MiniSMS, Path]:
    base = tmp_path_factory.mktemp("latents")
    weights = base / "weights"
    write_debug_weights(weights)
    return make_mini_sms(base), weights


@pytest.fixture
def one_thread() -> Iterator[None]:
    # torchrun gives each process one thread; CPU kernels may round differently with more.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _args(mini: MiniSMS, weights: Path, out: Path, *extra: str) -> list[str]:
    return ["--root", str(mini.root), "--metadata", str(mini.metadata), "--split", "train",
            "--output_dir", str(out), "--variant", "debug", "--weights_dir", str(weights),
            "--batch_size", "2", "--num_workers", "0", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def extracted(setup: tuple[MiniSMS, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    mini, weights = setup
    out = tmp_path_factory.mktemp("memmaps")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as under torchrun, so the two-process run can be compared
    try:
        assert main(_args(mini, weights, out)) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def test_output_loads_in_the_training_dataset(setup: tuple[MiniSMS, Path],
                                              extracted: Path) -> None:
    mini, _ = setup
    outputs = SplitOutputs.for_split(extracted, "sms", "train")
    assert read_memmap_ids(outputs.memmap_dir) == GOOD_IDS  # sorted, not in metadata order
    lines = outputs.tsv.read_text().splitlines()
    assert lines == ["id\tlabel", *(f"{i}\t{LABELS[i]}" for i in GOOD_IDS)]
    assert not outputs.shard_dir.exists()

    dataset = SMSDataset(mini.root, outputs.tsv, outputs.memmap_dir, DEBUG_SHAPES)
    assert [s[0] for s in dataset.samples] == GOOD_IDS
    features = TensorDict.load_memmap(outputs.memmap_dir)
    assert features["mean"].shape == (3, 216, 8) and features["std"].shape == (3, 216, 8)
    assert features["clip_features"].shape == (3, 40, 64)
    assert features["text_features"].shape == (3, 77, 64)
    assert (features["std"] > 0).all()
    item = dataset[GOOD_IDS.index("flute/vidC_500_5700")]
    assert item is not None and item["caption"] == "flute"
    row = GOOD_IDS.index(item["id"])
    assert torch.equal(item["a_mean"], features["mean"][row])
    assert item["sync_video"].shape == (125, 3, 224, 224)
    # Different clips, different features (rows are not copies of one sample).
    assert not torch.equal(features["mean"][0], features["mean"][1])

    problems = [line.split("\t") for line in outputs.failed_list.read_text().splitlines()]
    assert problems[0] == ["id", "status", "reason"]
    assert [(p[0], p[1]) for p in problems[1:]] == [(MINI_CLIPS[3].id, "failed"),
                                                    (MINI_CLIPS[4].id, "missing")]
    assert "too short" in problems[1][2]


def test_rows_hold_each_clips_own_features(setup: tuple[MiniSMS, Path], extracted: Path,
                                           one_thread: None) -> None:
    mini, weights = setup
    features = TensorDict.load_memmap(extracted / "sms-train")
    extractor = FeatureExtractor.from_variant("debug", weights)
    sequence = CONFIG_44K_SA
    for row, clip_id in enumerate(GOOD_IDS):
        path = mini.root / f"{clip_id}.mp4"
        audio = load_mono_audio(path, sequence.num_audio_samples).waveform
        posterior = extractor.codec.encode(audio[None])
        torch.testing.assert_close(features["mean"][row], posterior.mean[0], rtol=0, atol=0)
        torch.testing.assert_close(features["std"][row], posterior.std[0], rtol=0, atol=0)
        frames = read_frames(path, 8, 384, end=5.0)[:40].float() / 255
        clip = extractor.clip_encoder.encode_images(frames[None])[0]
        torch.testing.assert_close(features["clip_features"][row], clip, rtol=1e-5, atol=1e-6)
        text = extractor.clip_encoder.encode_text([LABELS[clip_id]])[0]
        torch.testing.assert_close(features["text_features"][row], text, rtol=0, atol=0)


def test_existing_output_needs_overwrite(setup: tuple[MiniSMS, Path], extracted: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    mini, weights = setup
    assert main(_args(mini, weights, extracted)) == 2
    err = capsys.readouterr().err
    assert err.startswith("extract_video_training_latents.py: ") and "--overwrite" in err


def test_mono_audio_is_resampled_mixed_and_padded(setup: tuple[MiniSMS, Path]) -> None:
    mini, _ = setup
    clip = MINI_CLIPS[0]
    audio = load_mono_audio(mini.root / f"{clip.id}.mp4", 221184)
    assert audio.waveform.shape == (221184,) and audio.waveform.dtype == torch.float32
    assert audio.decoded >= 221184  # reading stopped once there was enough
    spectrum = np.abs(np.fft.rfft(audio.waveform.numpy()))
    peak_hz = np.argmax(spectrum) * 44100 / audio.waveform.shape[0]
    assert abs(peak_hz - clip.tone_hz) < 2
    # Mono is the channel mean: same loudness as the mean of the decoded channels at 48 kHz.
    with av.open(str(mini.root / f"{clip.id}.mp4")) as container:
        channels = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    assert channels.shape[0] == 2
    source_rms = np.sqrt(np.mean(channels[:, SOURCE_RATE : 4 * SOURCE_RATE].mean(0) ** 2))
    mono_rms = np.sqrt(np.mean(audio.waveform[44100 : 4 * 44100].numpy() ** 2))
    assert mono_rms == pytest.approx(source_rms, rel=0.01)

    padded = load_mono_audio(mini.root / f"{clip.id}.mp4", 441000)  # 10 s: zero-padded
    # All 5.2 s of the file at 44.1 kHz (AAC may add or drop a frame's worth).
    assert abs(padded.decoded - 5.2 * 44100) < 2048
    torch.testing.assert_close(padded.waveform[:221184], audio.waveform, rtol=0, atol=0)
    assert not padded.waveform[padded.decoded :].any()
    with pytest.raises(UserInputError, match="audio too short"):
        load_mono_audio(mini.root / f"{clip.id}.mp4", 441000, min_samples=441000)


def test_a_split_where_every_clip_is_usable_says_so(setup: tuple[MiniSMS, Path],
                                                    tmp_path: Path, one_thread: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The summary said 'failed 0, no clip video 0: listed in ...' of a list holding nothing."""
    mini, weights = setup
    split = "val"
    args = _args(mini, weights, tmp_path)
    args[args.index("--split") + 1] = split
    duration = build_parser().parse_args(args).duration
    assert all(c.seconds is not None and c.seconds >= duration
               for c in MINI_CLIPS if c.split == split)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "every clip was used" in out and "listed in" not in out


def test_unusable_clips_are_reported_not_dropped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_clip(root / "violin" / "mute.mp4", 5.2, seed=1, tone_hz=None)
    write_clip(root / "violin" / "short_audio.mp4", 5.2, seed=2, tone_hz=440.0,
               audio_seconds=2.0)
    clips = [SplitClip("violin/mute", "violin"), SplitClip("violin/short_audio", "violin"),
             SplitClip("violin/gone", "violin")]
    source = ClipSource(root, clips, CONFIG_44K_SA)
    errors = [source[i].get("error", "") for i in range(3)]
    assert "no audio stream" in errors[0]
    assert "audio too short: 2.0" in errors[1]
    assert "not found" in errors[2]


def _short_clips_metadata(mini: MiniSMS, duration: float, folder: Path) -> tuple[Path, str]:
    """A copy of the metadata with only the rows whose clip is shorter than ``duration``;
    returns it and their split."""
    short = {c.stem for c in MINI_CLIPS if c.seconds is not None and c.seconds < duration}
    assert short
    with mini.metadata.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    metadata = folder / "short_clips.csv"
    with metadata.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *(r for r in rows if r[header.index("filename")]
                                                in short)])
    return metadata, next(c.split for c in MINI_CLIPS if c.stem in short)


def test_a_split_without_a_usable_clip_fails_in_one_line_and_leaves_nothing(
        setup: tuple[MiniSMS, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mini, weights = setup
    duration = 5.0
    metadata, split = _short_clips_metadata(mini, duration, tmp_path)
    out = tmp_path / "memmaps"
    args = [*_args(mini, weights, out), "--metadata", str(metadata), "--split", split,
            "--duration", str(duration)]
    assert main(args) == 2
    err = capsys.readouterr().err  # also holds the progress bar
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no clip could be used" in errors[0], err
    assert "Traceback" not in err
    outputs = SplitOutputs.for_split(out, "sms", split)
    assert not outputs.shard_dir.exists()
    assert not outputs.memmap_dir.exists() and not outputs.tsv.exists()
    assert not out.exists()  # the run made the output folder: it goes with the failure


@pytest.mark.slow
def test_two_processes_fail_in_one_line_when_no_clip_is_usable(setup: tuple[MiniSMS, Path],
                                                               tmp_path: Path) -> None:
    mini, weights = setup
    duration = 5.0
    metadata, split = _short_clips_metadata(mini, duration, tmp_path)
    out = tmp_path / "memmaps"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--standalone", str(REPO / "training" / "extract_video_training_latents.py"),
         *_args(mini, weights, out), "--metadata", str(metadata), "--split", split,
         "--duration", str(duration)],
        capture_output=True, text=True, check=False, cwd=REPO, env=env, timeout=300,
    )
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines()
            if line.startswith("extract_video_training_latents.py: error:")]
    assert len(ours) == 1 and "no clip could be used" in ours[0], result.stderr[-3000:]
    assert not out.exists()


def test_script_explains_every_option() -> None:
    for action in build_parser()._actions:
        assert action.help, f"{action.dest} has no help"
    result = subprocess.run(
        [sys.executable, str(REPO / "training" / "extract_video_training_latents.py"), "--help"],
        capture_output=True, text=True, check=False, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    for option in ("--root", "--metadata", "--split", "--output_dir", "--variant",
                   "--weights_dir", "--batch_size", "--num_workers", "--duration", "--device",
                   "--overwrite"):
        assert option in result.stdout


@pytest.mark.slow
def test_two_processes_give_the_same_memmap(setup: tuple[MiniSMS, Path], extracted: Path,
                                            tmp_path: Path) -> None:
    mini, weights = setup
    out = tmp_path / "memmaps"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--standalone", str(REPO / "training" / "extract_video_training_latents.py"),
         *_args(mini, weights, out), "--num_workers", "1"],
        capture_output=True, text=True, check=False, cwd=REPO, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single = SplitOutputs.for_split(extracted, "sms", "train")
    double = SplitOutputs.for_split(out, "sms", "train")
    assert read_memmap_ids(double.memmap_dir) == read_memmap_ids(single.memmap_dir)
    assert double.tsv.read_text() == single.tsv.read_text()
    assert double.failed_list.read_text() == single.failed_list.read_text()
    a, b = TensorDict.load_memmap(single.memmap_dir), TensorDict.load_memmap(double.memmap_dir)
    assert set(a.keys()) == set(b.keys()) == set(FEATURE_KEYS)
    for key in FEATURE_KEYS:
        assert torch.equal(a[key], b[key]), key


def _write_shards(outputs: SplitOutputs, ids: list[str], fill: float, rows: int = 2) -> None:
    """Shards of ``rows`` clips each, every feature filled with ``fill`` (small feature shapes)."""
    outputs.shard_dir.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(outputs.shard_dir, rank=0, samples_per_shard=rows)
    for start in range(0, len(ids), rows):
        part = ids[start:start + rows]
        writer.add(part, {key: torch.full((len(part), 2, 3), fill) for key in FEATURE_KEYS})
    writer.flush()


def test_a_failed_overwrite_keeps_the_old_memmap_and_table(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = SplitOutputs.for_split(tmp_path, "sms", "train")
    old_ids = [f"old{i}" for i in range(3)]
    _write_shards(outputs, old_ids, 1.0)
    merge_shards(outputs, {clip_id: "violin" for clip_id in old_ids})
    old_table = outputs.tsv.read_text()

    new_ids = [f"new{i}" for i in range(5)]
    _write_shards(outputs, new_ids, 2.0)
    real_replace = os.replace

    def table_cannot_be_replaced(src, dst) -> None:
        if Path(dst) == outputs.tsv:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", table_cannot_be_replaced)
    with pytest.raises(OSError, match="disk full"):
        merge_shards(outputs, {clip_id: "cello" for clip_id in new_ids})
    assert outputs.tsv.read_text() == old_table
    assert read_memmap_ids(outputs.memmap_dir) == old_ids
    features = TensorDict.load_memmap(outputs.memmap_dir)
    assert all(bool((features[key] == 1.0).all()) for key in FEATURE_KEYS)
    # Nothing half-made beside the outputs; the shards stay for another try.
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert hidden == [outputs.shard_dir.name]

    monkeypatch.setattr(os, "replace", real_replace)
    merge_shards(outputs, {clip_id: "cello" for clip_id in new_ids})
    assert read_memmap_ids(outputs.memmap_dir) == new_ids
    assert len(outputs.tsv.read_text().splitlines()) == len(new_ids) + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [outputs.memmap_dir.name, outputs.tsv.name])


def test_shards_that_disagree_leave_no_half_made_memmap(tmp_path: Path) -> None:
    outputs = SplitOutputs.for_split(tmp_path, "sms", "train")
    _write_shards(outputs, ["a", "b"], 1.0)
    writer = ShardWriter(outputs.shard_dir, rank=1)
    writer.add(["c"], {key: torch.zeros(1, 4, 3) for key in FEATURE_KEYS})
    writer.flush()
    with pytest.raises(ValueError, match="shards disagree"):
        merge_shards(outputs, {"a": "x", "b": "x", "c": "x"})
    assert [p.name for p in tmp_path.iterdir()] == [outputs.shard_dir.name]


def test_clips_with_non_finite_features_are_listed_as_failed(tmp_path: Path) -> None:
    """They were written like the others, and found (as skipped training steps) only when
    training loaded them."""
    items = [{"id": f"x/c{i}", "label": "x", "clip_frames": torch.zeros(1, 3, 2, 2),
              "audio": torch.full((4,), float(i))} for i in range(3)]

    def extractor(batch) -> dict[str, torch.Tensor]:
        values = batch.audio[:, :1, None].expand(-1, 2, 3).clone()  # (B, 2, 3): the clip's i
        values[values == 1] = float("nan")
        return {key: values.clone() for key in FEATURE_KEYS} | {"std": torch.ones_like(values)}

    writer = ShardWriter(tmp_path, rank=0)
    assert extract_part(items, extractor, writer, batch_size=3, progress=False) == 1
    shard = torch.load(next(tmp_path.glob("*.pt")))
    assert shard["ids"] == ["x/c0", "x/c2"]
    assert shard["failed"] == [["x/c1", "non-finite mean, clip_features, text_features"]]
    assert torch.equal(shard["mean"][:, 0, 0], torch.tensor([0.0, 2.0]))


def test_existing_outputs_are_named_for_python_and_the_command_line(tmp_path: Path) -> None:
    outputs = SplitOutputs.for_split(tmp_path, "sms", "train")
    outputs.tsv.write_text("id\n")
    with pytest.raises(UserInputError) as info:
        outputs.check_writable(overwrite=False)
    assert str(info.value) == (f"{outputs.tsv}: output exists; pass --overwrite "
                               "(overwrite=True from Python) to replace it")
    outputs.check_writable(overwrite=True)
