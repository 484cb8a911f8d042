"""Pipeline variants: name lookup, weights-file layout checks, offline resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saganet.checkpoint import build_from_weights, read_weights_file, weights_file_dict
from saganet.debug_weights import build_debug_models
from saganet.errors import UserInputError
from saganet.pipeline import PIPELINES, load_models, pipeline_variant
from saganet.state_dict import CheckpointMismatchError, atomic_save


def test_unknown_variant_lists_the_choices() -> None:
    with pytest.raises(UserInputError) as info:
        pipeline_variant("huge")
    assert all(name in str(info.value) for name in PIPELINES)


def test_published_variant_offline_names_every_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as info:
        load_models("saganet_small", weights_dir=tmp_path, offline=True)
    message = str(info.value)
    assert str(tmp_path / "weights" / "saganet.pth") in message
    assert "\n" not in message


def test_missing_checkpoint_is_reported_before_any_other_file(tmp_path: Path) -> None:
    # Offline, so that a regression reports missing files instead of downloading them.
    checkpoint = tmp_path / "trained" / "step_1000.pth"
    with pytest.raises(UserInputError, match="weights file not found") as info:
        load_models("saganet_small", weights_dir=tmp_path / "cache", checkpoint=checkpoint,
                    offline=True)
    assert str(checkpoint) in str(info.value)
    assert not (tmp_path / "cache").exists()  # nothing looked up, let alone downloaded


def test_debug_weights_in_an_unwritable_folder_are_a_user_error(tmp_path: Path, capsys) -> None:
    from saganet.debug_weights import main

    # /proc is a folder in which even root can create nothing: it stands for one without
    # write permission, which the tests cannot make when they run as root.
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc (Linux)")
    unwritable = Path("/proc") / f"saganet-test-{tmp_path.name}"
    with pytest.raises(UserInputError, match="cannot write the debug weights") as info:
        load_models("debug", weights_dir=unwritable)
    assert str(unwritable) in str(info.value)
    # load_models is called from Python: the argument is named beside the commands' flag.
    assert "--weights_dir (weights_dir= from Python)" in str(info.value)
    assert main([str(unwritable)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the debug weights" in err
    # A file where a folder of the cache must be is named as such, before anything is tried.
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(UserInputError, match=f"{blocker} is not a folder"):
        load_models("debug", weights_dir=blocker / "cache")


def test_weights_file_layout_is_checked(tmp_path: Path) -> None:
    models = build_debug_models()
    content = weights_file_dict(models.network, models.synchformer, "debug")
    assert set(content) == {"network", "synchformer", "lora", "config"}
    atomic_save({**content, "optimizer": {}}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointMismatchError, match="optimizer"):
        read_weights_file(tmp_path / "extra.pth")
    no_config = {k: v for k, v in content.items() if k != "config"}
    with pytest.raises(CheckpointMismatchError, match="config"):
        build_from_weights(no_config, "no_config.pth")


def test_files_that_are_no_weights_file_are_one_short_error(tmp_path: Path) -> None:
    network = build_debug_models().network.state_dict()
    for name, content in (("scalar", torch.tensor(1.0)), ("list", [1, 2]),
                          ("bare", network)):
        path = atomic_save(content, tmp_path / f"{name}.pth")
        with pytest.raises(CheckpointMismatchError, match="not a SAGANet weights file") as info:
            read_weights_file(path)
        named = [key for key in network if key in str(info.value)]
        assert len(named) < len(network)  # a bare state dict's keys are not all listed


def test_unusable_config_entry_is_a_checkpoint_error(tmp_path: Path) -> None:
    models = build_debug_models()
    content = weights_file_dict(models.network, models.synchformer, "debug")
    config = content["config"]
    for broken in ({**config, "network": {**config["network"], "added_later": 1}},
                   {k: v for k, v in config.items() if k != "synchformer"}, "debug"):
        with pytest.raises(CheckpointMismatchError, match="'config' entry"):
            build_from_weights({**content, "config": broken}, "broken.pth")


def test_weights_file_rebuilds_the_same_models(tmp_path: Path) -> None:
    models = build_debug_models()
    path = atomic_save(weights_file_dict(models.network, models.synchformer, "debug"),
                       tmp_path / "debug.pth")
    network, synchformer = build_from_weights(read_weights_file(path), str(path))
    for ours, theirs in ((network, models.network), (synchformer, models.synchformer)):
        expected = theirs.state_dict()
        assert list(ours.state_dict()) == list(expected)
        assert all(torch.equal(v, expected[k]) for k, v in ours.state_dict().items())


def _named(keys: list[str], message: str) -> list[str]:
    return [key for key in keys if f"{key}," in message or f"{key}\n" in f"{message}\n"
            or f"{key}:" in message]


def test_a_file_broken_in_several_entries_names_every_one_at_once(tmp_path: Path) -> None:
    """Network and Synchformer both broken (and the LoRA entry): one error, each entry's
    missing, unexpected and mis-shaped keys listed, short, with their counts."""
    models = build_debug_models()
    content = weights_file_dict(models.network, models.synchformer, "debug")
    network, sync = dict(content["network"]), dict(content["synchformer"])
    lora = dict(content["lora"])
    # Network: one key missing, one extra, one of another shape.
    net_missing = next(k for k in network if not k.endswith(("lora_A", "lora_B")))
    del network[net_missing]
    network["added.weight"] = torch.zeros(1)
    net_shaped = next(k for k, v in network.items() if v.dim() == 1 and k != "added.weight")
    network[net_shaped] = torch.zeros(network[net_shaped].numel() + 1)
    # Synchformer: many keys missing (more than an error lists by name), one of another shape.
    sync_missing = sorted(sync)[: len(sync) // 2]
    for key in sync_missing:
        del sync[key]
    sync_shaped = next(k for k, v in sync.items() if v.dim() >= 1)
    sync[sync_shaped] = torch.zeros(*sync[sync_shaped].shape[:-1], sync[sync_shaped].shape[-1] + 2)
    # LoRA: a factor missing.
    lora_missing = next(iter(lora))
    del lora[lora_missing]
    path = atomic_save({**content, "network": network, "synchformer": sync, "lora": lora},
                       tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        build_from_weights(read_weights_file(path), str(path))
    message = str(info.value)
    first, *rest = message.splitlines()
    assert first.startswith(str(path)) and "3 of its parts" in first
    blocks = {entry: next(i for i, line in enumerate(rest) if f"['{entry}']" in line)
              for entry in ("network", "lora", "synchformer")}
    assert sorted(blocks.values()) == list(blocks.values())  # in the file's order
    net_block = "\n".join(rest[blocks["network"]:blocks["lora"]])
    lora_block = "\n".join(rest[blocks["lora"]:blocks["synchformer"]])
    sync_block = "\n".join(rest[blocks["synchformer"]:])
    assert "1 missing key(s): " + net_missing in net_block
    assert "1 unexpected key(s): added.weight" in net_block
    assert f"1 mis-shaped key(s): {net_shaped}" in net_block
    assert lora_missing in lora_block and "missing" in lora_block
    assert f"{len(sync_missing)} missing key(s)" in sync_block
    assert 0 < len(_named(sync_missing, sync_block)) < len(sync_missing)  # short, counted
    assert f"1 mis-shaped key(s): {sync_shaped}" in sync_block
    assert not _named(sync_missing, net_block + lora_block)


def test_a_file_broken_in_one_entry_keeps_its_error(tmp_path: Path) -> None:
    models = build_debug_models()
    content = weights_file_dict(models.network, models.synchformer, "debug")
    sync = dict(content["synchformer"])
    missing = next(iter(sync))
    del sync[missing]
    with pytest.raises(CheckpointMismatchError) as info:
        build_from_weights({**content, "synchformer": sync}, "one.pth")
    first, *rest = str(info.value).splitlines()
    assert first == "one.pth['synchformer'] does not match SynchformerWithContext:"
    assert rest == [f"  1 missing key(s): {missing}"]


def test_loading_leaves_the_callers_random_sequence_and_threads(tmp_path: Path) -> None:
    """A script's ``torch.manual_seed`` sequence does not depend on which models it loaded."""
    from saganet.pipeline import load_clip

    load_models("debug", weights_dir=tmp_path)  # the debug files are made (drawn) once
    threads = torch.get_num_threads()
    for load in (lambda: load_models("debug", weights_dir=tmp_path, need_clip=True),
                 lambda: load_clip("debug", weights_dir=tmp_path)):
        before = torch.random.get_rng_state()
        load()
        assert torch.equal(torch.random.get_rng_state(), before)
        assert torch.get_num_threads() == threads


@pytest.mark.parametrize(("setting", "value"), [
    ("device", "gpu"), ("device", "cuda:99"),
    ("dtype", "bfloat16"), ("dtype", torch.int8), ("dtype", None)])
def test_a_device_or_dtype_models_cannot_take_fails_before_anything_loads(
        tmp_path: Path, setting: str, value: object) -> None:
    from saganet.pipeline import load_clip

    for load in (load_models, load_clip):
        with pytest.raises(UserInputError, match=setting) as info:
            load("debug", weights_dir=tmp_path / "cache", **{setting: value})
        assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()  # not even the debug weights were made


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_a_missing_device_is_named_without_a_command_line_flag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    from saganet.pipeline import load_clip

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for load in (load_models, load_clip):
        with pytest.raises(UserInputError, match=f"^device '{device}': .*; use device 'cpu'$"):
            load("debug", weights_dir=tmp_path / "cache", device=device)


def test_auto_device_is_accepted_as_on_the_command_line(tmp_path: Path) -> None:
    from saganet.dist import default_device

    assert load_models("debug", weights_dir=tmp_path, device="auto").device.type == \
        default_device().type


def test_a_trained_network_of_another_size_runs_with_the_encoders_that_feed_it(
        tmp_path: Path) -> None:
    """train.py records its network's size; a file of another size than the variant's (a
    medium network, the debug recipe without LoRA) runs with the variant's encoders and codec
    when they feed it, and is refused, naming the variants that fit, when they do not."""
    from saganet.features import SynchformerConfig, SynchformerWithContext
    from saganet.model import VARIANTS, build_network
    from saganet.pipeline import check_checkpoint

    variant = "debug"
    other = next(name for name, config in VARIANTS.items()
                 if name != PIPELINES[variant].network
                 and config.clip_dim == VARIANTS[PIPELINES[variant].network].clip_dim)
    path = tmp_path / f"{other}_last.pth"
    atomic_save(weights_file_dict(build_network(other),
                                  SynchformerWithContext(SynchformerConfig.debug()), other),
                path)
    check_checkpoint(variant, path)
    models = load_models(variant, weights_dir=tmp_path / "cache", checkpoint=path)
    assert models.network.config == VARIANTS[other]
    # Results record the weights by the variant and the checkpoint's file name, no folder.
    assert (models.variant, models.checkpoint_name) == (variant, path.name)
    published = load_models(variant, weights_dir=tmp_path / "cache")
    assert (published.variant, published.checkpoint_name) == (variant, None)
    full = next(name for name, spec in PIPELINES.items() if not spec.debug)
    # Named as an argument for Python callers; the commands pass their flag.
    with pytest.raises(UserInputError, match=f"pass variant '{variant}'$") as info:
        check_checkpoint(full, path)
    assert "--variant" not in str(info.value)
    with pytest.raises(UserInputError, match=f"pass --variant {variant}$"):
        check_checkpoint(full, path, option="--variant {}")
    # Every published pipeline's encoders feed the medium sizes of the same clip length.
    for name, spec in PIPELINES.items():
        if spec.debug:
            continue
        medium = spec.network.replace("small", "medium")
        assert medium in VARIANTS
        medium_path = tmp_path / f"{name}.pth"
        atomic_save({"network": {}, "synchformer": {}, "config": {"variant": medium}},
                    medium_path)
        check_checkpoint(name, medium_path)
        # MMAudio's own sizes take 8 s clips: no pipeline feeds them.
        mmaudio_path = tmp_path / f"{name}_mmaudio.pth"
        atomic_save({"network": {}, "synchformer": {}, "config": {"variant": "small_44k"}},
                    mmaudio_path)
        with pytest.raises(UserInputError, match=r"encoders do not feed$"):
            check_checkpoint(name, mmaudio_path)
