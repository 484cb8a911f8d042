"""Audio discovery, PyAV reading, resampling and av-benchmark-style preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from saganet.errors import UserInputError
from saganet.evaluation.audio import list_audio_files, preprocess, read_audio, resample
from tests.evaluation.audio_files import tone, write_audio


def _peak_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sample_rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(("src", "dst"), [(44100, 16000), (16000, 32000), (48000, 44100)])
def test_resample_preserves_tone_frequency_and_length(src, dst):
    x = tone(1000.0, 1.0, src)
    y = resample(x, src, dst)
    assert y.dtype == np.float32
    assert y.shape == (int(np.ceil(x.size * dst / src)),)
    assert abs(_peak_hz(y, dst) - 1000.0) <= 1.0  # 1 s clip: 1 Hz bins
    # Amplitude survives too (away from the filter's edge effects).
    assert np.abs(y[dst // 10 : -dst // 10]).max() == pytest.approx(0.3, rel=0.02)


def test_resample_same_rate_is_identity():
    x = tone(440.0, 0.1, 16000)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x.astype(np.float32))


def test_preprocess_mono_dc_and_truncation():
    sr = 16000
    left = tone(300.0, 2.0, sr) + 0.2
    right = tone(300.0, 2.0, sr, amplitude=0.1) + 0.4
    out = preprocess(np.stack([left, right]), sr, 16000, audio_length=1.5)
    assert out.shape == (24000,)  # truncated to 1.5 s
    full_mono = (left + right) / 2
    np.testing.assert_allclose(out, (full_mono - full_mono.mean())[:24000], atol=1e-6)
    kept = preprocess(np.stack([left, right]), sr, 16000, audio_length=1.5, remove_dc=False)
    np.testing.assert_allclose(kept, full_mono[:24000], atol=1e-6)
    short = preprocess(left[:8000], sr, 8000, audio_length=5.0)
    assert short.shape == (4000,)  # never padded


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_read_audio_roundtrip(tmp_path, suffix):
    sr = 22050
    stereo = np.stack([tone(440.0, 0.5, sr), -0.5 * tone(440.0, 0.5, sr)])
    path = write_audio(tmp_path / f"a{suffix}", stereo, sr)
    waveform, rate = read_audio(path)
    assert rate == sr and waveform.dtype == np.float32
    assert waveform.shape == stereo.shape
    np.testing.assert_allclose(waveform, stereo, atol=1.5 / 32768)


def test_read_audio_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(UserInputError, match="cannot read audio") as err:
        read_audio(missing)
    assert str(err.value).count(missing.name) == 1  # named in front, not again by FFmpeg
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(UserInputError):
        read_audio(bad)


def test_list_audio_files(tmp_path):
    for name in ("b.flac", "a.wav"):
        write_audio(tmp_path / name, tone(100.0, 0.05, 8000), 8000)
    (tmp_path / "notes.txt").write_text("not audio")
    files = list_audio_files(tmp_path)
    assert list(files) == ["a", "b"]
    write_audio(tmp_path / "a.flac", tone(100.0, 0.05, 8000), 8000)
    with pytest.raises(UserInputError, match="share the stem 'a'"):
        list_audio_files(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserInputError, match=r"no \.wav or \.flac"):
        list_audio_files(empty)
    with pytest.raises(UserInputError, match="not a directory"):
        list_audio_files(tmp_path / "nope")
