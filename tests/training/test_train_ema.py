"""Post-hoc EMA of the trainable tensors and its synthesis into a published weights file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saganet.errors import UserInputError
from saganet.model.sequence import CONFIG_44K_SA
from saganet.state_dict import atomic_save
from saganet.training.config import ModelSetup
from saganet.training.ema import (
    TrainableView,
    build_post_hoc_ema,
    decode_name,
    encode_name,
    main,
    synthesize,
)
from saganet.training.models import build_from_weights_file, build_models, load_base_weights
from saganet.training.trainable import configure_trainable

DEBUG = ModelSetup(network="debug", use_lora=True, synchformer="debug", network_init="debug",
                   synchformer_init="debug", codec="debug")


def trained_run(run_dir, steps: int = 12) -> None:
    """A fake run: trainable tensors equal the step number after each step."""
    built = build_models(DEBUG, CONFIG_44K_SA.with_duration(0.64))
    load_base_weights(built, DEBUG)
    configure_trainable(built.network, built.synchformer, use_lora=True)
    modules = {"network": built.network, "synchformer": built.synchformer}
    view = TrainableView(modules)
    ema = build_post_hoc_ema(view, run_dir, (0.05, 0.1), snapshot_every=3, exp_name="exp")
    for step in range(1, steps + 1):
        with torch.no_grad():
            for param in view.parameters():
                param.fill_(float(step))
        ema.update()
    atomic_save(built.weights_file(), run_dir / "exp_last.pth")


def test_view_holds_exactly_the_trainable_parameters():
    built = build_models(DEBUG, CONFIG_44K_SA.with_duration(0.64))
    configure_trainable(built.network, built.synchformer, use_lora=True)
    view = TrainableView({"network": built.network, "synchformer": built.synchformer})
    live = {id(p) for m in (built.network, built.synchformer) for p in m.parameters()
            if p.requires_grad}
    assert {id(p) for p in view.parameters()} == live
    name = "joint_blocks.0.latent_block.attn.qkv.lora_A"
    assert decode_name(encode_name("network", name)) == ("network", name)


def test_synthesis_writes_a_published_file_with_averaged_trainables(tmp_path):
    trained_run(tmp_path)
    last = torch.load(tmp_path / "exp_last.pth", weights_only=True)
    narrow = torch.load(synthesize(tmp_path, 0.05), weights_only=True)
    wide = torch.load(synthesize(tmp_path, 0.1, output=tmp_path / "wide.pth"), weights_only=True)
    assert list(narrow) == ["network", "synchformer", "lora", "config"]
    assert narrow["config"] == last["config"]
    gate = next(k for k in narrow["synchformer"] if k.endswith("attn_factor"))
    # An EMA of the rising trajectory 1..12 lags behind it; a wider one lags more.
    assert 1.0 < wide["synchformer"][gate].item() < narrow["synchformer"][gate].item() < 12.0
    lora_b = next(k for k in narrow["lora"] if k.endswith("lora_B"))
    assert torch.allclose(narrow["lora"][lora_b], narrow["synchformer"][gate].expand_as(
        narrow["lora"][lora_b]))
    # Frozen tensors are those of the last weights file.
    frozen = "vfeat_extractor.blocks.0.attn.qkv.weight"
    assert torch.equal(narrow["synchformer"][frozen], last["synchformer"][frozen])
    assert torch.equal(narrow["network"]["latent_mean"], last["network"]["latent_mean"])
    # The merged qkv weights follow the averaged factors: the file rebuilds its own model.
    rebuilt = build_from_weights_file(tmp_path / "exp_ema_final.pth")
    qkv = lora_b.replace("lora_B", "weight")
    assert torch.allclose(rebuilt.network.state_dict()[qkv], narrow["network"][qkv], atol=1e-5)
    assert not torch.allclose(narrow["network"][qkv], last["network"][qkv])


def test_cli(tmp_path, capsys):
    trained_run(tmp_path, steps=6)
    assert main(["synthesize", str(tmp_path), "--sigma_rel", "0.05"]) == 0
    assert (tmp_path / "exp_ema_final.pth").is_file()
    assert main(["synthesize", str(tmp_path / "missing")]) == 2
    assert "no EMA snapshots" in capsys.readouterr().err


def test_cli_keeps_an_existing_output_unless_told(tmp_path, capsys):
    """The run's final weights (its evaluations were made with them) are not replaced by a
    synthesis at another width without --overwrite."""
    trained_run(tmp_path, steps=6)
    final = tmp_path / "exp_ema_final.pth"
    assert main(["synthesize", str(tmp_path), "--sigma_rel", "0.05"]) == 0
    first = final.read_bytes()
    assert main(["synthesize", str(tmp_path), "--sigma_rel", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert str(final) in err[-1] and "--overwrite" in err[-1]
    assert final.read_bytes() == first
    assert main(["synthesize", str(tmp_path), "--sigma_rel", "0.1", "--overwrite"]) == 0
    assert final.read_bytes() != first


def test_cli_refuses_a_width_no_ema_has(tmp_path, capsys):
    """A width past 1/sqrt(12) needs a negative exponent (an average that grows with the step);
    ema_pytorch synthesised one without a complaint."""
    trained_run(tmp_path, steps=6)
    for width in ("0.3", "0", "nan"):
        assert main(["synthesize", str(tmp_path), "--sigma_rel", width]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "sigma_rel=" in err[0] and "< 0.2887" in err[0]
    assert not (tmp_path / "exp_ema_final.pth").exists()


def test_run_as_a_module_its_log_lines_name_it(tmp_path):
    """`python -m saganet.training.ema` runs the module as ``__main__``: its log lines must
    still name ``saganet.training.ema``."""
    trained_run(tmp_path, steps=6)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "saganet.training.ema", "synthesize", str(tmp_path)],
        capture_output=True, text=True, cwd=root, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "synthesised EMA" in line]
    assert len(lines) == 1 and "saganet.training.ema:" in lines[0], done.stderr


def test_an_existing_output_is_named_for_python_and_the_command_line(tmp_path):
    trained_run(tmp_path, steps=6)
    output = synthesize(tmp_path, 0.05)
    with pytest.raises(UserInputError) as info:
        synthesize(tmp_path, 0.05)
    assert str(info.value) == (f"{output}: exists (pass --overwrite or overwrite=True to replace "
                               "it, or --output or output= to write elsewhere)")
