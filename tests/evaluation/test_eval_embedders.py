"""Embedder registry, the melstats embedder and the folder runner's metric wiring."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from saganet.errors import UserInputError
from saganet.evaluation import embedders
from saganet.evaluation.audio import list_audio_files
from saganet.evaluation.embedders import AudioEmbedder, MelStatsEmbedder, build_embedder
from saganet.evaluation.metrics import (
    PairingError,
    frechet_distance,
    inception_score,
    kl_divergence_softmax,
)
from saganet.evaluation.runner import evaluate_directories, evaluate_with_embedder
from tests.evaluation.audio_files import tone, write_audio


class LoudnessEmbedder(AudioEmbedder):
    """Features that are easy to predict: [rms, rms²] and logits [10 rms, 0, -10 rms]."""

    name = "loudness"
    description = "test loudness features"
    sample_rate = 8000

    def embed(self, waveforms: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        rms = np.array([np.sqrt(np.mean(w.astype(np.float64) ** 2)) for w in waveforms])
        return {
            "embedding": np.stack([rms, rms**2], axis=1),
            "logits": np.stack([10 * rms, np.zeros_like(rms), -10 * rms], axis=1),
        }


def test_registry(monkeypatch):
    assert "melstats" in embedders.embedder_names()
    assert isinstance(build_embedder("melstats"), MelStatsEmbedder)
    with pytest.raises(KeyError, match="unknown audio embedder 'nope'"):
        build_embedder("nope")
    with pytest.raises(ValueError, match="already registered"):
        embedders.register_embedder("melstats", MelStatsEmbedder)
    monkeypatch.setitem(embedders._REGISTRY, "loudness", LoudnessEmbedder)
    assert isinstance(build_embedder("loudness"), LoudnessEmbedder)


def test_melstats_shapes_determinism_and_sensitivity():
    embedder = MelStatsEmbedder()
    clips = [tone(500.0, 1.0, 16000), tone(3000.0, 0.7, 16000), np.zeros(100, np.float32)]
    out = embedder.embed(clips)
    assert out["embedding"].shape == (3, 128) and out["logits"].shape == (3, 64)
    again = embedder.embed(clips)
    np.testing.assert_array_equal(out["embedding"], again["embedding"])
    # The band with the most energy moves up with the tone's frequency.
    assert np.argmax(out["logits"][1]) > np.argmax(out["logits"][0])


def test_mel_filterbank_covers_the_band():
    fb = embedders.mel_filterbank(16000, 512, 40, 0.0, 8000.0)
    assert fb.shape == (40, 257)
    assert fb.max() <= 1.0 and np.all(fb.max(axis=1) > 0.5)  # every band has a bin near its peak


def _make_dirs(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    amps = {"a": 0.1, "b": 0.3, "c": 0.5}
    for name, amp in amps.items():
        write_audio(pred / f"{name}.flac", tone(440.0, 0.5, 16000, amp), 16000)
        write_audio(gt / f"{name}.wav", tone(440.0, 0.5, 8000, amp * 1.5), 8000)
    # Sorts first, so pairing by position instead of by name would be caught.
    write_audio(gt / "0extra.wav", tone(440.0, 0.5, 8000, 0.9), 8000)  # only in FD
    return pred, gt


def test_evaluate_with_embedder_wires_pairs_and_sets(tmp_path):
    pred_dir, gt_dir = _make_dirs(tmp_path)
    pred_files, gt_files = list_audio_files(pred_dir), list_audio_files(gt_dir)
    results = evaluate_with_embedder(
        LoudnessEmbedder(), pred_files, gt_files, audio_length=5.0, batch_size=2
    )
    # Expected values from the clips' known RMS (amp/sqrt(2)); the tolerance covers 16-bit
    # quantisation and resampling, while a wrong pairing would be off by far more.
    amp = {"a": 0.1, "b": 0.3, "c": 0.5}
    pred_rms = np.array([amp[n] for n in "abc"]) / np.sqrt(2)
    gt_rms = np.array([1.5 * amp[n] for n in "abc"] + [0.9]) / np.sqrt(2)  # a, b, c, 0extra

    def logits(rms):
        return np.stack([10 * rms, 0 * rms, -10 * rms], axis=1)

    assert set(results.values) == {
        "FD-loudness",
        "KL-loudness-softmax",
        "ISC-loudness-mean",
        "ISC-loudness-std",
    }
    expected_fd = frechet_distance(
        np.stack([pred_rms, pred_rms**2], axis=1), np.stack([gt_rms, gt_rms**2], axis=1)
    )
    assert results.values["FD-loudness"] == pytest.approx(expected_fd, rel=1e-2)
    expected_kl = kl_divergence_softmax(logits(gt_rms[:3]), logits(pred_rms))
    assert results.values["KL-loudness-softmax"] == pytest.approx(expected_kl, rel=1e-2)
    assert results.values["ISC-loudness-mean"] == pytest.approx(
        inception_score(logits(pred_rms), splits=1)[0], rel=1e-2
    )
    assert results.sources["FD-loudness"].startswith("loudness: ")
    assert any("one split" in note for note in results.notes)


def test_evaluate_with_embedder_rejects_unpaired_predictions(tmp_path):
    pred_dir, gt_dir = _make_dirs(tmp_path)
    write_audio(pred_dir / "orphan.wav", tone(440.0, 0.5, 16000), 16000)
    with pytest.raises(PairingError, match="orphan"):
        evaluate_with_embedder(
            LoudnessEmbedder(), list_audio_files(pred_dir), list_audio_files(gt_dir)
        )


def test_evaluate_directories_unknown_source(tmp_path):
    pred_dir, gt_dir = _make_dirs(tmp_path)
    with pytest.raises(UserInputError, match="unknown audio embedder"):
        evaluate_directories(pred_dir, gt_dir, feature_sources=["nope"])
