"""End-to-end runs of ``train.py experiment=debug``: two ranks under torchrun (loss goes down,
disjoint shards, exact resume, each invocation's Hydra files) and a single process with EMA whose
weights files the demo loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from saganet.debug_weights import write_debug_weights
from saganet.example import synthetic_example
from saganet.pipeline import load_models

REPO = Path(__file__).resolve().parents[2]
STEPS, STOP = 24, 12
GATE = "vfeat_extractor.cross_attn_layers.0.attn_factor"
RUN_ARGS = ["experiment=debug", f"num_iterations={STEPS}", "log.interval=1",
            "log.record_sample_ids=true", "log.val_interval=12", "eval.enabled=false",
            "checkpoint.state_interval=8"]


def run(command: list[str]) -> None:
    """Run a command in its own process group; on timeout, end the whole group (torchrun's
    workers included)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    code, output = finish(proc, " ".join(command))
    assert code == 0, output[-5000:]


def finish(proc: subprocess.Popen, what: str = "") -> tuple[int, str]:
    """Wait for a command started in its own process group; on timeout end the whole group
    (torchrun's workers) and fail."""
    try:
        output, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"timed out: {what}\n{output[-3000:]}")
    return proc.returncode, output


def train(run_dir: Path, *overrides: str, nproc: int = 2) -> None:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable])
    run([*launcher, str(REPO / "train.py"), f"hydra.run.dir={run_dir}", *overrides])


def scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """Last value per step of a TensorBoard scalar over every event file of a run."""
    values = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.tensor.float_val[0] if value.HasField(
                        "tensor") else value.simple_value
    return values


def sample_ids(run_dir: Path) -> dict[int, dict[int, list[str]]]:
    """rank -> step -> ids seen."""
    seen: dict[int, dict[int, list[str]]] = {}
    for rank in (0, 1):
        steps: dict[int, list[str]] = defaultdict(list)
        for line in (run_dir / "sample_ids" / f"rank{rank}.tsv").read_text().splitlines():
            step, sample = line.split("\t")
            steps[int(step)].append(sample)
        seen[rank] = dict(steps)
    return seen


@pytest.mark.slow
def test_two_ranks_learn_on_disjoint_shards_and_resume_exactly(tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    train(full, *RUN_ARGS)
    first_leg = [*RUN_ARGS, f"stop_after={STOP}"]
    train(split, *first_leg)
    assert (split / "checkpoints" / f"state_{STOP:09d}.pth").is_file()
    train(split, *RUN_ARGS)
    # Each invocation keeps its Hydra files, written by rank 0 alone.
    hydra = split / ".hydra"
    later = hydra / "resume-1"
    files = ["config.yaml", "hydra.yaml", "overrides.yaml", "resolved.yaml"]
    assert sorted(p.name for p in hydra.iterdir()) == sorted([*files, later.name])
    assert sorted(p.name for p in later.iterdir()) == files
    assert [yaml.safe_load((folder / "resolved.yaml").read_text())["run_dir"]
            for folder in (hydra, later)] == [str(split)] * 2
    assert [yaml.safe_load((folder / "overrides.yaml").read_text())
            for folder in (hydra, later)] == [first_leg, RUN_ARGS]
    assert [yaml.safe_load((folder / "config.yaml").read_text())["stop_after"]
            for folder in (hydra, later)] == [STOP, None]

    losses = scalars(full, "train/loss")
    assert sorted(losses) == list(range(1, STEPS + 1))
    # The loss goes down on the synthetic set (training and the fixed validation batches).
    first, last = sum(losses[s] for s in range(1, 7)), sum(losses[s] for s in range(19, 25))
    assert last < 0.95 * first, losses
    val = scalars(full, "val/loss")
    assert val[24] < val[12]
    # Stopping after 12 steps and resuming gives the same losses as the uninterrupted run.
    resumed = scalars(split, "train/loss")
    assert [resumed[s] for s in range(1, STEPS + 1)] == [losses[s] for s in range(1, STEPS + 1)]
    assert scalars(split, "val/loss") == val

    ids = sample_ids(full)
    for step in range(STEPS):
        assert not set(ids[0][step]) & set(ids[1][step])
    epoch = [i for rank in (0, 1) for step in range(STEPS) for i in ids[rank][step]]
    assert len(epoch) == len(set(epoch)) == 2 * STEPS  # no sample twice within the epoch
    assert sample_ids(split)[1] == {s: ids[1][s] for s in ids[1]}
    assert not (full / "eval").exists()
    assert (full / "debug_last.pth").is_file()


@pytest.mark.slow
def test_single_process_weights_load_in_the_demo(tmp_path):
    run_dir = tmp_path / "run"
    train(run_dir, "experiment=debug", "num_iterations=3", "log.val_interval=0",
          "log.eval_interval=2", "eval.num_clips=2", "eval.num_steps=2", "eval.after=[]",
          "ema.enabled=true", "ema.snapshot_every=1", nproc=1)
    weights_file = run_dir / "debug_last.pth"
    debug_dir = tmp_path / "debug_weights"
    write_debug_weights(debug_dir)

    saved = torch.load(weights_file, weights_only=True)
    assert list(saved) == ["network", "synchformer", "lora", "config"]
    models = load_models("debug", weights_dir=debug_dir, checkpoint=weights_file)
    for key, value in saved["network"].items():
        assert torch.equal(models.network.state_dict()[key], value), key
    for key, value in saved["synchformer"].items():
        assert torch.equal(models.synchformer.state_dict()[key], value), key

    out = tmp_path / "demo"
    clip = synthetic_example(tmp_path / "clip")
    run([sys.executable, str(REPO / "demo.py"), "--variant", "debug", "--weights_dir",
         str(debug_dir), "--checkpoint", str(weights_file), "--video", str(clip.video),
         "--mask_video", str(next(iter(clip.masks.values()))), "--duration", "1.0",
         "--num_steps", "2", "--skip_video_composite", "--output", str(out), "--device", "cpu"])
    assert list(out.glob("*.flac"))

    # With EMA on, the run ends with a synthesised EMA weights file of the same layout.
    ema = run_dir / "debug_ema_final.pth"
    assert len(list((run_dir / "ema_snapshots").glob("*.pt"))) == 6
    ema_models = load_models("debug", weights_dir=debug_dir, checkpoint=ema)
    assert not torch.equal(ema_models.synchformer.state_dict()[GATE], saved["synchformer"][GATE])
    # Evaluations use the EMA: the tracked profile during training, the synthesis at the end.
    weights = {step: json.loads((run_dir / "eval" / f"{step:09d}" / "metrics.json").read_text()
                                )["splits"]["val"]["weights"] for step in (2, 3)}
    assert weights[2] == "EMA tracked at sigma_rel 0.05"
    assert weights[3] == "EMA synthesised at sigma_rel 0.05 (debug_ema_final.pth)"
