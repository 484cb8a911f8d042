"""The av-benchmark adapter: metrics from feature caches, and a stand-in av_bench package.

The real av-benchmark needs CUDA and large weights, so a small fake ``av_bench`` package with
the same module layout checks the adapter's orchestration (which caches are extracted with
which options, strict Synchformer loading, messages for missing parts).
"""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest
import torch

from saganet.evaluation import av_bench as adapter
from saganet.evaluation.metrics import (
    PairingError,
    desync,
    frechet_distance,
    inception_score,
    kl_divergence_softmax,
    mean_cosine_similarity,
)
from saganet.evaluation.protocol import match_names
from saganet.state_dict import CheckpointMismatchError
from tests.evaluation.audio_files import tone, write_audio

NAMES = [f"item{i:02d}" for i in range(12)]


def _features(rng, names, *, video=False, audio_sync=True):
    """Random cache contents, ``{file name: {item: tensor or dict}}``."""
    cache = {
        adapter.PANN_FEATURES: {
            n: {"2048": torch.randn(8, generator=rng), "logits": torch.randn(5, generator=rng)}
            for n in names
        },
        adapter.VGGISH_FEATURES: {n: torch.randn(3, 4, generator=rng) for n in names},
        adapter.PASST_EMBEDDINGS: {n: torch.randn(6, generator=rng) for n in names},
        adapter.PASST_LOGITS: {n: torch.randn(5, generator=rng) for n in names},
    }
    if video:
        cache[adapter.IMAGEBIND_VIDEO] = {n: torch.randn(7, generator=rng) for n in names}
        cache[adapter.SYNCHFORMER_VIDEO] = {n: torch.randn(14, 8, 4, generator=rng) for n in names}
    if audio_sync:
        cache[adapter.IMAGEBIND_AUDIO] = {n: torch.randn(7, generator=rng) for n in names}
        cache[adapter.SYNCHFORMER_AUDIO] = {n: torch.randn(14, 6, 4, generator=rng) for n in names}
    return cache


def _save(folder, cache):
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in cache.items():
        torch.save(content, folder / file_name)


def _np(d, key=None):
    return np.stack([(v if key is None else v[key]).numpy() for v in d.values()])


def _fake_sync(video: np.ndarray, audio: np.ndarray) -> np.ndarray:
    # Offset class from the sign of a feature sum, so first and last windows can differ.
    logits = np.zeros((video.shape[0], 21))
    score = video.sum(axis=(1, 2, 3)) + audio.sum(axis=(1, 2, 3))
    logits[np.arange(video.shape[0]), np.where(score > 0, 15, 8)] = 1.0
    return logits


def test_metrics_from_caches_match_the_metric_functions(tmp_path):
    rng = torch.Generator().manual_seed(0)
    gt = _features(rng, ["extra", *NAMES], video=True, audio_sync=False)
    pred = _features(rng, list(reversed(NAMES)))
    _save(tmp_path / "gt", gt)
    _save(tmp_path / "pred", pred)
    calls = []

    def make_sync():
        calls.append(1)
        return _fake_sync

    results = adapter.metrics_from_caches(
        tmp_path / "gt", tmp_path / "pred", make_sync_logits=make_sync
    )
    v = results.values
    assert calls == [1]
    # Un-paired FDs use every item, including the ground-truth-only "extra".
    fd_vgg = frechet_distance(
        np.concatenate([t.numpy() for t in pred[adapter.VGGISH_FEATURES].values()]),
        np.concatenate([t.numpy() for t in gt[adapter.VGGISH_FEATURES].values()]),
    )
    assert v["FD-VGG"] == pytest.approx(fd_vgg, rel=1e-9)
    fd_pann = frechet_distance(
        _np(pred[adapter.PANN_FEATURES], "2048"), _np(gt[adapter.PANN_FEATURES], "2048")
    )
    assert v["FD-PANN"] == pytest.approx(fd_pann, rel=1e-9)
    # PaSST FD is over paired items only.
    gt_passt = {n: gt[adapter.PASST_EMBEDDINGS][n] for n in pred[adapter.PASST_EMBEDDINGS]}
    fd_passt = frechet_distance(_np(pred[adapter.PASST_EMBEDDINGS]), _np(gt_passt))
    assert v["FD-PASST"] == pytest.approx(fd_passt, rel=1e-9)
    pann_logits = {n: x["logits"].numpy() for n, x in pred[adapter.PANN_FEATURES].items()}
    gt_pann_logits = {n: gt[adapter.PANN_FEATURES][n]["logits"].numpy() for n in NAMES}
    assert v["KL-PANNS-softmax"] == pytest.approx(
        kl_divergence_softmax(gt_pann_logits, pann_logits), rel=1e-6
    )
    gt_passt_logits = {n: gt[adapter.PASST_LOGITS][n].numpy() for n in NAMES}
    pred_passt_logits = {n: t.numpy() for n, t in pred[adapter.PASST_LOGITS].items()}
    assert v["KL-PASST-softmax"] == pytest.approx(
        kl_divergence_softmax(gt_passt_logits, pred_passt_logits), rel=1e-6
    )
    # IS over the generated items in cache order, 10 splits, seed 2020.
    isc = inception_score(_np(pred[adapter.PANN_FEATURES], "logits"), splits=10, seed=2020)
    assert (v["ISC-PANNS-mean"], v["ISC-PANNS-std"]) == pytest.approx(isc, rel=1e-6)
    isc = inception_score(_np(pred[adapter.PASST_LOGITS]), splits=10, seed=2020)
    assert (v["ISC-PASST-mean"], v["ISC-PASST-std"]) == pytest.approx(isc, rel=1e-6)
    ib_video = {n: gt[adapter.IMAGEBIND_VIDEO][n].numpy() for n in NAMES}
    ib_audio = {n: t.numpy() for n, t in pred[adapter.IMAGEBIND_AUDIO].items()}
    assert v["IB-Score"] == pytest.approx(mean_cosine_similarity(ib_video, ib_audio), rel=1e-6)
    # DeSync: first and last 14 segments (identical here: 14 segments per item).
    order = list(pred[adapter.SYNCHFORMER_AUDIO])
    video = np.stack([gt[adapter.SYNCHFORMER_VIDEO][n].numpy() for n in order])
    audio = _np(pred[adapter.SYNCHFORMER_AUDIO])
    one = _fake_sync(video, audio)
    assert v["DeSync"] == pytest.approx(desync(np.stack([one, one], axis=1)), rel=1e-9)
    assert 0.0 < v["DeSync"] < 2.0
    assert results.sources["DeSync"] == adapter.SOURCE_SYNCHFORMER
    assert results.skipped == {} and results.notes == []


def test_metrics_from_caches_skips_video_metrics_without_video_features(tmp_path):
    rng = torch.Generator().manual_seed(1)
    _save(tmp_path / "gt", _features(rng, NAMES, audio_sync=False))
    _save(tmp_path / "pred", _features(rng, NAMES))
    results = adapter.metrics_from_caches(
        tmp_path / "gt", tmp_path / "pred", make_sync_logits=lambda: _fake_sync
    )
    assert set(results.skipped) == {"IB-Score", "DeSync"}
    assert "extract_video.py" in results.skipped["DeSync"]
    assert "FD-PASST" in results.values


def test_metrics_from_caches_errors(tmp_path):
    rng = torch.Generator().manual_seed(2)
    _save(tmp_path / "gt", _features(rng, NAMES[:5]))
    _save(tmp_path / "pred", _features(rng, NAMES[:6]))
    with pytest.raises(PairingError, match="item05"):
        adapter.metrics_from_caches(tmp_path / "gt", tmp_path / "pred")
    (tmp_path / "pred" / adapter.PASST_LOGITS).unlink()
    with pytest.raises(adapter.UserInputError, match="cache file not found"):
        adapter.metrics_from_caches(tmp_path / "gt", tmp_path / "pred")


def test_match_names_uses_cleaner_as_fallback():
    pairs = match_names(["abc", "xyz"], ["abc", "xyz-0"], cleaner=lambda n: n.split("-")[0])
    assert pairs == {"abc": "abc", "xyz-0": "xyz"}
    with pytest.raises(PairingError, match="xyz-0"):
        match_names(["abc", "xyz"], ["abc", "xyz-0"])


FAKE_SYNCHFORMER = """
import torch
from torch import nn


class Synchformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 21)

    def compare_v_a(self, vis, aud):
        return self.proj(vis.mean(dim=(1, 2)) + aud.mean(dim=(1, 2)))
"""

FAKE_EXTRACT = """
import json
from pathlib import Path

import torch

CALLS = []


def extract(audio_path, output_path, *, audio_length, batch_size, num_workers, device,
            skip_video_related, skip_clap):
    CALLS.append(dict(audio=str(audio_path), cache=str(output_path), length=audio_length,
                      batch=batch_size, video=not skip_video_related, clap=not skip_clap))
    names = sorted(p.stem for p in Path(audio_path).iterdir())
    g = torch.Generator().manual_seed(len(CALLS))
    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({n: {"2048": torch.randn(3, generator=g), "logits": torch.randn(4, generator=g)}
                for n in names}, out / "pann_features.pth")
    torch.save({n: torch.randn(2, 3, generator=g) for n in names}, out / "vggish_features.pth")
    torch.save({n: torch.randn(3, generator=g) for n in names}, out / "passt_features_embed.pth")
    torch.save({n: torch.randn(4, generator=g) for n in names}, out / "passt_logits.pth")
    if not skip_video_related:
        torch.save({n: torch.randn(5, generator=g) for n in names}, out / "imagebind_audio.pth")
        torch.save({n: torch.randn(14, 6, 4, generator=g) for n in names},
                   out / "synchformer_audio.pth")
"""


@pytest.fixture
def fake_av_bench(tmp_path, monkeypatch):
    """A stand-in ``av_bench`` importable from ``tmp_path/src`` (weights not yet present)."""
    root = tmp_path / "src"
    package = root / "av_bench"
    (package / "synchformer").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "extract.py").write_text(textwrap.dedent(FAKE_EXTRACT))
    (package / "utils.py").write_text("def clean_sample_name(name):\n    return name\n")
    (package / "synchformer" / "__init__.py").write_text("")
    (package / "synchformer" / "synchformer.py").write_text(textwrap.dedent(FAKE_SYNCHFORMER))
    for name in [m for m in sys.modules if m == "av_bench" or m.startswith("av_bench.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root
    for name in [m for m in sys.modules if m == "av_bench" or m.startswith("av_bench.")]:
        del sys.modules[name]


def test_load_av_bench_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "av_bench", None)
    with pytest.raises(adapter.AvBenchUnavailableError) as info:
        adapter.load_av_bench()
    assert str(info.value).splitlines()[-1].strip() == adapter.INSTALL_COMMAND


def test_load_av_bench_missing_dependency(fake_av_bench):
    (fake_av_bench / "av_bench" / "utils.py").write_text("import not_a_real_module_xyz\n")
    with pytest.raises(adapter.AvBenchUnavailableError, match="not_a_real_module_xyz"):
        adapter.load_av_bench()


def test_load_av_bench_missing_weights_names_paths(fake_av_bench):
    with pytest.raises(adapter.AvBenchUnavailableError) as info:
        adapter.load_av_bench()
    message = str(info.value)
    assert str(fake_av_bench / "weights" / "synchformer_state_dict.pth") in message
    assert "music_speech_audioset_epoch_15_esc_89.98.pt" in message


def _install_weights(root, state_dict):
    weights = root / "weights"
    weights.mkdir()
    torch.save(state_dict, weights / "synchformer_state_dict.pth")
    (weights / "music_speech_audioset_epoch_15_esc_89.98.pt").write_bytes(b"unused by the fake")


def _audio_dirs(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for name in ("a", "b", "c"):
        write_audio(pred / f"{name}.flac", tone(300.0, 0.1, 8000), 8000)
        write_audio(gt / f"{name}.wav", tone(300.0, 0.1, 8000), 8000)
    return pred, gt


# Three fake items give singular covariances; scipy warns, the FD is still defined.
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_run_av_bench_extracts_then_scores(fake_av_bench, tmp_path):
    torch.manual_seed(0)
    sync_cls = importlib.import_module("av_bench.synchformer.synchformer").Synchformer
    _install_weights(fake_av_bench, sync_cls().state_dict())
    pred, gt = _audio_dirs(tmp_path)
    # Ground-truth video features come from av-benchmark's extract_video.py beforehand.
    gt_cache = tmp_path / "gt_cache"
    gt_cache.mkdir()
    g = torch.Generator().manual_seed(5)
    torch.save(
        {n: torch.randn(14, 8, 4, generator=g) for n in "abc"}, gt_cache / adapter.SYNCHFORMER_VIDEO
    )
    torch.save({n: torch.randn(5, generator=g) for n in "abc"}, gt_cache / adapter.IMAGEBIND_VIDEO)

    results = adapter.run_av_bench(
        pred, gt, gt_cache=gt_cache, audio_length=5.0, device="cpu", batch_size=7
    )
    calls = importlib.import_module("av_bench.extract").CALLS
    assert [c["cache"] for c in calls] == [str(gt_cache), str(pred / "cache")]
    assert [c["video"] for c in calls] == [False, True]  # GT video features are not re-made
    assert not any(c["clap"] for c in calls)
    assert calls[1]["batch"] == 7 and calls[0]["batch"] == 1
    expected = {
        "FD-VGG",
        "FD-PANN",
        "FD-PASST",
        "KL-PANNS-softmax",
        "KL-PASST-softmax",
        "ISC-PANNS-mean",
        "ISC-PANNS-std",
        "ISC-PASST-mean",
        "ISC-PASST-std",
        "IB-Score",
        "DeSync",
    }
    assert set(results.values) == expected
    # A second run reuses both caches.
    adapter.run_av_bench(pred, gt, gt_cache=gt_cache, device="cpu", video_metrics=False)
    assert len(calls) == 2


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_run_av_bench_loads_synchformer_strictly(fake_av_bench, tmp_path):
    _install_weights(fake_av_bench, {"proj.weight": torch.zeros(21, 4)})  # bias missing
    pred, gt = _audio_dirs(tmp_path)
    gt_cache = tmp_path / "gt_cache"
    gt_cache.mkdir()
    torch.save({n: torch.zeros(14, 8, 4) for n in "abc"}, gt_cache / adapter.SYNCHFORMER_VIDEO)
    with pytest.raises(CheckpointMismatchError, match=r"proj\.bias"):
        adapter.run_av_bench(pred, gt, gt_cache=gt_cache, device="cpu")


def test_run_av_bench_without_cuda_says_so(fake_av_bench, tmp_path, monkeypatch):
    _install_weights(fake_av_bench, {})
    pred, gt = _audio_dirs(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # Python callers (batch_eval.py and train.py among them) are told the argument's value.
    with pytest.raises(adapter.UserInputError, match="; use device 'cpu' ") as info:
        adapter.run_av_bench(pred, gt, device="cuda")
    assert "--device" not in str(info.value)


def test_the_evaluation_command_without_cuda_names_its_flag(fake_av_bench, tmp_path,
                                                            monkeypatch, capsys):
    from saganet.evaluation.__main__ import main

    _install_weights(fake_av_bench, {})
    pred, gt = _audio_dirs(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([str(pred), str(gt), "--device", "cuda"]) == 2
    assert "; use --device cpu " in capsys.readouterr().err
    assert not (pred / "metrics.json").exists()
