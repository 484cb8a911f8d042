"""Loading the codec weights: strict VAE files, vocoder directories and hub cache, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saganet.codec import (
    VAE,
    VAE_CONFIGS,
    VOCODER_CONFIGS,
    VOCODER_REPO_44K,
    AudioCodecConfig,
    BigVGAN,
    build_audio_codec,
    load_vae,
    load_vocoder,
)
from saganet.errors import UserInputError
from saganet.state_dict import CheckpointMismatchError

DEBUG_VOCODER = VOCODER_CONFIGS["debug"]
# A hub config.json carries training fields next to the generator's.
TRAINING_FIELDS = {"batch_size": 4, "learning_rate": 0.0001, "mpd_reshapes": [2, 3, 5, 7, 11],
                   "use_cqtd_instead_of_mrd": True, "num_gpus": 0, "fmax_for_loss": None}


def _write_vocoder_dir(directory: Path, legacy_names: bool = False) -> BigVGAN:
    """A hub-like directory holding config.json and bigvgan_generator.pt; returns the source."""
    torch.manual_seed(1)
    source = BigVGAN(DEBUG_VOCODER).eval()
    with torch.no_grad():
        for name, tensor in source.named_parameters():
            if name.endswith("original0"):
                tensor.uniform_(0.3, 0.6)
    state_dict = source.state_dict()
    if legacy_names:
        state_dict = {k.replace("parametrizations.weight.original0", "weight_g")
                      .replace("parametrizations.weight.original1", "weight_v"): v
                      for k, v in state_dict.items()}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({**DEBUG_VOCODER.to_dict(),
                                                       **TRAINING_FIELDS}))
    torch.save({"generator": state_dict}, directory / "bigvgan_generator.pt")
    return source


def _write_vae(path: Path) -> VAE:
    torch.manual_seed(2)
    vae = VAE(VAE_CONFIGS["debug"])
    torch.save(vae.state_dict(), path)
    return vae


@pytest.mark.parametrize("legacy_names", [False, True])
def test_vocoder_from_local_hub_like_directory(tmp_path: Path, legacy_names: bool) -> None:
    source = _write_vocoder_dir(tmp_path / "bigvgan", legacy_names)
    vocoder = load_vocoder(tmp_path / "bigvgan")
    assert vocoder.config == DEBUG_VOCODER
    assert not vocoder.weight_norm_parametrized and not vocoder.training
    assert not any(p.requires_grad for p in vocoder.parameters())
    mel = torch.randn(1, 128, 3)
    with torch.no_grad():
        torch.testing.assert_close(vocoder(mel), source(mel), atol=1e-6, rtol=1e-5)


def test_vocoder_directory_missing_file(tmp_path: Path) -> None:
    _write_vocoder_dir(tmp_path)
    (tmp_path / "bigvgan_generator.pt").unlink()
    with pytest.raises(UserInputError, match=r"lacks bigvgan_generator\.pt") as err:
        load_vocoder(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_vocoder_checkpoint_without_generator_entry(tmp_path: Path) -> None:
    _write_vocoder_dir(tmp_path)
    torch.save({"discriminator": {}}, tmp_path / "bigvgan_generator.pt")
    with pytest.raises(CheckpointMismatchError, match="no 'generator' entry"):
        load_vocoder(tmp_path)


def test_vocoder_strict_load_names_file_and_keys(tmp_path: Path) -> None:
    _write_vocoder_dir(tmp_path)
    checkpoint = torch.load(tmp_path / "bigvgan_generator.pt", weights_only=True)
    del checkpoint["generator"]["resblocks.4.convs2.1.bias"]
    torch.save(checkpoint, tmp_path / "bigvgan_generator.pt")
    with pytest.raises(CheckpointMismatchError, match=r"resblocks\.4\.convs2\.1\.bias") as err:
        load_vocoder(tmp_path)
    assert str(tmp_path / "bigvgan_generator.pt") in str(err.value)


def test_vocoder_from_single_file_with_named_config(tmp_path: Path) -> None:
    source = _write_vocoder_dir(tmp_path / "dir")
    weights = tmp_path / "best_netG.pt"
    (tmp_path / "dir" / "bigvgan_generator.pt").rename(weights)
    with pytest.raises(UserInputError, match="needs a config"):
        load_vocoder(weights)
    vocoder = load_vocoder(weights, config=DEBUG_VOCODER)
    mel = torch.randn(1, 128, 2)
    with torch.no_grad():
        torch.testing.assert_close(vocoder(mel), source(mel), atol=1e-6, rtol=1e-5)


def _assert_offline_error(err: UserInputError, cache: Path) -> None:
    text = str(err)
    for needed in (VOCODER_REPO_44K, "config.json", "bigvgan_generator.pt", str(cache),
                   "HF_HUB_OFFLINE", "directory"):
        assert needed in text, f"{needed!r} missing from: {text}"


def test_offline_missing_files_error_with_local_files_only(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as err:
        load_vocoder(VOCODER_REPO_44K, local_files_only=True, cache_dir=tmp_path)
    _assert_offline_error(err.value, tmp_path)


def test_offline_missing_files_error_with_env(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserInputError) as err:
        load_vocoder(VOCODER_REPO_44K, cache_dir=tmp_path)
    _assert_offline_error(err.value, tmp_path)


def test_offline_names_only_the_missing_file(tmp_path: Path) -> None:
    snapshot = _fake_hub_cache(tmp_path)
    (snapshot / "bigvgan_generator.pt").unlink()
    with pytest.raises(UserInputError, match=r"512x: bigvgan_generator.pt not in"):
        load_vocoder(VOCODER_REPO_44K, local_files_only=True, cache_dir=tmp_path)


def _fake_hub_cache(cache: Path) -> Path:
    """Lay the two vocoder files out as huggingface_hub caches a download of ``main``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + VOCODER_REPO_44K.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _write_vocoder_dir(repo / "snapshots" / commit)
    return repo / "snapshots" / commit


def test_offline_loads_from_the_hub_cache(tmp_path: Path) -> None:
    _fake_hub_cache(tmp_path)
    vocoder = load_vocoder(VOCODER_REPO_44K, local_files_only=True, cache_dir=tmp_path)
    assert vocoder.config == DEBUG_VOCODER


def test_bad_vocoder_source(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="neither a directory"):
        load_vocoder(str(tmp_path / "no" / "such" / "dir"))


def test_load_vae_strict_error_names_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "v1-44.pth"
    state_dict = VAE(VAE_CONFIGS["debug"]).state_dict()
    del state_dict["decoder.up.1.upsample.conv.weight"]
    state_dict["decoder.extra.weight"] = torch.zeros(1)
    torch.save(state_dict, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_vae(path, config=VAE_CONFIGS["debug"])
    text = str(err.value)
    assert str(path) in text
    assert "decoder.up.1.upsample.conv.weight" in text and "decoder.extra.weight" in text


def test_load_vae_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="VAE checkpoint not found"):
        load_vae(tmp_path / "v1-44.pth")


def test_load_vae_folds_and_freezes(tmp_path: Path) -> None:
    source = _write_vae(tmp_path / "v1-44.pth")
    vae = load_vae(tmp_path / "v1-44.pth", config=VAE_CONFIGS["debug"], need_encoder=False)
    assert vae.weight_norm_removed and vae.encoder is None and not vae.training
    assert not any(p.requires_grad for p in vae.parameters())
    source.remove_weight_norm()
    z = torch.randn(1, 8, 3)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z), source.decode(z))


def test_build_audio_codec_from_local_files(tmp_path: Path) -> None:
    source_vae = _write_vae(tmp_path / "v1-44.pth").remove_weight_norm()
    source_vocoder = _write_vocoder_dir(tmp_path / "bigvgan")
    codec = build_audio_codec(tmp_path / "v1-44.pth", tmp_path / "bigvgan", need_encoder=True,
                              config=AudioCodecConfig.debug())
    latents = torch.randn(1, 3, 8)  # (B, N, C)
    with torch.no_grad():
        expected = source_vocoder(source_vae.decode(latents.transpose(1, 2)))
    torch.testing.assert_close(codec.decode(latents), expected, atol=1e-6, rtol=1e-5)
