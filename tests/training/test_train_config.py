"""Hydra configuration: every experiment composes and validates; experiments hold deltas."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import open_dict

from saganet.errors import UserInputError
from saganet.training.config import (
    TrainConfig,
    from_hydra,
    register_train_schema,
    write_resolved_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def load(*overrides: str) -> TrainConfig:
    register_train_schema()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        run_dir = cfg.hydra.run.dir
        with open_dict(cfg):
            del cfg["hydra"]
        return from_hydra(cfg, run_dir=run_dir)


def test_default_is_the_released_recipe():
    cfg = load()
    assert cfg.exp_name == "saganet_small"
    assert cfg.run_dir == "./output/saganet_small"
    assert cfg.model.variant == "small_44k_sa"
    assert cfg.model.network_init == "mmaudio_small_44k.pth"
    assert cfg.model.synchformer_init == "synchformer_state_dict.pth"
    assert cfg.data.kind == "sms"
    assert (cfg.num_iterations, cfg.batch_size, cfg.seed) == (70_000, 4, 14_159_265)
    assert cfg.optim.lr == 1e-5 and tuple(cfg.optim.betas) == (0.9, 0.95)
    assert cfg.optim.weight_decay == 1e-6 and cfg.optim.grad_clip == 1.0
    assert cfg.schedule.warmup_steps == 2500 and tuple(cfg.schedule.milestones) == (62500, 67500)
    assert (cfg.loss.null_video_prob, cfg.loss.null_text_prob) == (0.1, 0.5)
    assert not cfg.ema.enabled and tuple(cfg.ema.sigma_rels) == (0.05, 0.1)
    # Evaluated as the reference does: the SMS validation split every 15k steps against its
    # validation cache, the URMP test set after training, cfg 4.5 with 25 Euler steps.
    assert cfg.log.eval_interval == 15_000 and cfg.eval.enabled
    assert list(cfg.eval.during) == ["val"] and list(cfg.eval.after) == ["urmp"]
    assert (cfg.eval.cfg_strength, cfg.eval.num_steps) == (4.5, 25)
    assert cfg.data.val.gt_cache == "./data/sms/val_cache"
    urmp = cfg.eval.datasets["urmp"]  # the batch evaluation's dataset group, composed in
    assert (urmp.name, urmp.root, urmp.metadata, urmp.gt_cache) == (
        "urmp", "./data/urmp/data", "./data/urmp/metadata.tsv", "./data/urmp/eval_cache")
    assert load("experiment=saganet_small") == cfg


@pytest.mark.parametrize(("experiment", "variant", "init"), [
    ("saganet_small_no_lora", "small_44k_sa_no_lora", "mmaudio_small_44k.pth"),
    ("saganet_medium", "medium_44k_sa", "mmaudio_medium_44k.pth"),
    ("saganet_medium_no_lora", "medium_44k_sa_no_lora", "mmaudio_medium_44k.pth"),
])
def test_experiments_change_only_the_model(experiment, variant, init):
    cfg = load(f"experiment={experiment}")
    assert cfg.model.variant == variant and cfg.model.network_init == init
    assert cfg.run_dir == f"./output/{experiment}"
    base = load()
    assert (cfg.optim, cfg.schedule, cfg.loss, cfg.data) == (base.optim, base.schedule,
                                                             base.loss, base.data)


def test_debug_experiment_is_tiny_synthetic_cpu():
    cfg = load("experiment=debug")
    assert cfg.device == "cpu" and cfg.data.kind == "synthetic"
    assert cfg.model.variant == "debug" and cfg.model.codec == "debug"
    assert cfg.num_iterations <= 100


def test_groups_and_overrides_compose():
    cfg = load("experiment=debug", "lora=off", "data=urmp", "paths.data_dir=/data",
               "hydra.run.dir=/tmp/x")
    assert cfg.model.variant == "debug_no_lora"
    assert cfg.data.kind == "urmp" and cfg.data.train.root == "/data/urmp/data"
    assert cfg.run_dir == "/tmp/x"


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigCompositionException, match="learning_rate"):
        load("optim.learning_rate=1")
    # "+" makes Hydra add the key; the conversion to the schema still refuses it.
    with pytest.raises(UserInputError, match="learning_rate"):
        load("+optim.learning_rate=1")


def test_every_schema_default_can_be_overridden_without_a_plus():
    # The schema is part of the composition, so keys no YAML file names are overridable.
    cfg = load("experiment=debug", "seed=3", "eval.features=melstats", "eval.after=[]",
               "data.pin_memory=true")
    assert (cfg.seed, cfg.eval.features, list(cfg.eval.after)) == (3, "melstats", [])
    assert cfg.data.pin_memory


@pytest.mark.parametrize("override", ["log.interval", "checkpoint.weights_interval",
                                      "checkpoint.state_interval", "batch_size"])
def test_zero_intervals_and_sizes_fail_before_training(override):
    # A zero interval used to fail with ZeroDivisionError after the first step.
    with pytest.raises(UserInputError, match=rf"{override}=0 \(must be >= 1\)"):
        load("experiment=debug", f"{override}=0")
    with pytest.raises(UserInputError, match=r"log\.val_interval=-1"):
        load("experiment=debug", "log.val_interval=-1")
    assert load("experiment=debug", "log.val_interval=0", "log.eval_interval=0").log.interval


@pytest.mark.parametrize(("override", "named"), [
    ("optim.lr=-1", r"optim\.lr=-1\.0"), ("optim.lr=nan", r"optim\.lr=nan"),
    ("optim.betas=[0.9,1.0]", r"optim\.betas=\[0\.9, 1\.0\]"),
    ("optim.betas=[-0.1,0.9]", r"optim\.betas="), ("optim.eps=0", r"optim\.eps=0\.0"),
    ("optim.weight_decay=-1", r"optim\.weight_decay=-1\.0"),
    ("optim.grad_clip=0", r"optim\.grad_clip=0\.0"),
    ("schedule.warmup_steps=-1", r"schedule\.warmup_steps=-1"),
    ("schedule.milestones=[10,-5]", r"schedule\.milestones="),
    ("schedule.gamma=0", r"schedule\.gamma=0\.0"),
    ("eval.cfg_strength=1e9", r"eval\.cfg_strength must be a finite number"),
    ("eval.audio_length=-1", r"eval\.audio_length must be a positive number of seconds, "
                             r"got -1\.0 \(or null"),
    ("eval.audio_length=0", r"eval\.audio_length must be a positive"),
    ("eval.audio_length=nan", r"eval\.audio_length must be a positive"),
    ("loss.t_mean=nan", r"loss\.t_mean=nan \(must be a finite number\)"),
    ("loss.t_scale=inf", r"loss\.t_scale=inf"),
    ("loss.null_video_prob=1.5", r"loss\.null_video_prob=1\.5 \(a probability: 0 to 1\)"),
    ("loss.null_text_prob=-0.1", r"loss\.null_text_prob=-0\.1"),
    ("ema.sigma_rels=[0.05]", r"ema\.sigma_rels=\[0\.05\] \(at least two distinct widths"),
    ("ema.sigma_rels=[0.05,0.05]", r"ema\.sigma_rels="),
    ("ema.sigma_rels=[0.05,0.3]", r"ema\.sigma_rels=.*each > 0 and < 0\.2887"),
    ("ema.output_sigma_rel=0", r"ema\.output_sigma_rel=0\.0 \(must be > 0 and < 0\.2887\)"),
])
def test_invalid_training_settings_fail_before_training(override, named):
    if override.startswith("ema."):
        override = f"ema.enabled=true {override}"
    # optim.lr=-1 used to end in a traceback from torch's AdamW when the trainer built it,
    # ema.sigma_rels=[0.05] in one from ema_pytorch's assertion.
    with pytest.raises(UserInputError, match=rf"^invalid configuration: {named}") as info:
        load("experiment=debug", *override.split())
    assert "\n" not in str(info.value)


def test_valid_edge_training_settings_are_accepted():
    cfg = load("experiment=debug", "optim.lr=0", "optim.betas=[0,0.999]", "optim.weight_decay=0",
               "optim.grad_clip=inf", "schedule.warmup_steps=0", "eval.cfg_strength=1",
               "loss.null_video_prob=0", "loss.null_text_prob=1", "loss.t_scale=0",
               "ema.enabled=true", "ema.sigma_rels=[0.001,0.288]", "ema.output_sigma_rel=0.288")
    assert cfg.optim.grad_clip == float("inf") and cfg.schedule.warmup_steps == 0
    assert list(cfg.ema.sigma_rels) == [0.001, 0.288] and cfg.loss.null_text_prob == 1
    # A disabled EMA's widths are never used: a leftover override does not stop a run.
    assert not load("experiment=debug", "ema.sigma_rels=[0.5]").ema.enabled


def test_the_resolved_configuration_is_written_beside_hydras_files(tmp_path):
    # Hydra's config.yaml keeps ${paths.data_dir} and ${hydra:...} unresolved: the values a run
    # used were in no file of the run directory (only inside the binary training states).
    data_dir = tmp_path / "data"
    cfg = load("experiment=debug", f"paths.data_dir={data_dir}", "optim.lr=3e-3")
    path = write_resolved_config(cfg, tmp_path / ".hydra")
    assert path.parent == tmp_path / ".hydra"
    text = path.read_text()
    assert "${" not in text
    written = yaml.safe_load(text)
    assert written["exp_name"] == cfg.exp_name == "debug"
    assert written["optim"]["lr"] == cfg.optim.lr
    assert written["eval"]["datasets"]["urmp"]["root"] == f"{data_dir}/urmp/data"
    assert written == json.loads(json.dumps(dataclasses.asdict(cfg)))


def test_a_new_model_size_is_a_yaml_file_in_a_config_folder_of_ones_own(tmp_path):
    # The extension route docs/training.md describes: a model group option outside the
    # repository (hydra.searchpath), changing the architecture of a named size.
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "deeper.yaml").write_text(
        "# @package model\ndefaults:\n  - debug\nnetwork_init: null\n"
        "architecture:\n  depth: 3\n")
    cfg = load("experiment=debug", "model=deeper", f"hydra.searchpath=[file://{tmp_path}]",
               "++model.architecture.lora_rank=4")
    assert cfg.model.network == "debug" and cfg.model.network_init is None
    assert cfg.model.architecture == {"depth": 3, "lora_rank": 4}
    assert load("experiment=debug", "++model.architecture.depth=5").model.architecture == {
        "depth": 5}
