"""Train SAGANet.

    python train.py experiment=debug                                  # tiny, CPU, seconds
    torchrun --nproc_per_node=8 train.py experiment=saganet_small     # the released recipe

Hydra composes ``config/train.yaml`` over the schema :class:`saganet.training.config.
TrainConfig`, with the chosen experiment and any ``key=value`` overrides; the run directory is
``output/<experiment>`` (``hydra.run.dir=...`` to change it). Running the same command again
resumes from the run's latest training state; each invocation keeps its own Hydra files
(``.hydra/``, then ``.hydra/resume-<n>/``). User errors print one line ``train.py: error:
...`` and exit with status 2, leaving nothing behind; Ctrl-C (or SIGTERM) stops at the end of
the current step, saves a training state and says where (exit status 130).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from saganet.hydra_config import configuration_errors, preflight, user_errors
from saganet.training.config import from_hydra, register_train_schema, write_resolved_config

PROG = "train.py"
CONFIG_DIR = Path(__file__).resolve().parent / "config"
LOG_FILES = ("train_rank*.log",)


@hydra.main(version_base="1.3", config_path="config", config_name="train")
def main(cfg: DictConfig) -> None:
    # SIGTERM (schedulers, torchrun passing on its own) stops the run as Ctrl-C does, so one
    # while it starts also leaves nothing behind.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Ctrl-C during training is handled by fit(); one before it starts ends here.
    with user_errors(PROG, LOG_FILES, interrupted=" before training started; nothing saved"):
        with configuration_errors():
            config = from_hydra(cfg, run_dir=HydraConfig.get().runtime.output_dir)
            # Checked before torch is imported and the ranks join a process group. torchrun's
            # variable read directly: saganet.dist imports torch.
            config.local_batch_size(int(os.environ.get("WORLD_SIZE", "1")))
        files = HydraConfig.get().output_subdir  # None on ranks other than 0
        if files is not None:
            write_resolved_config(config, Path(config.run_dir) / files)
        # Imported once the configuration is valid: torch and the models take seconds.
        from saganet.runtime import configure_runtime
        from saganet.training.loop import INTERRUPTED_STATUS, TrainingInterruptedError, fit

        configure_runtime(config.model.network)
        try:
            fit(config)
        except TrainingInterruptedError as stop:
            if stop.is_main:
                print(f"{PROG}: {stop}", file=sys.stderr)
            sys.exit(INTERRUPTED_STATUS)


if __name__ == "__main__":
    sys.argv += preflight(PROG, CONFIG_DIR, "train", register_train_schema)
    main()
