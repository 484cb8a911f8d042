"""Train SAGANet.

    python train.py experiment=debug                                  # tiny, CPU, seconds
    torchrun --nproc_per_node=8 train.py experiment=saganet_small     # the released recipe

Hydra composes ``config/train.yaml`` with the chosen experiment and any ``key=value``
overrides; the run directory is ``output/<experiment>`` (``hydra.run.dir=...`` to change it).
Running the same command again resumes from the run's latest training state.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from saganet.errors import UserInputError
from saganet.runtime import configure_runtime
from saganet.training.config import from_hydra
from saganet.training.loop import fit

log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="config", config_name="train")
def main(cfg: DictConfig) -> None:
    configure_runtime(cfg.model.network)
    config = from_hydra(cfg, run_dir=HydraConfig.get().runtime.output_dir)
    try:
        fit(config)
    except UserInputError as err:
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
